"""Which hosts `https://` model data may come from: public addresses, plus what the operator allows.

A ModelDataUrl is chosen by whoever may call CreateModel, and the server fetches it from inside
its own network. Left unchecked that makes the server a proxy into that network: the cloud
metadata service (169.254.169.254, fd00:ec2::254), the loopback interface, private ranges. So
by default every address that is not plainly public is refused — loopback, private, link-local,
unspecified, multicast, reserved, shared (100.64/10), the known metadata addresses, and IPv6
forms that embed one of those (IPv4-mapped, 6to4, NAT64) — unless `--allow-model-host` names
the host or a CIDR holding the address.

A name is resolved once, every address it resolves to is checked, and the caller connects only
to the checked addresses (`Resolved.addresses`), so a DNS answer that changes between the
check and the connection (DNS rebinding) cannot slip a private address through.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack
        "169.254.170.2",  # ECS task credentials
        "fd00:ec2::254",  # AWS over IPv6
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

Resolver = Callable[[str, int], list[tuple[socket.AddressFamily, IPAddress]]]


def why_not_public(address: IPAddress) -> str | None:
    """Why model data may not come from `address` by default, or None when it is public."""
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    mapped = _embedded_ipv4(address)
    if mapped is not None:  # IPv4-mapped or NAT64: the IPv4 address is what is reached
        inner = why_not_public(mapped)
        return None if inner is None else f"{inner} (embedded in the IPv6 address)"
    if isinstance(address, ipaddress.IPv6Address) and address.sixtofour is not None:
        inner = why_not_public(address.sixtofour)
        if inner is not None:
            return f"{inner} (embedded in the IPv6 address)"
    checks = (
        (address.is_loopback, "a loopback address"),
        (address.is_link_local, "a link-local address"),
        (address.is_unspecified, "the unspecified address"),
        (address.is_multicast, "a multicast address"),
        (address.is_private, "a private address"),
        (address.is_reserved, "a reserved address"),
        (not address.is_global, "not a public address"),
    )
    for failed, reason in checks:
        if failed:
            return reason
    return None


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv4-mapped (::ffff:a.b.c.d) or NAT64 (64:ff9b::/96) address reaches."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def system_resolver(host: str, port: int) -> list[tuple[socket.AddressFamily, IPAddress]]:
    """Every TCP address `host` resolves to, in the system resolver's order, without repeats."""
    found: list[tuple[socket.AddressFamily, IPAddress]] = []
    for family, _type, _proto, _name, sockaddr in socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    ):
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if (family, address) not in found:
            found.append((family, address))
    return found


class HostRefused(Exception):
    """The host's address is not one model data may come from; the message says why."""


@dataclass(frozen=True)
class Resolved:
    host: str
    port: int
    addresses: tuple[tuple[socket.AddressFamily, IPAddress], ...]  # checked: connect to these


class HostPolicy:
    """Public addresses, plus the hostnames and CIDRs of `--allow-model-host`."""

    def __init__(self, allowed: Iterable[str] = (), resolver: Resolver = system_resolver) -> None:
        self._names: set[str] = set()
        self._networks: list[IPNetwork] = []
        self._resolver = resolver
        for entry in allowed:
            text = entry.strip()
            if not text:
                continue
            try:
                self._networks.append(ipaddress.ip_network(text.strip("[]"), strict=False))
            except ValueError:
                self._names.add(_normal_name(text))

    def _allowed(self, host: str, address: IPAddress) -> bool:
        if _normal_name(host) in self._names:
            return True
        forms = [address]
        mapped = _embedded_ipv4(address)
        if mapped is not None:
            forms.append(mapped)
        return any(a.version == n.version and a in n for a in forms for n in self._networks)

    def resolve(self, host: str, port: int) -> Resolved:
        """Resolve `host` once and check every address; HostRefused or OSError (no such host)."""
        try:
            literal: IPAddress | None = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            literal = None
        if literal is not None:
            family = socket.AF_INET6 if literal.version == 6 else socket.AF_INET
            addresses = [(family, literal)]
        else:
            addresses = self._resolver(host, port)
            if not addresses:
                raise OSError(f"{host} has no IPv4 or IPv6 address")
        for _family, address in addresses:
            reason = why_not_public(address)
            if reason is not None and not self._allowed(host, address):
                bare = host.strip("[]")
                shown = bare if literal is not None else f"{host} resolves to {address}"
                raise HostRefused(
                    f"{shown}, {reason}; model data may only come from public addresses "
                    f"unless the server is started with --allow-model-host {host.strip('[]')}"
                )
        return Resolved(host, port, tuple(addresses))


def _normal_name(name: str) -> str:
    return name.strip().strip("[]").rstrip(".").lower()
