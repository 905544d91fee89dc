"""Which market a post goes to (core.jobs.terms.requested_market): pure, no coordinator."""

from __future__ import annotations

import pytest

from nosgrid.core.errors import InvalidInput
from nosgrid.core.jobs.load import parse_job_definition
from nosgrid.core.jobs.spec import JobDefinition
from nosgrid.core.jobs.terms import MARKET_CHOSEN_BY, MarketChoice, requested_market

PLAIN = parse_job_definition({"version": "0.1", "type": "container", "ops": []})
NAMED = parse_job_definition({"version": "0.1", "type": "container", "ops": [],
                              "meta": {"nosgrid": {"market": "gpu"}}})


@pytest.mark.parametrize(("defn", "market", "default", "markets", "expected"), [
    (NAMED, "cpu", "big", ["cpu", "gpu"], MarketChoice("cpu", "request")),
    (NAMED, None, "big", ["cpu", "gpu"], MarketChoice("gpu", "definition")),
    (PLAIN, None, "big", ["cpu", "gpu"], MarketChoice("big", "default")),  # checked later
    (PLAIN, None, None, ["cpu"], MarketChoice("cpu", "only")),
    (PLAIN, "", "", ["cpu"], MarketChoice("cpu", "only")),  # empty is no name
], ids=["request", "definition", "default", "only", "empty-names"])
def test_request_then_definition_then_default_then_the_only_market(
        defn: JobDefinition, market: str | None, default: str | None, markets: list[str],
        expected: MarketChoice) -> None:
    assert requested_market(defn, market, default=default, markets=markets) == expected


def test_the_reasons_read_as_the_cli_prints_them() -> None:
    assert MarketChoice("cpu", "definition").why == "named by the definition"
    assert MarketChoice("cpu", "default").why == "the coordinator's default"
    assert MarketChoice("cpu", "only").why == "the only market"
    assert set(MARKET_CHOSEN_BY) == {"request", "definition", "default", "only"}


def test_several_markets_and_no_choice_is_a_clear_error_listing_them() -> None:
    with pytest.raises(InvalidInput) as err:
        requested_market(PLAIN, None, markets=["gpu", "cpu", "big"])
    assert "(big, cpu, gpu)" in err.value.message and "--market" in err.value.message
    assert err.value.details == {"field": "market", "markets": ["big", "cpu", "gpu"]}
    with pytest.raises(InvalidInput, match="no market to post in yet"):
        requested_market(PLAIN, None, markets=[])
