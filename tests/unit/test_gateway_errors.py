"""The gateway's errors are nosgrid errors, rendered in OpenAI's shape at its routes."""

from __future__ import annotations

import pytest

import nosgrid.core.errors as errors_module
from nosgrid.coordinator.api.openai import openai_body
from nosgrid.core.errors import (
    InsufficientFunds,
    InvalidApiKey,
    InvalidInput,
    ModelNotAllowed,
    ModelNotFound,
    ModelUnavailable,
    NosgridError,
    NotFound,
    QuotaExceeded,
    RateLimited,
    StaleRequest,
    UpstreamFailed,
    error_classes,
)

# what the `openai` client and docs/gateway.md's error table rely on
CASES: list[tuple[NosgridError, int, str, str | None]] = [
    (InvalidApiKey("no key", reason="missing"), 401, "invalid_request_error", "invalid_api_key"),
    (StaleRequest(), 401, "invalid_request_error", "invalid_api_key"),
    (ModelNotAllowed("not this one"), 403, "invalid_request_error", "model_not_allowed"),
    (ModelNotFound("nobody serves it"), 404, "invalid_request_error", "model_not_found"),
    (QuotaExceeded("over", reason="over_cap"), 429, "insufficient_quota", "insufficient_quota"),
    (InsufficientFunds(), 402, "insufficient_quota", "insufficient_quota"),
    (InvalidInput("bad n", param="n"), 400, "invalid_request_error", None),
    (RateLimited(), 429, "requests", "rate_limit_exceeded"),
    (ModelUnavailable("cold"), 503, "server_error", "model_unavailable"),
    (UpstreamFailed("node died"), 502, "server_error", "upstream_error"),
    (NotFound("no route"), 404, "invalid_request_error", "not_found"),
    (NosgridError(), 500, "server_error", "internal"),
]


@pytest.mark.parametrize(("err", "status", "kind", "code"), CASES,
                         ids=[type(c[0]).__name__ for c in CASES])
def test_openai_shape(err: NosgridError, status: int, kind: str, code: str | None) -> None:
    body = openai_body(err)
    assert err.http_status == status
    assert body == {"error": {"message": err.message, "type": kind,
                              "param": err.details.get("param"), "code": code}}


def test_the_param_is_named() -> None:
    assert openai_body(ModelNotFound("x"))["error"]["param"] == "model"
    assert openai_body(InvalidInput("bad n", param="n"))["error"]["param"] == "n"


def test_gateway_errors_are_in_the_tree_with_unique_codes() -> None:
    classes = error_classes()
    for cls in (InvalidApiKey, ModelNotAllowed, ModelNotFound, QuotaExceeded,
                ModelUnavailable, UpstreamFailed):
        assert classes[cls.code] is cls
        assert cls.__name__ in (errors_module.__doc__ or "")  # drawn in the tree
