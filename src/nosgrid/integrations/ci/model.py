"""The subset of GitHub Actions' workflow syntax nosgrid runs, as closed pydantic models.

Closed like the job definition: an unknown key is an error that names its line, since a
key nosgrid would silently ignore (``services:``, a job-level ``uses:``) changes what the
workflow means. Keys that only matter on GitHub (``permissions``, ``concurrency``,
``environment``) are accepted and ignored. ``workflow_schema()`` is the published JSON
Schema (``schemas/ci-workflow.schema.json``).

>>> wf = Workflow.model_validate({"on": "push", "jobs": {"t": {"runs-on": "ubuntu-latest",
...     "steps": [{"run": "make test"}]}}})
>>> wf.jobs["t"].steps[0].run
'make test'
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from nosgrid.integrations.ci.errors import InvalidWorkflow
from nosgrid.integrations.ci.source import Source, dotted

SCHEMA_ID: Final = "https://nosgrid.dev/schemas/ci-workflow.schema.json"
JOB_ID_RE: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
DEFAULT_TIMEOUT_MINUTES: Final = 360  # GitHub's default

Scalar = str | int | float | bool
#: an expression (``${{ … }}``) or a literal of the field's type
Expr = str


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _env(value: Any) -> Any:
    """Env values may be written as numbers or booleans; they are strings in a process."""
    if isinstance(value, dict):
        return {k: (("true" if v else "false") if isinstance(v, bool) else
                    str(v) if isinstance(v, int | float) else v) for k, v in value.items()}
    return value


class RunDefaults(_Closed):
    shell: str | None = None
    working_directory: str | None = Field(None, alias="working-directory")


class Defaults(_Closed):
    run: RunDefaults | None = None


class Step(_Closed):
    """One step: ``run`` (a script) or ``uses`` (an action nosgrid maps)."""

    id: str | None = None
    name: str | None = None
    if_: bool | Expr | None = Field(None, alias="if")
    uses: str | None = None
    run: str | None = None
    with_: dict[str, Scalar | None] | None = Field(None, alias="with")
    env: dict[str, str] | None = None
    shell: str | None = None
    working_directory: str | None = Field(None, alias="working-directory")
    continue_on_error: bool | Expr | None = Field(None, alias="continue-on-error")
    timeout_minutes: float | Expr | None = Field(None, alias="timeout-minutes")

    _env_strings = field_validator("env", mode="before")(classmethod(lambda cls, v: _env(v)))

    @field_validator("id")
    @classmethod
    def _valid_id(cls, value: str | None) -> str | None:
        if value is not None and not JOB_ID_RE.match(value):
            raise ValueError("a step id starts with a letter or '_' and holds only letters, "
                             "digits, '-' and '_'")
        return value

    @model_validator(mode="after")
    def _run_or_uses(self) -> Step:
        if (self.run is None) == (self.uses is None):
            raise ValueError("a step needs exactly one of 'run' or 'uses'")
        if self.uses is not None and (self.shell or self.working_directory):
            raise ValueError("'shell' and 'working-directory' apply to 'run' steps only")
        return self


class Container(_Closed):
    image: str
    env: dict[str, str] | None = None
    options: str | None = None

    _env_strings = field_validator("env", mode="before")(classmethod(lambda cls, v: _env(v)))


class Strategy(_Closed):
    matrix: dict[str, Any] | Expr | None = None
    fail_fast: bool | Expr | None = Field(None, alias="fail-fast")
    max_parallel: int | Expr | None = Field(None, alias="max-parallel")

    @field_validator("matrix")
    @classmethod
    def _matrix_shape(cls, value: dict[str, Any] | str | None) -> dict[str, Any] | str | None:
        if isinstance(value, dict):
            for key, items in value.items():
                if key in ("include", "exclude"):
                    if not isinstance(items, list | str) or (isinstance(items, list) and not all(
                            isinstance(i, dict) for i in items)):
                        raise ValueError(f"matrix.{key} must be a list of mappings")
                elif not isinstance(items, list | str):
                    raise ValueError(f"matrix.{key} must be a list of values (or an "
                                     "expression)")
        return value


class Job(_Closed):
    """One workflow job: it becomes one nosgrid job per matrix combination."""

    name: str | None = None
    needs: str | list[str] | None = None
    runs_on: str | list[str] | dict[str, Any] | None = Field(None, alias="runs-on")
    container: str | Container | None = None
    env: dict[str, str] | None = None
    defaults: Defaults | None = None
    if_: bool | Expr | None = Field(None, alias="if")
    timeout_minutes: float | Expr | None = Field(None, alias="timeout-minutes")
    continue_on_error: bool | Expr | None = Field(None, alias="continue-on-error")
    strategy: Strategy | None = None
    outputs: dict[str, str] | None = None
    steps: list[Step] = Field(min_length=1)
    # accepted and ignored: they matter only on GitHub
    permissions: Any = None
    environment: Any = None
    concurrency: Any = None

    _env_strings = field_validator("env", mode="before")(classmethod(lambda cls, v: _env(v)))

    def need_list(self) -> list[str]:
        if self.needs is None:
            return []
        return [self.needs] if isinstance(self.needs, str) else list(self.needs)


class Workflow(_Closed):
    """A workflow file: ``.github/workflows/*.yml`` or ``.nosgrid-ci.yml``."""

    name: str | None = None
    run_name: str | None = Field(None, alias="run-name")
    on: Any = None
    env: dict[str, str] | None = None
    defaults: Defaults | None = None
    jobs: dict[str, Job] = Field(min_length=1)
    permissions: Any = None
    concurrency: Any = None

    _env_strings = field_validator("env", mode="before")(classmethod(lambda cls, v: _env(v)))

    @field_validator("jobs")
    @classmethod
    def _job_ids(cls, value: dict[str, Job]) -> dict[str, Job]:
        for job_id in value:
            if not JOB_ID_RE.match(job_id):
                raise ValueError(f"job id {job_id!r} must start with a letter or '_' and hold "
                                 "only letters, digits, '-' and '_'")
        return value


def parse_workflow(src: Source) -> Workflow:
    """Validate a loaded source; ``InvalidWorkflow`` lists each problem with file and line."""
    if not isinstance(src.data, dict):
        raise InvalidWorkflow(errors=[f"{src.filename}:1: a workflow is a mapping with 'jobs'"])
    if isinstance(src.data.get("jobs"), dict):
        problems = []
        for job_id, job in src.data["jobs"].items():
            if isinstance(job, dict) and "uses" in job:
                problems.append(f"{src.where(('jobs', job_id, 'uses'))}: reusable workflows "
                                "are not supported; inline the called workflow's jobs")
            if isinstance(job, dict) and "services" in job:
                problems.append(f"{src.where(('jobs', job_id, 'services'))}: service "
                                "containers are not supported (jobs have no network)")
        if problems:
            raise InvalidWorkflow(errors=problems)
    try:
        return Workflow.model_validate(src.data)
    except ValidationError as exc:
        raise InvalidWorkflow(errors=_messages(exc, src)) from exc


def _messages(exc: ValidationError, src: Source) -> list[str]:
    out: list[str] = []
    for err in exc.errors():
        path: list[str | int] = []
        cur: Any = src.data
        for element in err["loc"]:
            in_list = isinstance(element, int) and isinstance(cur, list) and element < len(cur)
            in_map = isinstance(element, str) and isinstance(cur, dict) and element in cur
            if in_list or in_map:
                path.append(element)
                cur = cur[element]
            elif err["type"] == "missing" and isinstance(element, str) and \
                    element == err["loc"][-1]:
                path.append(element)
            # union branch names ("str", "list[str]") are not part of the user's path
        msg = _message(err)
        line = f"{src.filename}:{src.line(tuple(path))}: {dotted(tuple(path)) or '(top)'}: {msg}"
        if line not in out:
            out.append(line)
    return _merge_union_noise(out)


def _merge_union_noise(lines: list[str]) -> list[str]:
    """A union field fails once per branch; keep one line per field and message prefix."""
    seen: dict[str, str] = {}
    for line in lines:
        field_part = line.rsplit(": ", 1)[0]
        if field_part in seen and "must be" in line and "must be" in seen[field_part]:
            continue
        seen.setdefault(field_part, line)
    return list(dict.fromkeys(seen.values()))


def _message(err: Any) -> str:
    kind, msg = str(err["type"]), str(err["msg"])
    if kind == "missing":
        return "field required"
    if kind == "extra_forbidden":
        return "unknown key (not part of the workflow syntax nosgrid supports)"
    if kind == "value_error":
        return str(msg).removeprefix("Value error, ")
    if kind == "too_short":
        return "must not be empty"
    if kind in ("string_type", "int_type", "float_type", "bool_type", "dict_type",
                "list_type", "model_type", "int_from_float", "bool_parsing", "int_parsing",
                "float_parsing"):
        return f"must be {_EXPECTED.get(kind, kind)}"
    text = str(msg)
    if text.startswith("Input should be "):
        return "must be " + text.removeprefix("Input should be ")
    return text[:1].lower() + text[1:]


_EXPECTED: Final = {
    "string_type": "a string", "int_type": "an integer", "float_type": "a number",
    "bool_type": "a boolean", "dict_type": "a mapping", "list_type": "a list",
    "model_type": "a mapping", "int_from_float": "an integer", "bool_parsing": "a boolean",
    "int_parsing": "an integer", "float_parsing": "a number",
}


def workflow_schema() -> dict[str, Any]:
    """The JSON Schema of the supported subset (what ``schemas/ci-workflow.schema.json`` holds)."""
    schema = Workflow.model_json_schema(by_alias=True, mode="validation")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID,
            "title": "nosgrid CI workflow (the GitHub Actions subset nosgrid runs)", **schema}


def workflow_schema_text() -> str:
    return json.dumps(workflow_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
