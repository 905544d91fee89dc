"""What a held job's spec asks of its runs: the verification terms stored in a
definition's ``meta.nosgrid`` (:func:`spec_terms`). How results compare is in
:mod:`nosgrid.core.verification.comparison`.
"""

from __future__ import annotations

import json
from typing import cast

from nosgrid.core.jobs.meta import MAX_REPLICAS
from nosgrid.core.verification import Mode, Tolerance


def spec_terms(spec_body: str | None) -> tuple[Mode, Tolerance, int]:
    """``(mode, tolerance, replicas)`` from a stored definition's ``meta.nosgrid``.

    >>> spec_terms('{"meta": {"nosgrid": {"verification": "tolerance", "rel_eps": 0.1}}}')
    ('tolerance', Tolerance(abs_eps=1e-09, rel_eps=0.1), 1)
    >>> spec_terms(None)[0]
    'none'
    """
    try:
        meta = json.loads(spec_body or "{}").get("meta") or {}
    except (ValueError, AttributeError):
        meta = {}
    extra = meta.get("nosgrid") if isinstance(meta, dict) else None
    extra = extra if isinstance(extra, dict) else {}
    mode = extra.get("verification") or "none"
    if mode not in ("deterministic", "tolerance", "none"):
        mode = "none"
    tol = Tolerance.of(extra.get("abs_eps"), extra.get("rel_eps"))
    replicas = extra.get("replicas")
    ok = isinstance(replicas, int) and 1 <= replicas <= MAX_REPLICAS and mode != "none"
    return cast(Mode, mode), tol, int(cast(int, replicas)) if ok else 1
