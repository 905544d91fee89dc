"""Value types nested in run args: spread markers, exposed ports with health checks, resources.

>>> ExposedPort.model_validate({"port": 8080, "type": "api"}).port
8080
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Final, Literal

from pydantic import (
    AfterValidator,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    WithJsonSchema,
    model_validator,
)

from nosgrid.core.jobs.base import ClosedModel, problems
from nosgrid.core.jobs.refs import LITERAL_PATTERN, REMOVE_IF_EMPTY, SPREAD_KEY, is_literal

_RANGE_RE: Final = re.compile(r"^([0-9]+)-([0-9]+)$")

LiteralStr = Annotated[str, StringConstraints(pattern=LITERAL_PATTERN)]
Port = Annotated[int, Field(ge=1, le=65535)]
PortRange = Annotated[str, StringConstraints(pattern=r"^[0-9]+-[0-9]+$")]


def _expose_string(value: str) -> str:
    if is_literal(value) or _RANGE_RE.match(value):
        return value
    raise ValueError("expected a literal like '%%ops.ID.results.KEY%%' or a port range 'start-end'")


ExposeString = Annotated[
    str,
    AfterValidator(_expose_string),
    WithJsonSchema({"type": "string", "pattern": r"^(%%(ops|global)\.[^%]+%%|[0-9]+-[0-9]+)$"}),
]
NonEmpty = Annotated[str, StringConstraints(min_length=1)]


class SpreadMarker(ClosedModel):
    """``{"__spread__": "%%…%%"}``: splices a JSON array (or object) resolved at run time.

    >>> SpreadMarker.model_validate({"__spread__": "%%ops.a.results.ports%%"}).spread
    '%%ops.a.results.ports%%'
    """

    spread: LiteralStr = Field(alias=SPREAD_KEY)
    chunked: bool | None = None


def _kind(value: Any) -> str | None:
    """Tag of a union member by the JSON type of the input (keeps errors to one branch)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "spread" if SPREAD_KEY in value else "object"
    if isinstance(value, ClosedModel):  # already-built models (model_copy, constructors)
        return "spread" if isinstance(value, SpreadMarker) else "object"
    return None


def _tagged(expected: str) -> Discriminator:
    return Discriminator(
        _kind, custom_error_type="invalid_type", custom_error_message=f"expected {expected}"
    )


# --- health checks and exposed ports -------------------------------------------------


class HttpHealthCheck(ClosedModel):
    """An HTTP check: ``method path`` must answer ``expected_status``.

    >>> HttpHealthCheck(type="http", path="/health", method="GET", expected_status=200,
    ...                 continuous=True).path
    '/health'
    """

    nullable_fields: ClassVar[frozenset[str]] = frozenset({"body"})
    type: Literal["http"]
    path: str
    method: Literal["GET", "POST", "PUT", "DELETE"]
    expected_status: int
    headers: dict[str, str] | None = None
    body: Any = None
    continuous: bool


class WebSocketHealthCheck(ClosedModel):
    """A WebSocket check that expects ``expected_response``."""

    type: Literal["websocket"]
    expected_response: str
    continuous: bool


def _by_type(value: Any) -> Any:
    return value.get("type") if isinstance(value, dict) else getattr(value, "type", None)


def typed_union(expected: str) -> Discriminator:
    """A union dispatched on the ``type`` key, with one readable error when it matches none."""
    return Discriminator(
        _by_type,
        custom_error_type="invalid_type_tag",
        custom_error_message=f"'type' must be {expected}",
    )


HealthCheck = Annotated[
    Annotated[HttpHealthCheck, Tag("http")] | Annotated[WebSocketHealthCheck, Tag("websocket")],
    typed_union("'http' or 'websocket'"),
]


class ExposedPort(ClosedModel):
    """A port object in ``expose``: the port, its service type and health checks.

    >>> ExposedPort.model_validate({"port": 8080, "type": "api"}).port
    8080
    """

    port: Port | PortRange
    type: Literal["web", "api", "webapi", "websocket", "none"] | None = None
    health_checks: list[HealthCheck] | None = None


ExposeElement = Annotated[
    Annotated[Port, Tag("number")]
    | Annotated[ExposeString, Tag("string")]
    | Annotated[SpreadMarker, Tag("spread")]
    | Annotated[ExposedPort, Tag("object")],
    _tagged("a port number, a port object, a literal or a spread marker"),
]
Expose = Annotated[
    Annotated[Port, Tag("number")]
    | Annotated[ExposeString, Tag("string")]
    | Annotated[SpreadMarker, Tag("spread")]
    | Annotated[list[ExposeElement], Tag("array")],
    _tagged("a port number, a literal, a spread marker or an array of ports"),
]


def exposed_port_problem(elements: list[Any]) -> str | None:
    """Why the ports of an ``expose`` array clash (repeats, overlapping ranges), or None."""
    numbers: set[int] = set()
    ranges: list[tuple[int, int]] = []
    for element in elements:
        port = element.port if isinstance(element, ExposedPort) else element
        if isinstance(port, int):
            if port in numbers:
                return f"port {port} is exposed twice"
            numbers.add(port)
        elif isinstance(port, str) and (match := _RANGE_RE.match(port)):
            start, end = int(match.group(1)), int(match.group(2))
            if start >= end:
                return f"port range {port!r} must have start < end"
            if any(start <= r_end and end >= r_start for r_start, r_end in ranges):
                return f"port range {port!r} overlaps another range"
            ranges.append((start, end))
    for number in numbers:
        if any(start <= number <= end for start, end in ranges):
            return f"port {number} falls inside an exposed port range"
    return None


# --- resources -----------------------------------------------------------------------


class HFResource(ClosedModel):
    """A Hugging Face repo (or some of its files) placed read-only at ``target``."""

    type: Literal["HF"]
    repo: NonEmpty
    target: NonEmpty
    revision: str | None = None
    files: list[str] | None = None
    access_token: str | None = Field(None, alias="accessToken")


class OllamaResource(ClosedModel):
    """An Ollama model pulled into ``target`` (default ``/root/.ollama/models``)."""

    type: Literal["Ollama"]
    model: NonEmpty
    target: str | None = None


class S3Auth(ClosedModel):
    """Credentials for a private S3 resource."""

    region: str = Field(alias="REGION")
    access_key_id: str = Field(alias="ACCESS_KEY_ID")
    secret_access_key: str = Field(alias="SECRET_ACCESS_KEY")


class S3Bucket(ClosedModel):
    """One bucket of an S3 resource with several buckets."""

    url: str
    files: list[str] | None = None


class S3Resource(ClosedModel):
    """An S3 resource: plain (``url``, ``files``), ``bucket`` or ``buckets`` — exclusive shapes."""

    type: Literal["S3"]
    target: NonEmpty
    url: str | None = None
    files: list[str] | None = None
    bucket: str | None = None
    buckets: list[S3Bucket] | None = None
    allow_write: bool | None = Field(None, alias="allowWrite")
    iam: S3Auth | None = Field(None, alias="IAM")

    @model_validator(mode="after")
    def _one_shape(self) -> S3Resource:
        found: list[tuple[str, str]] = []
        if self.bucket is not None and self.buckets is not None:
            found.append(("buckets", "use either 'bucket' or 'buckets', not both"))
        if self.bucket is not None and self.files is not None:
            found.append(("files", "'files' is not allowed with 'bucket'"))
        if found:
            raise problems(found)
        return self


def _resource_kind(value: Any) -> str | None:
    if isinstance(value, str):
        return "remove" if value == REMOVE_IF_EMPTY else None
    if isinstance(value, dict):
        return "spread" if SPREAD_KEY in value else _resource_type(value.get("type"))
    if isinstance(value, SpreadMarker):
        return "spread"
    return _resource_type(getattr(value, "type", None))


def _resource_type(kind: object) -> str | None:
    return kind if kind in ("HF", "S3", "Ollama") else None


ResourceElement = Annotated[
    Annotated[HFResource, Tag("HF")]
    | Annotated[S3Resource, Tag("S3")]
    | Annotated[OllamaResource, Tag("Ollama")]
    | Annotated[SpreadMarker, Tag("spread")]
    | Annotated[Literal["__remove-if-empty__"], Tag("remove")],
    Discriminator(
        _resource_kind,
        custom_error_type="invalid_resource",
        custom_error_message=(
            "expected a resource with type 'HF', 'S3' or 'Ollama', a spread marker "
            "or '__remove-if-empty__'"
        ),
    ),
]
