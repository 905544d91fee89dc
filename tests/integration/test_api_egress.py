"""Egress is opt-in per market: a job asking for it is refused elsewhere, changing nothing."""

from __future__ import annotations

import json

import pytest
from api_fixtures import BUSYBOX_SPEC, Market

from nosgrid.core.errors import InvalidInput

EGRESS_SPEC = {**BUSYBOX_SPEC, "meta": {"nosgrid": {"network": "egress"}}}


async def test_an_egress_job_goes_only_to_a_market_that_allows_egress(market: Market) -> None:
    m = market
    await m.alice.faucet("10")
    before = (await m.alice.balance()).balance
    with pytest.raises(InvalidInput, match="does not allow egress"):
        await m.alice.post_job(spec=EGRESS_SPEC, market="cpu", timeout=60)
    assert (await m.alice.balance()).balance == before
    assert (await m.alice.jobs()).jobs == []

    opened = await m.admin.create_market({"name": "open", "price_per_second": 1000,
                                          "egress": True})
    assert opened.egress is True
    assert (await m.alice.market("open")).egress is True
    job = await m.alice.post_job(spec=EGRESS_SPEC, market="open", timeout=60)
    assert job.market == "open"
    await m.node.register_node({"cpu_cores": 2, "memory_mb": 4096}, ["open"])
    polled = await m.node.poll(wait=0)
    assert polled.job is not None and polled.spec is not None
    assert json.loads(polled.spec)["meta"]["nosgrid"]["network"] == "egress"
