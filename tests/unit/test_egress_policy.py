"""The egress proxy's destination rules: only public addresses, the operator's exceptions."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nosgrid.core.markets import MarketParams
from nosgrid.node.egress.policy import METADATA_ADDRESSES, EgressPolicy, policy_from_env

REFUSED_NETWORKS = ["127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
                    "169.254.0.0/16", "100.64.0.0/10", "0.0.0.0/8", "224.0.0.0/4",
                    "240.0.0.0/4", "fc00::/7", "fe80::/10", "::1/128"]


@pytest.mark.parametrize("addr", ["127.0.0.1", "10.1.2.3", "172.20.0.1", "192.168.1.1",
                                  "169.254.169.254", "100.100.100.200", "::1", "fe80::1",
                                  "fd00:ec2::254", "::ffff:127.0.0.1", "::ffff:10.0.0.1",
                                  "0.0.0.0", "255.255.255.255", "224.0.0.1"])
def test_non_public_and_metadata_addresses_are_refused(addr: str) -> None:
    assert EgressPolicy().refusal(ip_address(addr), 80) is not None


def test_public_addresses_pass_and_the_node_itself_does_not() -> None:
    public = ip_address("93.184.216.34")
    assert EgressPolicy().refusal(public, 443) is None
    assert "own address" in (EgressPolicy(node_addresses=frozenset({public}))
                             .refusal(public, 443) or "")
    assert all(EgressPolicy().refusal(a, 80) for a in METADATA_ADDRESSES)


@given(st.sampled_from(REFUSED_NETWORKS), st.integers(0, 2**32 - 1), st.integers(1, 65535))
def test_every_address_of_a_refused_range_is_refused(net: str, offset: int, port: int) -> None:
    network = ip_network(net)
    addr = network[offset % network.num_addresses]
    assert isinstance(addr, IPv4Address | IPv6Address)
    assert EgressPolicy().refusal(addr, port) is not None


def test_the_allow_list_opens_exactly_what_it_names() -> None:
    policy = EgressPolicy.parse("127.0.0.1:8080, 10.0.0.0/8, [::1]:9000")
    assert policy.refusal(ip_address("127.0.0.1"), 8080) is None
    assert policy.refusal(ip_address("127.0.0.1"), 8081) is not None
    assert policy.refusal(ip_address("10.9.9.9"), 1) is None
    assert policy.refusal(ip_address("::1"), 9000) is None
    assert policy.refusal(ip_address("::1"), 9001) is not None
    assert policy.refusal(ip_address("169.254.169.254"), 80) is not None
    for bad in ("nonsense", "1.2.3.4:99999", "10.0.0.0/33"):
        with pytest.raises(ValueError, match="egress allow entry"):
            EgressPolicy.parse(bad)


def test_the_node_operator_can_turn_egress_off() -> None:
    assert policy_from_env({"NOSGRID_EGRESS": "off"}).enabled is False
    assert policy_from_env({}).enabled is True
    assert policy_from_env({"NOSGRID_EGRESS_ALLOW": "127.0.0.1:1"}).allow[0].port == 1


def test_markets_opt_in() -> None:
    closed = MarketParams(name="cpu", price_per_second=1)
    assert closed.network_problem("egress") is not None
    assert closed.network_problem("none") is None and closed.network_problem("job") is None
    assert MarketParams(name="open", price_per_second=1, egress=True).network_problem(
        "egress") is None
