"""Every error a user of nosgrid can cause, in one tree.

Each error has a stable machine-readable ``code``, the HTTP status the API answers with,
and a message that says what to do. Foreign exceptions (SQLAlchemy, httpx, Podman,
Solana) are translated into this tree at the boundary with ``raise ... from exc``.

::

    NosgridError                      500 internal
    ├── InvalidInput                  400 invalid_input
    │   ├── InvalidAmount             400 invalid_amount
    │   ├── InvalidJobSpec            422 invalid_job_spec
    │   ├── InvalidMarketParams       400 invalid_market_params
    │   ├── InvalidText               400 invalid_text
    │   ├── ModelCannotServe          400 model_not_supported (gateway)
    │   ├── SchemaMismatch            400 schema_mismatch
    │   ├── InvalidReceipt            400 invalid_receipt     (receipts)
    │   └── BrokenAttestorChain       400 attestor_chain_broken (receipts)
    ├── AuthError                     401 unauthorized
    │   ├── BadSignature              401 bad_signature
    │   ├── StaleRequest              401 stale_request
    │   ├── ReplayedNonce             401 replayed_nonce
    │   └── InvalidApiKey             401 invalid_api_key     (gateway; ``reason``)
    ├── Forbidden                     403 forbidden
    │   └── ModelNotAllowed           403 model_not_allowed   (gateway)
    ├── NotFound                      404 not_found
    │   ├── JobNotFound               404 job_not_found
    │   ├── MarketNotFound            404 market_not_found
    │   ├── NodeNotFound              404 node_not_found
    │   ├── BlobNotFound              404 blob_not_found
    │   ├── ReceiptNotFound           404 receipt_not_found   (receipts)
    │   ├── DeploymentNotFound        404 deployment_not_found
    │   └── ModelNotFound             404 model_not_found     (gateway)
    ├── Conflict                      409 conflict
    │   ├── IllegalTransition         409 illegal_transition
    │   ├── AlreadyExists             409 already_exists
    │   ├── IdempotencyKeyReused      409 idempotency_key_reused
    │   └── StakeLocked               409 stake_locked
    ├── PaymentRequired               402 payment_required
    │   ├── InsufficientFunds         402 insufficient_funds
    │   └── QuotaExceeded             429 insufficient_quota  (gateway; ``reason``)
    ├── PayloadTooLarge               413 payload_too_large
    ├── RateLimited                   429 rate_limited
    ├── LedgerCorrupt                 500 ledger_corrupt
    └── Unavailable                   503 unavailable
        ├── SettlementFailed          503 settlement_failed
        ├── ExecutorError             503 executor_error
        ├── ModelUnavailable          503 model_unavailable   (gateway)
        └── UpstreamFailed            502 upstream_error      (gateway)

The gateway's errors use OpenAI's codes (the OpenAI routes render any of these in
OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``; see
``coordinator/api/openai.py``). ``QuotaExceeded`` is a payment error answered with 429,
the status every OpenAI client reads as ``insufficient_quota``.

Example::

    try:
        parse_nos("1.2345678")
    except InvalidAmount as err:
        print(err.code, err.http_status, err.message)
"""

from __future__ import annotations

from typing import Any, ClassVar


class NosgridError(Exception):
    """Base of every nosgrid error. Carries ``code``, ``http_status`` and ``message``."""

    code: ClassVar[str] = "internal"
    http_status: ClassVar[int] = 500
    default_message: ClassVar[str] = "Something went wrong inside nosgrid; please report it."

    def __init__(self, message: str | None = None, **details: Any) -> None:
        self.message = message or self.default_message
        self.details: dict[str, Any] = details
        super().__init__(self.message)

    def to_dict(self) -> dict[str, Any]:
        """The JSON body the API returns for this error."""
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body

    @classmethod
    def from_dict(cls, body: dict[str, Any]) -> NosgridError:
        """Rebuild the matching subclass from an API error body (used by the SDK)."""
        code = str(body.get("code", "internal"))
        err_cls = error_classes().get(code, NosgridError)
        details = body.get("details") or {}
        err = err_cls.__new__(err_cls)
        NosgridError.__init__(err, str(body.get("message", "")) or None)
        if isinstance(err, InvalidJobSpec):
            err.errors = list(details.get("errors", [])) if isinstance(details, dict) else []
        err.details = dict(details) if isinstance(details, dict) else {"details": details}
        return err


class InvalidInput(NosgridError):
    code = "invalid_input"
    http_status = 400
    default_message = "The request is not valid; check the fields named in the details."


class InvalidAmount(InvalidInput):
    code = "invalid_amount"
    default_message = "Amounts are NOS with at most 6 decimals, e.g. '1.5'."


class InvalidJobSpec(InvalidInput):
    code = "invalid_job_spec"
    http_status = 422
    default_message = "The job definition is not valid; fix the fields listed in the errors."

    def __init__(self, message: str | None = None, errors: list[str] | None = None) -> None:
        self.errors: list[str] = list(errors or [])
        if message is None and self.errors:
            message = "invalid job definition: " + "; ".join(self.errors)
        super().__init__(message)
        if self.errors:
            self.details["errors"] = self.errors


class InvalidMarketParams(InvalidInput):
    code = "invalid_market_params"
    default_message = "The market parameters are not valid."


class InvalidText(InvalidInput):
    """Text that cannot be encoded or stored: a lone surrogate, or a NUL where none may be
    (``nosgrid.core.text``); ``path`` names where it is."""

    code = "invalid_text"
    default_message = "The request holds text that is not valid Unicode; send UTF-8 text."


class ModelCannotServe(InvalidInput):
    """The model's engine does not answer this route (a chat model asked for embeddings)."""

    code = "model_not_supported"
    default_message = "This model does not serve that route; see GET /openai/v1/models."

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message, param="model")


class InvalidReceipt(InvalidInput):
    code = "invalid_receipt"
    default_message = ("Not a valid nosgrid receipt: 172 bytes of layout v1 signed by the "
                       "market's attestor key (docs/composability.md).")


class BrokenAttestorChain(InvalidInput):
    code = "attestor_chain_broken"
    default_message = "The attestor key chain does not verify from the market's first key."


class SchemaMismatch(InvalidInput):
    code = "schema_mismatch"
    default_message = ("The database's schema is not the newest; run the migrations first "
                       "(starting the coordinator on it does: "
                       "`nosgrid coordinator start --db FILE`).")


class AuthError(NosgridError):
    code = "unauthorized"
    http_status = 401
    default_message = "Sign the request with your keypair (nosgrid wallet new creates one)."


class BadSignature(AuthError):
    code = "bad_signature"
    default_message = "The request signature does not verify against the public key."


class StaleRequest(AuthError):
    code = "stale_request"
    default_message = "The request timestamp is outside the allowed window; check your clock."


class ReplayedNonce(AuthError):
    code = "replayed_nonce"
    default_message = "This nonce was already used; send each request with a fresh nonce."


class InvalidApiKey(AuthError):
    """A gateway API key that does not verify; ``reason`` is ``missing``, ``malformed``,
    ``bad_signature``, ``expired`` or ``revoked``."""

    code = "invalid_api_key"
    default_message = "Send a valid API key (`nosgrid keys create` makes one)."

    def __init__(self, message: str | None = None, *, reason: str = "malformed") -> None:
        super().__init__(message, reason=reason)

    @property
    def reason(self) -> str:
        return str(self.details.get("reason", "malformed"))


class Forbidden(NosgridError):
    code = "forbidden"
    http_status = 403
    default_message = "Your key may not act on this resource."


class ModelNotAllowed(Forbidden):
    code = "model_not_allowed"
    default_message = "This API key may not use that model; create one that names it."

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message, param="model")


class NotFound(NosgridError):
    code = "not_found"
    http_status = 404
    default_message = "No such resource."


class JobNotFound(NotFound):
    code = "job_not_found"
    default_message = "No such job; `nosgrid job list` shows yours."


class ReceiptNotFound(NotFound):
    code = "receipt_not_found"
    default_message = ("The job has no receipt yet: one is issued when it settles with a "
                       "result (or is held for audit); ask again then.")


class MarketNotFound(NotFound):
    code = "market_not_found"
    default_message = "No such market; `nosgrid market list` shows the markets."


class NodeNotFound(NotFound):
    code = "node_not_found"
    default_message = "No such node; register it first with `nosgrid node start`."


class BlobNotFound(NotFound):
    code = "blob_not_found"
    default_message = "No blob with that sha256; upload it first."


class ModelNotFound(NotFound):
    code = "model_not_found"
    default_message = "No node serves or deploys that model; see GET /openai/v1/models."

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message, param="model")


class DeploymentNotFound(NotFound):
    code = "deployment_not_found"
    default_message = "No such deployment; `nosgrid deployment list` shows yours."


class Conflict(NosgridError):
    code = "conflict"
    http_status = 409
    default_message = "The request conflicts with the current state."


class IllegalTransition(Conflict):
    code = "illegal_transition"
    default_message = "That action is not allowed in the job's current state."


class AlreadyExists(Conflict):
    code = "already_exists"
    default_message = "It already exists."


class StakeLocked(Conflict):
    code = "stake_locked"
    default_message = "The stake is still locked; wait for it to unlock."


class IdempotencyKeyReused(Conflict):
    code = "idempotency_key_reused"
    default_message = "This Idempotency-Key was used for another request."


class PaymentRequired(NosgridError):
    code = "payment_required"
    http_status = 402
    default_message = "The account cannot pay for this."


class InsufficientFunds(PaymentRequired):
    code = "insufficient_funds"
    default_message = "Not enough NOS; top up with `nosgrid faucet` (dev) or a deposit."


class QuotaExceeded(PaymentRequired):
    """A gateway request its key cannot pay for: ``reason`` is ``over_cap`` (the key's spend
    cap) or ``insufficient_funds`` (its owner's wallet). 429, as OpenAI answers."""

    code = "insufficient_quota"
    http_status = 429
    default_message = "The API key's cap or its wallet cannot cover this request."

    def __init__(self, message: str | None = None, *, reason: str = "over_cap") -> None:
        super().__init__(message, reason=reason)

    @property
    def reason(self) -> str:
        return str(self.details.get("reason", "over_cap"))


class PayloadTooLarge(NosgridError):
    code = "payload_too_large"
    http_status = 413
    default_message = "The body is larger than the server accepts."


class RateLimited(NosgridError):
    code = "rate_limited"
    http_status = 429
    default_message = "Too many requests; wait and try again."


class LedgerCorrupt(NosgridError):
    code = "ledger_corrupt"
    http_status = 500
    default_message = "The ledger failed verification; run `nosgrid ledger verify` for details."


class Unavailable(NosgridError):
    code = "unavailable"
    http_status = 503
    default_message = "A component nosgrid depends on is unavailable; try again shortly."


class SettlementFailed(Unavailable):
    code = "settlement_failed"
    default_message = "The settlement backend rejected the transfer; the ledger is unchanged."


class ExecutorError(Unavailable):
    code = "executor_error"
    default_message = "The container runtime failed; check `nosgrid node info`."


class ModelUnavailable(Unavailable):
    code = "model_unavailable"
    default_message = "No healthy replica of the model answered in time; retry shortly."


class UpstreamFailed(Unavailable):
    """The node serving a gateway request failed it (OpenAI's 502 ``upstream_error``)."""

    code = "upstream_error"
    http_status = 502
    default_message = "The node serving this request failed; retry."


def _all_subclasses(cls: type[NosgridError]) -> list[type[NosgridError]]:
    out: list[type[NosgridError]] = [cls]
    for sub in cls.__subclasses__():
        out.extend(_all_subclasses(sub))
    return out


def error_classes() -> dict[str, type[NosgridError]]:
    """Every error class by its code (later modules may add subclasses)."""
    return {c.code: c for c in _all_subclasses(NosgridError)}

