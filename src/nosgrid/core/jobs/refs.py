"""Small syntax rules shared by the job-definition modules: literals, markers, image references.

>>> is_literal("%%ops.train.results.loss%%")
True
>>> image_reference_problem("localhost/nosgrid-busybox:test") is None
True
"""

from __future__ import annotations

import re
from typing import Final

#: What Nosana's validators accept for a field that holds only a literal.
LITERAL_PATTERN: Final = r"^%%(ops|global)\.[^%]+%%$"
#: Any literal inside a longer string (the node also accepts ``globals`` in two-part forms).
LITERAL_ANYWHERE: Final = re.compile(r"%%(?:ops|globals?)\.[^%]+?%%")

SPREAD_KEY: Final = "__spread__"
PAIRS_KEY: Final = "__pairs__"
REMOVE_IF_EMPTY: Final = "__remove-if-empty__"

_LITERAL_RE: Final = re.compile(LITERAL_PATTERN)

# The grammar of github.com/distribution/reference, without IPv6 hosts.
_PATH_COMPONENT: Final = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_COMPONENT: Final = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN: Final = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*(?::[0-9]+)?"
_TAG: Final = r"[\w][\w.-]{0,127}"
_DIGEST: Final = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_IMAGE_RE: Final = re.compile(
    rf"^(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*(?::{_TAG})?(?:@{_DIGEST})?$"
)
MAX_IMAGE_NAME: Final = 255


def is_literal(text: str) -> bool:
    """True if ``text`` is exactly one literal such as ``%%global.variables.MODEL%%``.

    >>> is_literal("%%global.variables.MODEL%%"), is_literal("x %%global.job%%")
    (True, False)
    """
    return _LITERAL_RE.match(text) is not None


def image_reference_problem(image: str) -> str | None:
    """Why ``image`` is not a valid OCI image reference, or None if it is.

    Literals are allowed anywhere in the reference; each counts as one valid component.

    >>> image_reference_problem("Ubuntu:22.04")
    "'Ubuntu:22.04' is not a valid image reference (e.g. 'docker.io/library/ubuntu:22.04'; repository names are lowercase)"
    """  # noqa: E501
    probe = LITERAL_ANYWHERE.sub("x", image)
    name = probe.split("@", 1)[0]
    if len(name) > MAX_IMAGE_NAME:
        return f"image reference is longer than {MAX_IMAGE_NAME} characters"
    if _IMAGE_RE.match(probe) is None:
        return (
            f"{image!r} is not a valid image reference (e.g. 'docker.io/library/ubuntu:22.04'; "
            "repository names are lowercase)"
        )
    return None
