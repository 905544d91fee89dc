"""Typed errors of Solana settlement, and the mapping from SPL Token failures to them.

Every error here is a :class:`~nosgrid.core.errors.SettlementFailed`, so a service that
catches ``SettlementFailed`` sees them all. Each one is raised both when a pre-flight check
sees the problem (nothing was sent) and when the chain itself rejects the transaction
(then ``logs`` holds the program logs and the message ends with their tail)::

    SettlementFailed                   503 settlement_failed          (core)
    └── TransactionFailed              503 transaction_failed         any other rejection
        ├── AllowanceTooSmall          402 allowance_too_small        approve more
        ├── InsufficientTokenBalance   402 insufficient_token_balance SPL error 1
        ├── WrongMint                  400 wrong_mint                 SPL error 3
        ├── TokenOwnerMismatch         403 token_owner_mismatch       SPL error 4
        ├── TokenAccountFrozen         409 token_account_frozen       SPL error 17
        └── TokenAccountMissing        409 token_account_missing      closed / never created

Example::

    try:
        await backend.settle(job_id, entry_hash, legs, client=client)
    except AllowanceTooSmall as err:
        print(err.message)   # "... run `nosgrid wallet approve` ..."
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Final

from solders.transaction_status import (
    InstructionErrorCustom,
    InstructionErrorFieldless,
    TransactionErrorFieldless,
    TransactionErrorInstructionError,
    TransactionErrorType,
)

from nosgrid.core.errors import SettlementFailed

LOG_TAIL_LINES: Final = 8

# SPL Token program error codes (spl-token/program/src/error.rs).
SPL_INSUFFICIENT_FUNDS: Final = 1
SPL_MINT_MISMATCH: Final = 3
SPL_OWNER_MISMATCH: Final = 4
SPL_UNINITIALIZED_STATE: Final = 9
SPL_ACCOUNT_FROZEN: Final = 17


class TransactionFailed(SettlementFailed):
    """The chain rejected (or would reject) a settlement transaction; ``logs`` says why."""

    code: ClassVar[str] = "transaction_failed"
    default_message: ClassVar[str] = (
        "The Solana transaction failed; the ledger is unchanged. See the program logs."
    )
    # Class-level defaults so an error rebuilt by NosgridError.from_dict still has them.
    logs: tuple[str, ...] = ()
    program_error: int | None = None
    instruction_index: int | None = None

    def __init__(
        self,
        message: str | None = None,
        *,
        logs: Sequence[str] = (),
        program_error: int | None = None,
        instruction_index: int | None = None,
        **details: Any,
    ) -> None:
        self.logs = tuple(logs)
        self.program_error = program_error
        self.instruction_index = instruction_index
        text = message or self.default_message
        if self.logs:
            text += "\nprogram logs (tail):\n  " + "\n  ".join(self.logs[-LOG_TAIL_LINES:])
        if program_error is not None:
            details["program_error"] = program_error
        if instruction_index is not None:
            details["instruction_index"] = instruction_index
        if self.logs:
            details["logs"] = self.logs[-LOG_TAIL_LINES:]
        super().__init__(text, **details)


class AllowanceTooSmall(TransactionFailed):
    code: ClassVar[str] = "allowance_too_small"
    http_status: ClassVar[int] = 402
    default_message: ClassVar[str] = (
        "The client's token account has not approved the market for enough NOS; "
        "run `nosgrid wallet approve AMOUNT` and retry."
    )


class InsufficientTokenBalance(TransactionFailed):
    code: ClassVar[str] = "insufficient_token_balance"
    http_status: ClassVar[int] = 402
    default_message: ClassVar[str] = (
        "The token account holds less NOS than the transfer needs; deposit NOS and retry."
    )


class WrongMint(TransactionFailed):
    code: ClassVar[str] = "wrong_mint"
    http_status: ClassVar[int] = 400
    default_message: ClassVar[str] = (
        "A token account belongs to another mint than the market's NOS mint; "
        "use the NOS associated token account (`nosgrid wallet address`)."
    )


class TokenOwnerMismatch(TransactionFailed):
    code: ClassVar[str] = "token_owner_mismatch"
    http_status: ClassVar[int] = 403
    default_message: ClassVar[str] = (
        "The signer is neither the owner nor the approved delegate of the token account."
    )


class TokenAccountFrozen(TransactionFailed):
    code: ClassVar[str] = "token_account_frozen"
    http_status: ClassVar[int] = 409
    default_message: ClassVar[str] = (
        "A token account in the transfer is frozen by the mint's freeze authority; "
        "ask the market operator to thaw it."
    )


class TokenAccountMissing(TransactionFailed):
    code: ClassVar[str] = "token_account_missing"
    http_status: ClassVar[int] = 409
    default_message: ClassVar[str] = (
        "A token account in the transfer does not exist (closed or never created); "
        "create it with `nosgrid wallet init` and retry."
    )


_BY_SPL_CODE: Final[dict[int, type[TransactionFailed]]] = {
    SPL_INSUFFICIENT_FUNDS: InsufficientTokenBalance,
    SPL_MINT_MISMATCH: WrongMint,
    SPL_OWNER_MISMATCH: TokenOwnerMismatch,
    SPL_UNINITIALIZED_STATE: TokenAccountMissing,
    SPL_ACCOUNT_FROZEN: TokenAccountFrozen,
}

# InstructionErrorFieldless values are not hashable, hence a tuple.
_MISSING_ACCOUNT_ERRORS: Final = (
    InstructionErrorFieldless.InvalidAccountData,
    InstructionErrorFieldless.UninitializedAccount,
    InstructionErrorFieldless.IncorrectProgramId,
    InstructionErrorFieldless.InvalidAccountOwner,
)


def error_from_transaction(
    err: TransactionErrorType | None, logs: Sequence[str], what: str = "transaction"
) -> TransactionFailed:
    """Translate a Solana transaction error (and its logs) into the typed error above.

    >>> from solders.transaction_status import TransactionErrorInstructionError
    >>> from solders.transaction_status import InstructionErrorCustom
    >>> err = TransactionErrorInstructionError(0, InstructionErrorCustom(17))
    >>> type(error_from_transaction(err, [])).__name__
    'TokenAccountFrozen'
    """
    if isinstance(err, TransactionErrorInstructionError):
        index, inner = err.index, err.err
        if isinstance(inner, InstructionErrorCustom):
            cls = _BY_SPL_CODE.get(inner.code, TransactionFailed)
            return cls(
                f"{what} failed in instruction {index}: {cls.default_message} "
                f"(program error {inner.code})",
                logs=logs,
                program_error=inner.code,
                instruction_index=index,
            )
        if inner in _MISSING_ACCOUNT_ERRORS:
            return TokenAccountMissing(
                f"{what} failed in instruction {index} ({inner}): "
                f"{TokenAccountMissing.default_message}",
                logs=logs,
                instruction_index=index,
            )
        return TransactionFailed(
            f"{what} failed in instruction {index}: {inner}", logs=logs, instruction_index=index
        )
    if err == TransactionErrorFieldless.AccountNotFound:
        return TransactionFailed(
            f"{what} failed: the fee payer has no SOL account; fund it (airdrop on devnet)",
            logs=logs,
        )
    return TransactionFailed(f"{what} failed: {err}", logs=logs)
