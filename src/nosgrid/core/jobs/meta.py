"""``meta`` of a job definition: open like Nosana's, with nosgrid's terms under ``meta.nosgrid``.

>>> NosgridMeta.model_validate({"timeout": 600, "max_price": "2.5"}).max_price_base_units
2500000
"""

from __future__ import annotations

import re
from typing import Annotated, Final, Literal

from pydantic import (
    ConfigDict,
    Field,
    JsonValue,
    StringConstraints,
    field_validator,
    model_validator,
)

from nosgrid.core.errors import InvalidAmount
from nosgrid.core.jobs.base import ClosedModel
from nosgrid.core.money import check_amount, parse_nos

MIN_TIMEOUT_S: Final = 1
MAX_TIMEOUT_S: Final = 7 * 24 * 3600
MAX_REPLICAS: Final = 5  # each run needs its own unrelated node
DEFAULT_OUTPUTS: Final = ("/outputs",)

_ABS_PATH_RE: Final = re.compile(r"^/(?!.*(?:^|/)\.\.(?:/|$)).*$")

AbsPath = Annotated[str, StringConstraints(pattern=r"^/", min_length=1, max_length=4096)]
Sha256Hex = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class InputBlob(ClosedModel):
    """A content-addressed blob (uploaded beforehand) placed read-only at ``path``.

    >>> InputBlob(sha256="ab" * 32, path="/inputs/data.csv").path
    '/inputs/data.csv'
    """

    sha256: Sha256Hex
    path: AbsPath

    @field_validator("path")
    @classmethod
    def _no_parent_segments(cls, value: str) -> str:
        if _ABS_PATH_RE.match(value) is None:
            raise ValueError("must be an absolute path without '..' segments")
        return value


class NosgridMeta(ClosedModel):
    """nosgrid's additions, under ``meta.nosgrid`` so a file stays valid for Nosana.

    ``max_price`` is a NOS decimal string (``"2.5"``) or an int of base units
    (``2_500_000``); ``timeout`` is in seconds (1 s … 7 days). ``network``: ``none``
    (default, no network at all), ``job`` (only the other ops of the same job) or ``egress``
    (the ops of the job, and out only through the node's filtering HTTP(S) proxy, in a
    market that allows egress).
    ``replicas`` (1–5): the job runs that many times on unrelated nodes and the outputs are
    compared; the client pays each run. It needs ``verification`` ``deterministic`` or
    ``tolerance`` (something to compare).

    >>> NosgridMeta(verification="tolerance", rel_eps=1e-6).verification
    'tolerance'
    """

    market: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    timeout: Annotated[int, Field(ge=MIN_TIMEOUT_S, le=MAX_TIMEOUT_S)] | None = None
    max_price: str | int | None = None
    verification: Literal["deterministic", "tolerance", "none"] = "none"
    abs_eps: Annotated[float, Field(ge=0)] | None = None
    rel_eps: Annotated[float, Field(ge=0)] | None = None
    replicas: Annotated[int, Field(ge=1, le=MAX_REPLICAS)] = 1
    network: Literal["none", "job", "egress"] = "none"
    inputs: list[InputBlob] = Field(default_factory=list)
    outputs: list[AbsPath] = Field(default_factory=lambda: list(DEFAULT_OUTPUTS))

    @field_validator("max_price")
    @classmethod
    def _valid_amount(cls, value: str | int | None) -> str | int | None:
        if value is not None:
            try:
                _parse_price(value)
            except InvalidAmount as exc:
                raise ValueError(exc.message) from exc
        return value

    @field_validator("outputs")
    @classmethod
    def _valid_outputs(cls, value: list[str]) -> list[str]:
        for path in value:
            if _ABS_PATH_RE.match(path) is None:
                raise ValueError(f"output path {path!r} must be absolute, without '..'")
        if len(set(value)) != len(value):
            raise ValueError("output paths must be unique")
        return value

    @model_validator(mode="after")
    def _eps_only_with_tolerance(self) -> NosgridMeta:
        if self.verification != "tolerance" and (
            self.abs_eps is not None or self.rel_eps is not None
        ):
            raise ValueError("abs_eps and rel_eps are only allowed with verification 'tolerance'")
        if self.replicas > 1 and self.verification == "none":
            raise ValueError("replicas > 1 needs verification 'deterministic' or 'tolerance': "
                             "the runs' outputs are compared")
        if len({blob.path for blob in self.inputs}) != len(self.inputs):
            raise ValueError("input paths must be unique")
        return self

    @property
    def max_price_base_units(self) -> int | None:
        """``max_price`` in NOS base units (None when not set)."""
        return None if self.max_price is None else _parse_price(self.max_price)


def _parse_price(value: str | int) -> int:
    return parse_nos(value) if isinstance(value, str) else check_amount(value)


class Meta(ClosedModel):
    """The open ``meta`` object: any JSON values, with a few typed keys.

    >>> Meta.model_validate({"trigger": "cli", "system_requirements": {"required_vram": 8}}).trigger
    'cli'
    """

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, JsonValue] = Field(init=False)

    trigger: str | None = None
    system_resources: dict[str, str | int | float] | None = None
    nosgrid: NosgridMeta | None = None
