"""Errors in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse


class GatewayError(Exception):
    """An error the gateway answers with; ``kind`` is OpenAI's ``type`` field."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error",
                 code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.code, self.param = (
            status, message, kind, code, param)

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param,
                          "code": self.code}}

    def response(self, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=headers)


def invalid_key(message: str) -> GatewayError:
    return GatewayError(401, message, "invalid_request_error", "invalid_api_key")


def bad_request(message: str, param: str | None = None) -> GatewayError:
    return GatewayError(400, message, "invalid_request_error", None, param)


def model_not_found(model: str) -> GatewayError:
    return GatewayError(404, f"The model `{model}` does not exist or no node serves it; "
                        "list models with GET /v1/models or deploy it with `nosgrid deploy`",
                        "invalid_request_error", "model_not_found", "model")


def quota(message: str) -> GatewayError:
    return GatewayError(429, message, "insufficient_quota", "insufficient_quota")


def unavailable(message: str) -> GatewayError:
    return GatewayError(503, message, "server_error", "model_unavailable")


def upstream(message: str) -> GatewayError:
    return GatewayError(502, message, "server_error", "upstream_error")
