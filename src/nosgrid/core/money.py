"""NOS amounts: integers of base units inside, decimal strings only at the edges.

NOS has 6 decimals, so ``1 NOS == 1_000_000`` base units, and the whole supply is
100,000,000 NOS. Parsing is strict: a float is refused (it cannot hold 0.1 exactly),
as are more than 6 decimals, negative amounts, non-numbers and anything above supply.

>>> parse_nos("1.5")
1500000
>>> format_nos(1_500_000)
'1.5'
"""

from __future__ import annotations

import re
from typing import Final

from nosgrid.core.errors import InvalidAmount

DECIMALS: Final = 6
BASE_UNITS_PER_NOS: Final = 10**DECIMALS
TOTAL_SUPPLY_NOS: Final = 100_000_000
TOTAL_SUPPLY: Final = TOTAL_SUPPLY_NOS * BASE_UNITS_PER_NOS

_AMOUNT_RE: Final = re.compile(r"^(\d{1,9})(?:\.(\d{1,6}))?$")


def parse_nos(text: object) -> int:
    """Parse a NOS amount such as ``"1.5"`` (or an ``int`` of whole NOS) into base units."""
    if isinstance(text, (bool, float)):
        raise InvalidAmount(
            f"amount {text!r} is a {type(text).__name__}; give NOS as a decimal string like '1.5'"
        )
    if isinstance(text, int):
        return check_amount(text * BASE_UNITS_PER_NOS)
    if not isinstance(text, str):
        raise InvalidAmount(f"amount {text!r} is not a number; give NOS like '1.5'")
    raw = text.strip().replace("_", "")
    if raw.startswith("-"):
        raise InvalidAmount(f"amount {text!r} is negative; amounts must be 0 or more")
    if raw.startswith("+"):
        raw = raw[1:]
    if "." in raw and len(raw.split(".", 1)[1]) > DECIMALS:
        raise InvalidAmount(f"amount {text!r} has more than {DECIMALS} decimals")
    match = _AMOUNT_RE.match(raw)
    if match is None:
        raise InvalidAmount(f"amount {text!r} is not a number; give NOS like '1.5'")
    whole, frac = match.group(1), match.group(2) or ""
    return check_amount(int(whole) * BASE_UNITS_PER_NOS + int(frac.ljust(DECIMALS, "0")))


def check_amount(base_units: int) -> int:
    """Return ``base_units`` if it is a valid amount (int, 0 ≤ x ≤ supply), else raise."""
    if isinstance(base_units, bool) or not isinstance(base_units, int):
        raise InvalidAmount(f"amount {base_units!r} must be an integer number of base units")
    if base_units < 0:
        raise InvalidAmount(f"amount {base_units} is negative; amounts must be 0 or more")
    if base_units > TOTAL_SUPPLY:
        raise InvalidAmount(
            f"amount {format_nos(base_units)} NOS exceeds the total supply of "
            f"{TOTAL_SUPPLY_NOS:,} NOS"
        )
    return base_units


def format_nos(base_units: int) -> str:
    """Format base units as an exact decimal NOS string, without trailing zeros."""
    sign = "-" if base_units < 0 else ""
    whole, frac = divmod(abs(base_units), BASE_UNITS_PER_NOS)
    if frac == 0:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{frac:0{DECIMALS}d}".rstrip("0")


def bps_of(amount: int, bps: int) -> int:
    """``amount × bps / 10_000``, rounded down (the remainder stays with the payer's side)."""
    if not 0 <= bps <= 10_000:
        raise InvalidAmount(f"basis points must be within 0..10000, got {bps}")
    return amount * bps // 10_000
