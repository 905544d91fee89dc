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

from typing import Annotated, Any, Final, Literal

from pydantic import Field, Tag, field_validator, model_validator

from nosgrid.core.jobs.base import ClosedModel, problems
from nosgrid.core.jobs.fields import (
    Expose,
    ExposedPort,
    HealthCheck,
    HFResource,
    HttpHealthCheck,
    NonEmpty,
    OllamaResource,
    ResourceElement,
    S3Auth,
    S3Bucket,
    S3Resource,
    SpreadMarker,
    WebSocketHealthCheck,
    exposed_port_problem,
    typed_union,
)
from nosgrid.core.jobs.graph import OpNode, plan_problems
from nosgrid.core.jobs.meta import Meta, NosgridMeta
from nosgrid.core.jobs.refs import image_reference_problem

__all__ = [
    "MAX_OPS",
    "Authentication",
    "CreateVolumeArgs",
    "CreateVolumeOperation",
    "DockerAuth",
    "Execution",
    "Expose",
    "ExposedPort",
    "GlobalDefaults",
    "HFResource",
    "HealthCheck",
    "HttpHealthCheck",
    "JobDefinition",
    "Logistics",
    "LogisticsArgs",
    "LogisticsLeg",
    "Meta",
    "NosgridMeta",
    "OllamaResource",
    "Operation",
    "ResourceElement",
    "RestartPolicyOnFailure",
    "ResultFilter",
    "RunArgs",
    "RunOperation",
    "S3Auth",
    "S3Bucket",
    "S3Resource",
    "SpreadMarker",
    "Volume",
    "WebSocketHealthCheck",
]

MAX_OPS: Final = 64

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
        if isinstance(value, list) and (problem := exposed_port_problem(value)):
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
        """The ids this op depends on (empty when none); ``plan.waits_for`` says which of
        them it waits for (those of its own group)."""
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
    typed_union("'container/run' or 'container/create-volume'"),
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
