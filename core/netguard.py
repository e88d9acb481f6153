"""SSRF guard for URLs the service calls on a client's behalf (webhooks, ``audio_url``).

Only ``http``/``https`` URLs with a host are accepted; the host is resolved and every address it
resolves to must be public: private, loopback, link-local, multicast, reserved, unspecified and
shared (100.64/10) addresses are refused, IPv4 and IPv6 alike, IPv4-mapped/compatible IPv6
(``::ffff:127.0.0.1``) judged by their IPv4 address. ``allow_private=True``
(``MMD_WEBHOOK_ALLOW_PRIVATE``) lifts the address check (tests, trusted internal receivers).
The gateway checks at submission; the worker checks again right before each delivery (DNS
rebinding) and never follows redirects.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit, urlunsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class UnsafeURLError(ValueError):
    """The URL is not an http(s) URL to a public address."""


def is_public(addr: IPAddress) -> bool:
    """Whether ``addr`` is a globally routable unicast address."""
    if isinstance(addr, ipaddress.IPv6Address):
        mapped = addr.ipv4_mapped or (addr.sixtofour if addr.sixtofour else None)
        if mapped is None and addr.packed[:12] == bytes(12) and int(addr) > 1:
            mapped = ipaddress.IPv4Address(addr.packed[12:])  # deprecated IPv4-compatible ::a.b.c.d
        if mapped is not None:
            return is_public(mapped)
    return not (addr.is_private or addr.is_loopback or addr.is_link_local or addr.is_multicast
                or addr.is_reserved or addr.is_unspecified or not addr.is_global)


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to (literal IPs are returned as they are)."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeURLError(f"cannot resolve host {host!r}: {exc}") from exc
    return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]


@dataclass(frozen=True)
class Target:
    """Where to send a request so that it reaches the address that was checked: ``url`` with
    the host replaced by that IP, plus the ``Host`` header and TLS SNI name of the original."""

    url: str
    host_header: str | None = None
    sni_hostname: str | None = None


def _split(url: str, what: str) -> SplitResult:
    try:
        parts = urlsplit(url)
        _ = parts.port
    except ValueError as exc:
        raise UnsafeURLError(f"{what} {url!r} is not a valid URL: {exc}") from exc
    if parts.scheme not in ("http", "https"):
        raise UnsafeURLError(f"{what} must be an http:// or https:// URL, not {parts.scheme!r}")
    if not parts.hostname:
        raise UnsafeURLError(f"{what} {url!r} has no host")
    return parts


def _public_addresses(parts: SplitResult, what: str) -> list[IPAddress]:
    host = str(parts.hostname)
    addrs = resolve(host, parts.port or (443 if parts.scheme == "https" else 80))
    if not addrs:
        raise UnsafeURLError(f"{what}: host {host!r} resolves to no address")
    for addr in addrs:
        if not is_public(addr):
            raise UnsafeURLError(
                f"{what} host {host!r} resolves to {addr}, a private, loopback, link-local or "
                "otherwise non-public address; use a public receiver (or set "
                "MMD_WEBHOOK_ALLOW_PRIVATE=true for trusted internal targets)")
    return addrs


def check_url(url: str, *, allow_private: bool, what: str = "webhook_url") -> str:
    """Return ``url`` if it is safe to call, else raise :class:`UnsafeURLError` saying why."""
    parts = _split(url, what)
    if not allow_private:
        _public_addresses(parts, what)
    return url


def pin(url: str, *, allow_private: bool, what: str = "webhook_url") -> Target:
    """Check ``url`` and pin it to one checked address, so that the connection cannot go to
    another address than the one checked (DNS rebinding between check and connect)."""
    parts = _split(url, what)
    if allow_private:
        return Target(url)
    addr = _public_addresses(parts, what)[0]
    host = str(parts.hostname)
    try:
        ipaddress.ip_address(host)
        return Target(url)  # a literal address: nothing to rebind
    except ValueError:
        pass
    netloc = f"[{addr}]" if addr.version == 6 else str(addr)
    if parts.port is not None:
        netloc += f":{parts.port}"
    host_header = parts.netloc.rpartition("@")[2]
    return Target(urlunsplit(parts._replace(netloc=netloc)), host_header=host_header,
                  sni_hostname=host if parts.scheme == "https" else None)
