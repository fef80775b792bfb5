"""Site facts: the login node's address that compute nodes reach (`ip -o`, routes,
the compute nodes' names). Standard library only: it runs on the site with the module."""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable, Sequence

# ------------------------------------------------------------------ addresses


def parse_ip_addr(text: str) -> list[tuple[str, ipaddress.IPv4Interface]]:
    """`ip -4 -o addr show` -> [(interface, address/prefix)], loopback left out."""
    found = []
    for line in text.splitlines():
        match = re.match(r"^\d+:\s+(\S+)\s+inet\s+(\S+)", line)
        if not match:
            continue
        interface = ipaddress.IPv4Interface(match.group(2))
        if not interface.ip.is_loopback:
            found.append((match.group(1).split("@")[0], interface))
    return found


def parse_route_src(text: str) -> str | None:
    """The `src` of `ip route get <addr>` output."""
    match = re.search(r"\bsrc\s+(\d+\.\d+\.\d+\.\d+)", text)
    return match.group(1) if match else None


def resolve_ipv4(names: Iterable[str]) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses of node addresses that may be host names (unresolvable ones skipped)."""
    addresses: list[ipaddress.IPv4Address] = []
    for name in names:
        try:
            found = [ipaddress.IPv4Address(name)]
        except ValueError:
            try:
                infos = socket.getaddrinfo(name, None, socket.AF_INET, socket.SOCK_STREAM)
            except OSError:
                continue
            found = [ipaddress.IPv4Address(info[4][0]) for info in infos]
        addresses.extend(address for address in found if address not in addresses)
    return addresses


def pick_internal_address(
    interfaces: Sequence[tuple[str, ipaddress.IPv4Interface]],
    computes: Sequence[ipaddress.IPv4Address],
    route_src: Callable[[ipaddress.IPv4Address], str | None],
) -> tuple[str | None, str | None, str | None]:
    """(address, method, interface): the local address that compute nodes reach.

    1. `subnet`: the local interface whose network holds the most compute nodes;
    2. `route`: the source address of the route to a compute node;
    3. `primary`: the first global address of the login node.
    """
    by_interface: dict[tuple[str, str], int] = {}
    for name, interface in interfaces:
        count = sum(1 for address in computes if address in interface.network)
        if count:
            by_interface[(name, str(interface.ip))] = count
    if by_interface:
        # max() keeps the first of equals: `ip addr` order breaks ties.
        (name, address), _count = max(by_interface.items(), key=lambda item: item[1])
        return address, "subnet", name
    for compute in computes:
        src = route_src(compute)
        if src and not ipaddress.IPv4Address(src).is_loopback:
            return src, "route", _interface_of(src, interfaces)
    if interfaces:
        name, interface = interfaces[0]
        return str(interface.ip), "primary", name
    return None, None, None


def _interface_of(
    address: str, interfaces: Sequence[tuple[str, ipaddress.IPv4Interface]]
) -> str | None:
    for name, interface in interfaces:
        if str(interface.ip) == address:
            return name
    return None


def udp_route_src(address: ipaddress.IPv4Address) -> str | None:
    """Source address the kernel would use towards `address` (a UDP connect sends nothing)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect((str(address), 9))
            return str(probe.getsockname()[0])
    except OSError:
        return None
