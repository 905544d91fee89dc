"""Opt-in egress for jobs: an HTTP(S) proxy the node runs, reachable only from inside the
job's pod, that refuses loopback, private, link-local, metadata and the node's own
addresses (except what the operator allows). See ``docs/isolation.md``."""

from nosgrid.node.egress.policy import EgressPolicy, policy_from_env
from nosgrid.node.egress.proxy import PROXY_PORT, EgressProxy, proxy_env

__all__ = ["PROXY_PORT", "EgressPolicy", "EgressProxy", "policy_from_env", "proxy_env"]
