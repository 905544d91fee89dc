"""The base of every closed job-definition object, and the error type for checks across fields.

>>> class Port(ClosedModel):
...     port: int | None = None
>>> try:
...     Port.model_validate({"port": None})
... except ValueError as err:
...     print(err.errors()[0]["msg"])
null is not allowed here; leave the key out
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Final

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

#: Error type whose ``ctx["problems"]`` holds ``[sub_path, message]`` pairs (see ``problems``).
PROBLEMS_ERROR: Final = "nosgrid_problems"


class ClosedModel(BaseModel):
    """A closed object (unknown keys are errors), strict types, immutable, no explicit nulls.

    Nosana's validators reject ``null`` for optional keys, so nosgrid does too; a subclass
    lists the keys that may be null in ``nullable_fields``.
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    nullable_fields: ClassVar[frozenset[str]] = frozenset()

    @field_validator("*", mode="before")
    @classmethod
    def _reject_null(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None and info.field_name not in cls.nullable_fields:
            raise PydanticCustomError(
                "null_not_allowed", "null is not allowed here; leave the key out"
            )
        return value


def problems(found: Sequence[tuple[str, str]]) -> PydanticCustomError:
    """One pydantic error carrying several ``(sub_path, message)`` problems of one object.

    The loader expands it into one message per problem, each at ``<object path>.<sub_path>``.
    """
    summary = "; ".join(f"{path}: {msg}" if path else msg for path, msg in found)
    return PydanticCustomError(
        PROBLEMS_ERROR, "{summary}", {"summary": summary, "problems": [list(p) for p in found]}
    )
