"""The client address of a request, read through a known number of proxies.

Each reverse proxy appends to ``X-Forwarded-For`` the address that it received
the request from. With ``trusted_hops`` proxies in front of the app, the last
``trusted_hops`` entries were written by those proxies and everything to their
left was sent by the client, so the client address is the entry
``trusted_hops`` positions from the right. With no proxy the header is only
client input and is ignored.

Addresses are normalized so that one client has one key: IPv6 in compressed
lower-case form without a zone, and IPv4-mapped IPv6 (``::ffff:1.2.3.4``) as
IPv4.

One IPv6 host is often given a whole /64 prefix and could rotate through it
for fresh per-client budgets, so :func:`client_key` keys IPv6 clients by
their prefix (``client_ipv6_prefix``, 64 bits by default), except where an
IPv4 address is embedded in one.
"""

from __future__ import annotations

import ipaddress
import logging

__all__ = [
    "UNKNOWN_CLIENT",
    "client_address",
    "client_key",
    "forwarded_entries",
    "normalize_address",
]

logger = logging.getLogger(__name__)

# Key of a request whose socket peer is unknown.
UNKNOWN_CLIENT = "unknown"

# Fallback kinds already logged. Each is logged once per process because a
# misconfigured proxy chain would otherwise log on every request.
_logged_fallbacks: set[str] = set()
# IPv6 prefixes whose last 32 bits are a client's IPv4 address: the NAT64
# well-known prefix (RFC 6052), SIIT's translated form (RFC 2765) and the
# deprecated IPv4-compatible form (RFC 4291). A /64 key would put every IPv4
# client behind them under one key.
_IPV4_EMBEDDING_PREFIXES = (
    ipaddress.IPv6Network("64:ff9b::/96"),
    ipaddress.IPv6Network("::ffff:0:0:0/96"),
    ipaddress.IPv6Network("::/96"),
)
# Characters of a header entry that a log line repeats.
_MAX_LOGGED_CHARS = 80


def client_address(
    peer: str | None, forwarded_for: list[str] | str | None, trusted_hops: int
) -> str:
    """Return the normalized address of the client that sent a request.

    ``peer`` is the socket's remote address and ``forwarded_for`` contains the
    ``X-Forwarded-For`` header lines in the order they were received. With
    ``trusted_hops == 0`` the header is ignored. Otherwise the entry
    ``trusted_hops`` positions from the right is used, and the peer is used in
    its place when the header has fewer entries or that entry is not an IP
    address. The peer is the one value a client cannot choose, so a short or
    malformed header never gives a client a key of its choice.

    Raises:
        ValueError: if ``trusted_hops`` is negative.
    """
    if trusted_hops < 0:
        raise ValueError(f"invalid trusted_hops={trusted_hops!r}: expected >= 0")
    peer_key = _peer_key(peer)
    if trusted_hops == 0:
        return peer_key
    entries = forwarded_entries(forwarded_for)
    if len(entries) < trusted_hops:
        _log_fallback_once(
            "too_few_entries",
            "X-Forwarded-For has %d entries, fewer than trusted_hops=%d, "
            "so the peer address %s is used",
            len(entries),
            trusted_hops,
            peer_key,
        )
        return peer_key
    chosen = entries[-trusted_hops]
    address = normalize_address(chosen)
    if address is None:
        _log_fallback_once(
            "invalid_entry",
            "X-Forwarded-For entry %r is not an IP address, so the peer address %s "
            "is used",
            chosen[:_MAX_LOGGED_CHARS],
            peer_key,
        )
        return peer_key
    return address


def client_key(address: str, ipv6_prefix: int) -> str:
    """Return the rate-limit key of a normalized client ``address``.

    An IPv6 address becomes its network of ``ipv6_prefix`` bits, such as
    ``2001:db8:1:2::/64``. An address that embeds an IPv4 one (NAT64 and
    SIIT translation) is keyed by that IPv4 address, and loopback stays as
    is. Any other key is returned as is.
    """
    if ":" not in address or ipv6_prefix >= 128:
        return address
    try:
        ip = ipaddress.IPv6Address(address)
    except ValueError:
        return address
    if ip.is_loopback or ip.is_unspecified:
        return address
    if any(ip in prefix for prefix in _IPV4_EMBEDDING_PREFIXES):
        return str(ipaddress.IPv4Address(int(ip) & 0xFFFF_FFFF))
    return str(ipaddress.IPv6Network((ip, ipv6_prefix), strict=False))


def forwarded_entries(forwarded_for: list[str] | str | None) -> list[str]:
    """Split ``X-Forwarded-For`` header lines into stripped, non-empty entries."""
    if forwarded_for is None:
        return []
    lines = [forwarded_for] if isinstance(forwarded_for, str) else forwarded_for
    entries: list[str] = []
    for line in lines:
        entries.extend(part.strip() for part in line.split(","))
    return [entry for entry in entries if entry]


def normalize_address(text: str) -> str | None:
    """Return ``text`` as a normalized IP address, or None if it is not one.

    Accepts ``1.2.3.4``, ``1.2.3.4:567``, ``::1``, ``[::1]`` and ``[::1]:80``.
    """
    host = _strip_port(text.strip())
    if host is None:
        return None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        # Rebuilding from the integer drops a zone such as ``%eth0``.
        return str(ipaddress.IPv6Address(int(address)))
    return str(address)


def _strip_port(text: str) -> str | None:
    """Return the host part of ``text``, or None if its port part is malformed."""
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        # Brackets enclose IPv6 only, and every IPv6 address contains a colon.
        if not bracket or ":" not in host or (rest and not _is_port_suffix(rest)):
            return None
        return host
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host if _is_port(port) else None
    # No colon is bare IPv4, and two or more are bare IPv6.
    return text


def _is_port_suffix(text: str) -> bool:
    return text.startswith(":") and _is_port(text[1:])


def _is_port(text: str) -> bool:
    # str.isdigit alone also accepts non-ASCII digits such as "²".
    return text.isascii() and text.isdigit()


def _peer_key(peer: str | None) -> str:
    if not peer:
        return UNKNOWN_CLIENT
    # A peer that is not an IP address, such as a Unix socket path, is the key as is.
    return normalize_address(peer) or peer


def _log_fallback_once(kind: str, message: str, *args: object) -> None:
    if kind in _logged_fallbacks:
        return
    _logged_fallbacks.add(kind)
    logger.warning(message + " (logged once per process)", *args)
