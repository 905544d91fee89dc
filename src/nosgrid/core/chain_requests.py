"""Compute requested from chain: the request Memo, and why a request cannot run.

A program (through its PDA) or a user pays for a job with a token transfer into the
market's request vault and, in the same transaction, a Memo::

    nosgrid request def=<sha256 hex> reply=<base58> [market=<name>] [timeout=<s>]
    nosgrid request inline=<base64 of the definition> reply=<base58> [...]

``def`` names a definition stored beforehand (a blob, or one already posted);
``inline`` carries a small one. The receipt of the job names ``reply`` (a key the
requesting program controls or watches). A request that cannot run is refunded with a
Memo ``nosgrid refund ref=<request signature> reason=<code>``.

Pure: parsing and the price check; the watcher (``settlement``/``coordinator``) reads the
chain and posts.

>>> r = parse_request_memo("nosgrid request def=" + "ab" * 32 +
...                        " reply=11111111111111111111111111111111 timeout=60")
>>> r.definition_sha256[:4], r.timeout, r.market
('abab', 60, None)
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from solders.pubkey import Pubkey

from nosgrid.core.errors import InvalidInput

MEMO_KIND: Final = "request"
MAX_TIMEOUT_FIELD: Final = 10**7
#: the largest definition a request may carry inline: its base64 and the transfer must fit
#: one 1,232-byte transaction
MAX_INLINE_BYTES: Final = 512
_SHA_RE: Final = re.compile(r"^[0-9a-f]{64}$")
_MARKET_RE: Final = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RefundReason(StrEnum):
    """Why a request was refunded (the ``reason=`` of its refund Memo)."""

    BAD_MEMO = "bad_memo"  # no request Memo, or one that does not parse
    UNKNOWN_DEFINITION = "unknown_definition"  # def= names nothing stored
    INVALID_DEFINITION = "invalid_definition"  # the definition does not validate
    UNKNOWN_MARKET = "unknown_market"
    PRICE_TOO_LOW = "price_too_low"  # the transfer does not cover price × timeout
    CANNOT_POST = "cannot_post"  # any other refusal of the post
    UNUSED = "unused"  # the part of the payment the job did not use
    JOB_ENDED = "job_ended"  # the job failed, timed out or was cancelled: refunded as usual


class BadRequest(InvalidInput):
    """A request that cannot run; ``reason`` is the refund reason."""

    code = "bad_chain_request"
    default_message = "The chain request cannot run; it is refunded with a reason memo."

    def __init__(self, reason: RefundReason, message: str) -> None:
        super().__init__(message, reason=reason.value)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class RequestMemo:
    """What a request asks for: exactly one of ``definition_sha256`` and ``inline``."""

    reply_key: str
    definition_sha256: str | None = None
    inline: bytes | None = None
    market: str | None = None
    timeout: int | None = None


def parse_request_memo(text: str) -> RequestMemo:
    """The request a Memo makes; :class:`BadRequest` (``bad_memo``) when it makes none."""
    parts = text.strip().split(" ")
    if parts[:2] != ["nosgrid", MEMO_KIND]:
        raise BadRequest(RefundReason.BAD_MEMO, "the memo is not `nosgrid request ...`")
    fields: dict[str, str] = {}
    for part in parts[2:]:
        name, sep, value = part.partition("=")
        if not sep or not value or name in fields:
            raise BadRequest(RefundReason.BAD_MEMO, f"memo field {part!r} is not name=value "
                             "(each name once)")
        fields[name] = value
    unknown = set(fields) - {"def", "inline", "reply", "market", "timeout"}
    if unknown:
        raise BadRequest(RefundReason.BAD_MEMO, f"unknown memo fields {sorted(unknown)}")
    if ("def" in fields) == ("inline" in fields):
        raise BadRequest(RefundReason.BAD_MEMO, "name the definition with exactly one of "
                         "def=<sha256> or inline=<base64>")
    try:
        reply = str(Pubkey.from_string(fields.get("reply", "")))
    except ValueError:
        raise BadRequest(RefundReason.BAD_MEMO, "reply= must be a base58 public key") from None
    sha = fields.get("def")
    if sha is not None and not _SHA_RE.match(sha):
        raise BadRequest(RefundReason.BAD_MEMO, "def= must be 64 lowercase hex digits")
    inline = None
    if "inline" in fields:
        try:
            inline = base64.b64decode(fields["inline"], validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest(RefundReason.BAD_MEMO, "inline= must be base64") from None
    market = fields.get("market")
    if market is not None and not _MARKET_RE.match(market):
        raise BadRequest(RefundReason.BAD_MEMO, f"market= {market!r} is not a market name")
    timeout = None
    if "timeout" in fields:
        if not fields["timeout"].isdigit() or not 0 < int(fields["timeout"]) <= MAX_TIMEOUT_FIELD:
            raise BadRequest(RefundReason.BAD_MEMO, "timeout= must be whole seconds > 0")
        timeout = int(fields["timeout"])
    return RequestMemo(reply, sha, inline, market, timeout)


def request_memo_text(memo: RequestMemo) -> str:
    """The Memo of ``memo`` (the inverse of :func:`parse_request_memo`)."""
    parts = ["nosgrid", MEMO_KIND]
    if memo.definition_sha256 is not None:
        parts.append(f"def={memo.definition_sha256}")
    if memo.inline is not None:
        parts.append(f"inline={base64.b64encode(memo.inline).decode()}")
    parts.append(f"reply={memo.reply_key}")
    if memo.market is not None:
        parts.append(f"market={memo.market}")
    if memo.timeout is not None:
        parts.append(f"timeout={memo.timeout}")
    return " ".join(parts)


def refund_memo_text(request_signature: str, reason: RefundReason) -> str:
    """``nosgrid refund ref=<signature> reason=<code>``."""
    return f"nosgrid refund ref={request_signature} reason={reason.value}"


def check_payment(amount: int, deposit: int) -> int:
    """What is left to refund once ``deposit`` is taken from ``amount``; a payment short of
    the job's deposit (price × timeout) is :class:`BadRequest` ``price_too_low``."""
    if amount < deposit:
        raise BadRequest(RefundReason.PRICE_TOO_LOW,
                         f"the request paid {amount} base units but the job's deposit is "
                         f"{deposit} (price × timeout)")
    return amount - deposit
