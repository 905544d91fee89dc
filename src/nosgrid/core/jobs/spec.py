"""The job definition: pydantic models of Nosana's format, so Nosana files post unchanged.

Every object is closed (an unknown key is an error) except ``meta``; nosgrid's own terms
live in ``meta.nosgrid`` (:class:`~nosgrid.core.jobs.meta.NosgridMeta`). Where Nosana's two
validators differ, what either accepts is accepted (see ``NOSANA-JOB-FORMAT.md``).
Loading from text, error paths and content addressing are in ``nosgrid.core.jobs.load``.

>>> defn = JobDefinition.model_validate({
...     "version": "0.1", "type": "container",
...     "ops": [{"type": "container/run", "id": "hello",
...              "args": {"image": "ubuntu:24.04", "cmd": "echo hi"}}]})
>>> defn.ops[0].args.command_argv()
['/bin/sh', '-c', 'echo hi']
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
    field_validator,
    model_validator,
)

from nosgrid.core.jobs.base import ClosedModel, problems
from nosgrid.core.jobs.graph import OpNode, plan_problems
from nosgrid.core.jobs.meta import Meta
from nosgrid.core.jobs.refs import (
    LITERAL_PATTERN,
    REMOVE_IF_EMPTY,
    SPREAD_KEY,
    image_reference_problem,
    is_literal,
)

MAX_OPS: Final = 64
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


def _typed_union(expected: str) -> Discriminator:
    return Discriminator(
        _by_type,
        custom_error_type="invalid_type_tag",
        custom_error_message=f"'type' must be {expected}",
    )


HealthCheck = Annotated[
    Annotated[HttpHealthCheck, Tag("http")] | Annotated[WebSocketHealthCheck, Tag("websocket")],
    _typed_union("'http' or 'websocket'"),
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


def _exposed_port_problem(elements: list[Any]) -> str | None:
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


# --- args ----------------------------------------------------------------------------


class Volume(ClosedModel):
    """Mount of a volume made by a ``container/create-volume`` op."""

    name: NonEmpty
    dest: NonEmpty


class DockerAuth(ClosedModel):
    """Registry credentials for a private image."""

    username: str | None = None
    password: str | None = None
    email: str | None = None
    server: str | None = None


class Authentication(ClosedModel):
    """``args.authentication``: private registry pulls."""

    docker: DockerAuth | None = None


class RestartPolicyOnFailure(ClosedModel):
    """``{"policy": "on-failure", "restart_tries": N}``."""

    policy: Literal["on-failure"]
    restart_tries: Annotated[int, Field(ge=0)] | None = None


RestartPolicy = Literal["no", "always", "unless-stopped", "on-failure"] | RestartPolicyOnFailure
Command = str | list[str]


class RunArgs(ClosedModel):
    """``args`` of a ``container/run`` op.

    >>> RunArgs(image="busybox", cmd=["echo", "hi"]).command_argv()
    ['echo', 'hi']
    """

    image: str
    cmd: Command | None = None
    entrypoint: Command | None = None
    env: dict[str, str] | None = None
    gpu: bool | None = None
    work_dir: str | None = None
    expose: Expose | None = None
    private: bool | None = None
    resources: list[ResourceElement] | None = None
    volumes: list[Volume] | None = None
    aliases: str | list[str] | None = None
    restart_policy: RestartPolicy | None = None
    authentication: Authentication | None = None
    output: str | None = None
    required_vram: Annotated[int | float, Field(ge=0)] | None = None

    @field_validator("image")
    @classmethod
    def _image_reference(cls, value: str) -> str:
        return _check_image(value)

    @field_validator("expose")
    @classmethod
    def _unique_ports(cls, value: Any) -> Any:
        if isinstance(value, list) and (problem := _exposed_port_problem(value)):
            raise ValueError(problem)
        return value

    def command_argv(self) -> list[str] | None:
        """The container CMD as argv: a string runs under ``/bin/sh -c``, an array verbatim.

        None means the image's own CMD.

        >>> RunArgs(image="busybox", cmd="echo $HOME").command_argv()
        ['/bin/sh', '-c', 'echo $HOME']
        """
        if self.cmd is None:
            return None
        return ["/bin/sh", "-c", self.cmd] if isinstance(self.cmd, str) else list(self.cmd)

    def entrypoint_argv(self) -> list[str] | None:
        """The ENTRYPOINT as argv: a string is one element (not split), an array verbatim.

        >>> RunArgs(image="busybox", entrypoint="/bin/sh").entrypoint_argv()
        ['/bin/sh']
        """
        if self.entrypoint is None:
            return None
        if isinstance(self.entrypoint, str):
            return [self.entrypoint]
        return list(self.entrypoint)

    def alias_list(self) -> list[str]:
        """Extra DNS names: a string is split on commas, as the node does."""
        if self.aliases is None:
            return []
        names = self.aliases.split(",") if isinstance(self.aliases, str) else self.aliases
        return [name.strip() for name in names if name.strip()]


class CreateVolumeArgs(ClosedModel):
    """``args`` of a ``container/create-volume`` op."""

    name: NonEmpty


def _check_image(value: str) -> str:
    problem = image_reference_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


# --- ops -----------------------------------------------------------------------------


class ResultFilter(ClosedModel):
    """A ``results`` entry in object form: a regex and the log types it scans."""

    regex: str
    log_type: list[Literal["stdin", "stdout", "stderr", "nodeerr"]] = Field(
        alias="logType", min_length=1, max_length=4
    )

    @field_validator("log_type")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("logType values must be unique")
        return value


class Execution(ClosedModel):
    """``execution``: the op's group and the ops it waits for."""

    group: NonEmpty | None = None
    depends_on: list[str] | None = None
    stop_if_dependent_stops: bool | None = None

    @model_validator(mode="after")
    def _stop_needs_depends_on(self) -> Execution:
        if self.stop_if_dependent_stops is not None and self.depends_on is None:
            raise problems([("stop_if_dependent_stops", "only allowed together with depends_on")])
        return self


class _OperationBase(ClosedModel):
    id: NonEmpty
    results: dict[str, str | ResultFilter] | None = None
    execution: Execution | None = None

    @property
    def group_name(self) -> str:
        """The group the op runs in: ``execution.group`` or, without one, its own id."""
        group = self.execution.group if self.execution else None
        return group if group is not None else self.id

    @property
    def depends_on(self) -> tuple[str, ...]:
        """The ids this op waits for (empty when none)."""
        deps = self.execution.depends_on if self.execution else None
        return tuple(deps or ())


class RunOperation(_OperationBase):
    """A ``container/run`` op."""

    type: Literal["container/run"]
    args: RunArgs


class CreateVolumeOperation(_OperationBase):
    """A ``container/create-volume`` op."""

    type: Literal["container/create-volume"]
    args: CreateVolumeArgs


Operation = Annotated[
    Annotated[RunOperation, Tag("container/run")]
    | Annotated[CreateVolumeOperation, Tag("container/create-volume")],
    _typed_union("'container/run' or 'container/create-volume'"),
]


# --- global, logistics, the definition ------------------------------------------------


class GlobalDefaults(ClosedModel):
    """``global``: defaults for every op, and ``variables`` for templating."""

    image: str | None = None
    gpu: bool | None = None
    entrypoint: Command | None = None
    env: dict[str, str] | None = None
    work_dir: str | None = None
    variables: dict[str, str] | None = None

    @field_validator("image")
    @classmethod
    def _image_reference(cls, value: str) -> str:
        return _check_image(value)


class LogisticsArgs(ClosedModel):
    """``logistics.*.args``."""

    endpoint: str | None = None


class LogisticsLeg(ClosedModel):
    """One direction of confidential delivery (``send`` or ``receive``)."""

    type: Literal["api", "api-listen"]
    args: LogisticsArgs


class Logistics(ClosedModel):
    """Confidential/off-chain delivery of the definition and its results."""

    send: LogisticsLeg | None = None
    receive: LogisticsLeg | None = None


class JobDefinition(ClosedModel):
    """A whole job definition. Build it with ``nosgrid.core.jobs.load.load_job_definition``.

    >>> JobDefinition.model_validate({"version": "0.1", "type": "container", "ops": []}).ops
    []
    """

    version: str
    type: Literal["container"]
    meta: Meta | None = None
    global_: GlobalDefaults | None = Field(None, alias="global")
    ops: list[Operation] = Field(max_length=MAX_OPS)
    logistics: Logistics | None = None
    deployment_id: str | None = None

    @model_validator(mode="after")
    def _sound_plan(self) -> JobDefinition:
        found = plan_problems(self.op_nodes())
        if found:
            raise problems(found)
        return self

    def op_nodes(self) -> list[OpNode]:
        """The ops as the plan sees them (id, group, depends_on)."""
        return [
            OpNode(op.id, op.execution.group if op.execution else None, op.depends_on)
            for op in self.ops
        ]

    def op(self, op_id: str) -> RunOperation | CreateVolumeOperation:
        """The op with id ``op_id`` (KeyError if none)."""
        for candidate in self.ops:
            if candidate.id == op_id:
                return candidate
        raise KeyError(op_id)
