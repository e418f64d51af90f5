"""Which addresses a fetch may reach: public unicast only, checked after our own DNS resolution on every hop."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# (host, port) -> the addresses it resolves to, as strings. Tests inject their own.
Resolver = Callable[[str, int], list[str]]


class Refused(Exception):
    """A URL or an address that a fetch must not reach; the message says why."""


class Unresolved(Refused):
    """The host name has no address we could find."""


def system_resolver(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise Unresolved(f"cannot resolve {host!r} ({exc})") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def why_forbidden(ip: IPAddress) -> str | None:
    """The kind of non-public address ``ip`` is, or None when it is a public unicast address."""
    if isinstance(ip, ipaddress.IPv6Address):
        # An IPv6 address that carries an IPv4 one reaches that IPv4 host: judge it by that.
        inner = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if inner is not None:
            reason = why_forbidden(inner)
            return f"{reason} (inside {ip})" if reason else None
        if ip.is_site_local:
            return "site-local"
    for attribute, reason in (("is_unspecified", "unspecified"), ("is_loopback", "loopback"),
                              ("is_link_local", "link-local"), ("is_multicast", "multicast"),
                              ("is_private", "private"), ("is_reserved", "reserved")):
        if getattr(ip, attribute):
            return reason
    return None if ip.is_global else "non-public"


@dataclass(frozen=True, kw_only=True)
class AddressPolicy:
    """``allow_private`` is PIPELINE_FETCH_ALLOW_PRIVATE=1 (tests with a loopback server). ``also_allowed`` lets a
    test treat one loopback address as "the outside world" while every other private address stays refused."""

    allow_private: bool = False
    resolver: Resolver = system_resolver
    also_allowed: frozenset[str] = field(default_factory=frozenset)

    def address_for(self, host: str, port: int) -> str:
        """Resolve ``host`` once and return the address to connect to; refuse if any answer is not public."""
        if not host:
            raise Refused("the address has no host name")
        literal = host.strip("[]")
        try:
            answers = [literal] if _is_ip(literal) else self.resolver(literal, port)
        except Refused:
            raise
        except Exception as exc:  # an injected resolver's own failure
            raise Unresolved(f"cannot resolve {host!r} ({exc})") from None
        if not answers:
            raise Unresolved(f"{host!r} resolves to no address")
        checked = []
        for answer in answers:
            try:
                ip = ipaddress.ip_address(answer.split("%", 1)[0])
            except ValueError:
                raise Refused(f"{host!r} resolved to {answer!r}, which is not an IP address") from None
            reason = why_forbidden(ip)
            if reason and not self.allow_private and str(ip) not in self.also_allowed:
                # One bad answer refuses the host: a rebinding resolver may hand out a mix.
                what = f"{ip} is" if answers == [literal] else f"{host!r} resolves to {ip},"
                raise Refused(f"{what} a {reason} address; only addresses on the public internet are fetched")
            checked.append(str(ip))
        return checked[0]


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value.split("%", 1)[0])
    except ValueError:
        return False
    return True
