"""NOS amounts: strict parsing and exact formatting."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nosgrid.core.errors import InvalidAmount
from nosgrid.core.money import TOTAL_SUPPLY, bps_of, check_amount, format_nos, parse_nos


@pytest.mark.parametrize(
    ("text", "base"),
    [("1.5", 1_500_000), ("0", 0), ("0.000001", 1), ("100000000", TOTAL_SUPPLY),
     (" 2 ", 2_000_000), ("1_000", 1_000_000_000), (3, 3_000_000), ("+1", 1_000_000)],
)
def test_parse(text: object, base: int) -> None:
    assert parse_nos(text) == base


@pytest.mark.parametrize(
    ("text", "why"),
    [(1.5, "float"), ("1.0000001", "more than 6 decimals"), ("-1", "negative"),
     ("abc", "not a number"), ("", "not a number"), ("1e5", "not a number"),
     ("100000000.000001", "exceeds the total supply"), (True, "bool"), (None, "not a number"),
     ("1.", "not a number"), (".5", "not a number"), ("NaN", "not a number")],
)
def test_parse_rejects(text: object, why: str) -> None:
    with pytest.raises(InvalidAmount, match=why):
        parse_nos(text)


@given(st.integers(min_value=0, max_value=TOTAL_SUPPLY))
def test_format_then_parse_is_exact(base: int) -> None:
    assert parse_nos(format_nos(base)) == base


def test_format() -> None:
    assert format_nos(1_500_000) == "1.5"
    assert format_nos(1) == "0.000001"
    assert format_nos(-2_000_000) == "-2"


def test_check_amount_and_bps() -> None:
    with pytest.raises(InvalidAmount):
        check_amount(-1)
    with pytest.raises(InvalidAmount):
        check_amount(TOTAL_SUPPLY + 1)
    assert bps_of(10_000, 250) == 250
    assert bps_of(3, 5_000) == 1
    with pytest.raises(InvalidAmount):
        bps_of(1, 10_001)
