"""Which destinations the egress proxy may connect to: public addresses only, by default.

Refused: every address that is not globally routable (loopback, RFC 1918 private,
carrier-grade NAT, link-local, multicast, reserved, unspecified, unique-local IPv6, and
IPv4 mapped into IPv6 the same way), the cloud metadata addresses, and the node's own
addresses; except the operator's allow list (``NOSGRID_EGRESS_ALLOW``: comma-separated
``ADDRESS``, ``CIDR``, ``ADDRESS:PORT`` or ``[IPv6]:PORT``). The check runs on the resolved
address the proxy then connects to, so a name that resolves to a private address (DNS
rebinding) is refused too.

>>> p = EgressPolicy.parse("127.0.0.1:8080")
>>> p.refusal(ip_address("127.0.0.1"), 8080) is None, p.refusal(ip_address("127.0.0.1"), 22)
(True, 'loopback address 127.0.0.1 is refused')
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from typing import Final

IPAddress = IPv4Address | IPv6Address

#: cloud instance metadata services (AWS, GCP, Azure, OpenStack, Alibaba, AWS ECS, Oracle)
METADATA_ADDRESSES: Final = frozenset(ip_address(a) for a in (
    "169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254", "192.0.0.192",
    "169.254.169.123",
))
_RULE_RE: Final = re.compile(
    r"^\[(?P<v6>[^\]]+)\](?::(?P<p6>\d+))?$|^(?P<addr>[^:]+)(?::(?P<port>\d+))?$")


@dataclass(frozen=True)
class AllowRule:
    """An operator's exception: a network, and a port (None: any port)."""

    network: str
    port: int | None = None

    def matches(self, addr: IPAddress, port: int) -> bool:
        net = ip_network(self.network, strict=False)
        return addr.version == net.version and addr in net and (
            self.port is None or self.port == port)


@dataclass(frozen=True)
class EgressPolicy:
    """The proxy's rules: what is refused, and the operator's allow list."""

    allow: tuple[AllowRule, ...] = ()
    node_addresses: frozenset[IPAddress] = field(default_factory=frozenset)
    enabled: bool = True

    @classmethod
    def parse(cls, allow: str, node_addresses: frozenset[IPAddress] = frozenset(),
              *, enabled: bool = True) -> EgressPolicy:
        """``allow`` as in ``NOSGRID_EGRESS_ALLOW``; ``ValueError`` names a bad entry."""
        rules: list[AllowRule] = []
        for raw in (part.strip() for part in allow.split(",")):
            if not raw:
                continue
            m = _RULE_RE.match(raw)
            if m is None:
                raise ValueError(f"egress allow entry {raw!r} is not ADDRESS[/BITS][:PORT]")
            net = m.group("v6") or m.group("addr")
            port = m.group("p6") or m.group("port")
            try:
                ip_network(net, strict=False)
            except ValueError as exc:
                raise ValueError(f"egress allow entry {raw!r}: {exc}") from exc
            if port is not None and not 0 < int(port) < 65536:
                raise ValueError(f"egress allow entry {raw!r}: bad port")
            rules.append(AllowRule(net, int(port) if port else None))
        return cls(tuple(rules), node_addresses, enabled)

    def refusal(self, addr: IPAddress, port: int) -> str | None:
        """Why the proxy refuses ``addr:port`` (None: allowed)."""
        if not 0 < port < 65536:
            return f"port {port} is not valid"
        if isinstance(addr, IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        if any(rule.matches(addr, port) for rule in self.allow):
            return None
        if addr in METADATA_ADDRESSES:
            return f"cloud metadata address {addr} is refused"
        if addr in self.node_addresses:
            return f"the node's own address {addr} is refused"
        if addr.is_loopback:
            return f"loopback address {addr} is refused"
        if addr.is_link_local:
            return f"link-local address {addr} is refused"
        if addr.is_private:
            return f"private address {addr} is refused"
        if not addr.is_global or addr.is_multicast:
            return f"non-public address {addr} is refused"
        return None


def node_addresses() -> frozenset[IPAddress]:
    """This machine's addresses (``ip -j addr``, and what its hostname resolves to)."""
    found: set[IPAddress] = set()
    ip = shutil.which("ip")
    if ip is not None:
        try:
            out = subprocess.run([ip, "-j", "addr", "show"], capture_output=True, timeout=5,
                                 check=False).stdout
            for link in json.loads(out or b"[]"):
                for info in link.get("addr_info", []):
                    try:
                        found.add(ip_address(str(info.get("local", "")).split("%")[0]))
                    except ValueError:
                        continue
        except (OSError, ValueError, subprocess.TimeoutExpired):
            pass
    try:
        for *_, sockaddr in socket.getaddrinfo(socket.gethostname(), None):
            found.add(ip_address(str(sockaddr[0]).split("%")[0]))
    except (OSError, ValueError):
        pass
    return frozenset(found)


def policy_from_env(environ: dict[str, str] | None = None) -> EgressPolicy:
    """The node's policy: ``NOSGRID_EGRESS`` (``on`` by default; ``off`` refuses every egress
    job) and ``NOSGRID_EGRESS_ALLOW`` (the operator's exceptions)."""
    env = os.environ if environ is None else environ
    enabled = env.get("NOSGRID_EGRESS", "on").strip().lower() not in ("off", "0", "no", "false")
    return EgressPolicy.parse(env.get("NOSGRID_EGRESS_ALLOW", ""), node_addresses(),
                              enabled=enabled)
