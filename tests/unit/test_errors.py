"""The error tree: stable codes, statuses, and round trips through the API body."""

from __future__ import annotations

from nosgrid.core.errors import (
    InsufficientFunds,
    InvalidJobSpec,
    JobNotFound,
    NosgridError,
    error_classes,
)


def test_codes_are_unique_and_statuses_valid() -> None:
    classes = error_classes()
    codes = [c.code for c in classes.values()]
    assert len(codes) == len(set(codes))
    assert all(400 <= c.http_status < 600 for c in classes.values())
    assert all(c.default_message for c in classes.values())


def test_round_trip_keeps_the_subclass() -> None:
    err = NosgridError.from_dict(InsufficientFunds("short", needed=5).to_dict())
    assert isinstance(err, InsufficientFunds)
    assert err.message == "short" and err.details == {"needed": 5}
    spec = NosgridError.from_dict(InvalidJobSpec(errors=["ops[0].id: field required"]).to_dict())
    assert isinstance(spec, InvalidJobSpec) and spec.errors == ["ops[0].id: field required"]
    assert isinstance(NosgridError.from_dict({"code": "job_not_found"}), JobNotFound)
    assert type(NosgridError.from_dict({"code": "nope", "message": "x"})) is NosgridError


def test_docstring_draws_every_error() -> None:
    import nosgrid.core.errors as mod

    for cls in error_classes().values():
        if cls.__module__ == mod.__name__:
            assert cls.__name__ in (mod.__doc__ or ""), cls.__name__
