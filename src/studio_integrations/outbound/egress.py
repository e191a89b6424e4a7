"""The egress policy: where this service may send a request (provider APIs, webhook receivers).

Two steps, both on every outbound request:

- ``check_target(url, allow_loopback=…)`` looks at the URL alone: ``https`` (plain ``http``
  only when loopback targets are allowed, for fakes and development), no userinfo, a
  syntactically valid host (a DNS name or an IP literal; a name whose last label is numeric
  is an obfuscated IPv4 address and refused), and a port that is neither 0 nor one the
  WHATWG Fetch standard blocks (SMTP, IRC, …).
- ``resolve_target(target, allow_loopback=…)`` resolves the host *now* (at call time, every
  time, so DNS rebinding cannot slip a private address in after an earlier check) and refuses
  unless every address it resolves to is public. Refused: private, loopback, link-local,
  multicast, reserved, unspecified, shared (CGNAT, 100.64/10), benchmarking and other
  special-purpose ranges, IPv6 forms that embed one of those IPv4 addresses (IPv4-mapped,
  IPv4-compatible, NAT64, 6to4), and cloud metadata endpoints. ``allow_loopback`` (the
  ``STUDIO_ALLOW_LOOPBACK_TARGETS`` setting) admits loopback addresses (127/8, ::1) and
  nothing else: metadata endpoints, private networks and the unspecified address stay
  refused even then, since the setting exists for fakes on loopback and a metadata endpoint
  is never a legitimate target.

The connection then goes to the address that was checked, not to a second resolution: the
request URL carries the IP literal, the ``Host`` header carries the original authority, and
for HTTPS the ``sni_hostname`` request extension makes httpcore send the original name as
SNI and verify the certificate against it (httpx "Extensions" docs, ``sni_hostname``;
httpcore ``AsyncHTTPConnection._connect`` passes it as ``server_hostname`` to
``start_tls``). This works with the one shared ``httpx.AsyncClient`` unchanged.

httpcore pools connections by origin, which is now ``(scheme, IP, port)``: a pooled
connection whose TLS session was verified for one name could be reused for another name at
the same IP without verifying the certificate against the second name. Pinned requests
therefore send ``Connection: close`` so their connections never return to the pool. The cost
is one handshake per request, which is what health probes (60 s apart, beyond the pool's
keep-alive expiry) and webhook deliveries pay anyway. This relies on HTTP/1.1 (the shared
client does not enable HTTP/2) and on direct egress: an HTTP proxy from the environment
would be sent the IP and verify TLS against it, so outbound traffic must not be proxied.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Final

import httpx

from studio_integrations.core.enums import FailureCategory
from studio_integrations.core.errors import StudioError, UserInputError
from studio_integrations.telemetry.tracing import inject_traceparent

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# Resolves (host, port) to IP address strings, as getaddrinfo would; injectable for tests.
Resolver = Callable[[str, int], Awaitable[list[str]]]

DEFAULT_PORTS: Final = {"https": 443, "http": 80}

# Instance metadata services: AWS, Azure, GCP, OpenStack (169.254.169.254), AWS over IPv6
# (fd00:ec2::254), ECS task metadata (169.254.170.2), Alibaba (100.100.100.200), Oracle
# (192.0.0.192). All also fall in refused ranges; naming them gives a clearer reason and keeps
# them refused even where a range might one day be admitted.
METADATA_ADDRESSES: Final = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",
        "169.254.170.2",
        "100.100.100.200",
        "192.0.0.192",
        "fd00:ec2::254",
    )
)

# Ranges refused beyond what ``ipaddress`` flags as private/reserved/…, or where the flags of
# older Python versions are incomplete (3.11 calls 192.0.0.192 global).
_SPECIAL_NETWORKS: Final[tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str], ...]] = (
    (ipaddress.ip_network("0.0.0.0/8"), "a 'this network' address"),
    (ipaddress.ip_network("100.64.0.0/10"), "a shared (CGNAT) address"),
    (ipaddress.ip_network("192.0.0.0/24"), "an IETF protocol assignment address"),
    (ipaddress.ip_network("198.18.0.0/15"), "a benchmarking address"),
    (ipaddress.ip_network("64:ff9b:1::/48"), "a local-use NAT64 address"),
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")

# WHATWG Fetch "bad ports": ports of protocols that must never receive an HTTP request.
BAD_PORTS: Final = frozenset(
    {
        1, 7, 9, 11, 13, 15, 17, 19, 20, 21, 22, 23, 25, 37, 42, 43, 53, 69, 77, 79, 87, 95,
        101, 102, 103, 104, 109, 110, 111, 113, 115, 117, 119, 123, 135, 137, 139, 143, 161,
        179, 389, 427, 465, 512, 513, 514, 515, 526, 530, 531, 532, 540, 548, 554, 556, 563,
        587, 601, 636, 989, 990, 993, 995, 1719, 1720, 1723, 2049, 3659, 4045, 4190, 5060,
        5061, 6000, 6566, 6665, 6666, 6667, 6668, 6669, 6679, 6697, 10080,
    }
)  # fmt: skip

_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")
_NUMERIC_LABEL = re.compile(r"^(?:0x[0-9a-f]*|[0-9]+)$")
MAX_HOST_LENGTH = 253


class EgressRefused(UserInputError):
    """The policy refuses the target. ``reason`` is one of ``scheme``, ``userinfo``, ``host``,
    ``port``, ``address``; the message names the host and why, never the full URL (webhook
    URLs may carry a secret in their path or query)."""

    code = "EGRESS_REFUSED"
    category = FailureCategory.CONFIGURATION

    def __init__(self, message: str, *, reason: str, field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.reason = reason


class EgressUnresolvable(StudioError):
    """The host did not resolve (or resolution failed): a network problem, often transient."""

    code = "EGRESS_UNRESOLVABLE"
    category = FailureCategory.NETWORK


@dataclass(frozen=True, slots=True)
class EgressTarget:
    """A URL that passed ``check_target``. ``host`` is the ASCII (IDNA) name or the IP literal
    without brackets; ``port`` is explicit or the scheme's default."""

    url: httpx.URL
    scheme: str
    host: str
    port: int
    ip_literal: bool

    @property
    def authority(self) -> str:
        """The ``Host`` header value: the host, bracketed if IPv6, with a non-default port."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class ResolvedTarget:
    """A checked target and the checked address the request must go to (``address``; all the
    addresses the name resolved to, each checked, are in ``addresses``)."""

    target: EgressTarget
    address: str
    addresses: tuple[str, ...]

    @property
    def url(self) -> httpx.URL:
        """The request URL with the checked IP in place of the name."""
        return self.target.url.copy_with(host=self.address)

    @property
    def headers(self) -> dict[str, str]:
        """Headers a pinned request needs: the original authority and no connection reuse."""
        return {"Host": self.target.authority, "Connection": "close"}

    @property
    def extensions(self) -> dict[str, str]:
        """httpcore's ``sni_hostname``: SNI and certificate checks against the original name."""
        if self.target.scheme == "https" and not self.target.ip_literal:
            return {"sni_hostname": self.target.host}
        return {}

    def build_request(
        self,
        http: httpx.AsyncClient,
        method: str,
        *,
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
        timeout: float,
    ) -> httpx.Request:
        """A request on ``http`` that connects to ``address`` and speaks to the original name."""
        merged = dict(headers or {})
        merged.update(self.headers)
        inject_traceparent(merged)  # W3C trace context of the current span, to every target
        return http.build_request(
            method,
            self.url,
            headers=merged,
            content=content,
            timeout=httpx.Timeout(timeout),
            extensions=self.extensions,
        )


def check_target(url: str | httpx.URL, *, allow_loopback: bool) -> EgressTarget:
    """Check a URL against the policy without the network (its shape; an IP literal's address;
    ``localhost``); raise ``EgressRefused``."""
    try:
        parsed = url if isinstance(url, httpx.URL) else httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        raise EgressRefused("the target is not a valid URL", reason="host") from None
    scheme = parsed.scheme
    allowed = ("https", "http") if allow_loopback else ("https",)
    if scheme not in allowed:
        need = "http or https" if allow_loopback else "https"
        shown = scheme or "none"
        raise EgressRefused(f"the target must use {need} (scheme: {shown})", reason="scheme")
    if parsed.userinfo:
        raise EgressRefused(
            "the target URL must not carry credentials (user:password@)", reason="userinfo"
        )
    raw_host = parsed.raw_host.decode("ascii", "replace")
    host, ip_literal = _check_host(raw_host)
    # What can be refused without the network is refused here, so a form can say so at once.
    if ip_literal:
        problem = address_problem(ipaddress.ip_address(host), allow_loopback=allow_loopback)
        if problem is not None:
            raise EgressRefused(f"host {host!r} is {problem}", reason="address")
    elif not allow_loopback and (host == "localhost" or host.endswith(".localhost")):
        raise EgressRefused(f"host {host!r} is a loopback name (RFC 6761)", reason="address")
    port = parsed.port if parsed.port is not None else DEFAULT_PORTS[scheme]
    if not 0 < port <= 65535 or port in BAD_PORTS:
        raise EgressRefused(f"port {port} is not allowed for outbound requests", reason="port")
    return EgressTarget(
        url=parsed.copy_with(fragment=None),
        scheme=scheme,
        host=host,
        port=port,
        ip_literal=ip_literal,
    )


async def resolve_target(
    target: EgressTarget, *, allow_loopback: bool, resolver: Resolver | None = None
) -> ResolvedTarget:
    """Resolve ``target``'s host now and check every address; raise ``EgressRefused`` (an
    address is refused) or ``EgressUnresolvable`` (no address)."""
    if target.ip_literal:
        addresses = [target.host]
    else:
        addresses = await (resolver or system_resolver)(target.host, target.port)
        if not addresses:
            raise EgressUnresolvable(f"host {target.host!r} did not resolve to any address")
    unique = tuple(dict.fromkeys(addresses))
    for address in unique:
        problem = address_problem(ipaddress.ip_address(address), allow_loopback=allow_loopback)
        if problem is not None:
            what = "is" if target.ip_literal else f"resolves to {address}, which is"
            raise EgressRefused(f"host {target.host!r} {what} {problem}", reason="address")
    return ResolvedTarget(target=target, address=unique[0], addresses=unique)


async def system_resolver(host: str, port: int) -> list[str]:
    """The system's resolver (``getaddrinfo``), in the running loop's executor."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
    except (socket.gaierror, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, socket.gaierror) else "invalid name"
        raise EgressUnresolvable(f"host {host!r} could not be resolved: {reason}") from None
    # The scope id of a link-local IPv6 answer ("fe80::1%eth0") is dropped: refused anyway.
    return [str(info[4][0]).split("%", 1)[0] for info in infos]


def address_problem(address: IPAddress, *, allow_loopback: bool) -> str | None:
    """Why ``address`` may not be a target, or None when it may."""
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        problem = address_problem(embedded, allow_loopback=allow_loopback)
        return None if problem is None else f"an IPv6 form of {embedded}, {problem}"
    if address.is_unspecified:
        return "the unspecified address"
    if address.is_loopback:
        return None if allow_loopback else "a loopback address"
    for network, description in _SPECIAL_NETWORKS:
        if address.version == network.version and address in network:
            return description
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_reserved:
        return "a reserved address"
    if address.is_private:
        return "a private or special-purpose address"
    if not address.is_global:
        return "not a public address"
    return None


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, compatible, NAT64, 6to4)."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64 or (address in _IPV4_COMPATIBLE and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _check_host(raw_host: str) -> tuple[str, bool]:
    if not raw_host:
        raise EgressRefused("the target URL has no host", reason="host")
    try:
        literal = ipaddress.ip_address(raw_host)
    except ValueError:
        literal = None
    if isinstance(literal, ipaddress.IPv6Address) and literal.scope_id:
        raise EgressRefused("IPv6 zone identifiers are not allowed", reason="host")
    if literal is not None:
        return str(literal), True
    host = raw_host.lower().removesuffix(".")
    labels = host.split(".")
    if len(host) > MAX_HOST_LENGTH or not all(_LABEL.match(label) for label in labels):
        raise EgressRefused("the target host is not a valid DNS name", reason="host")
    if _NUMERIC_LABEL.match(labels[-1]):
        raise EgressRefused(
            f"host {host!r} ends in a number: write an IP address in its usual form",
            reason="host",
        )
    return host, False


class RedactQueryFilter(logging.Filter):
    """Masks query values in the URLs httpx logs (``HTTP Request: GET <url> …``): some
    providers take their API key as a query parameter."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(isinstance(a, httpx.URL) for a in record.args):
            record.args = tuple(
                _redacted_url(a) if isinstance(a, httpx.URL) else a for a in record.args
            )
        return True


def _redacted_url(url: httpx.URL) -> httpx.URL:
    if not url.query:
        return url
    return url.copy_with(params={key: "REDACTED" for key in url.params})


def install_log_redaction() -> None:
    """Attach ``RedactQueryFilter`` to the ``httpx`` logger once (idempotent)."""
    logger = logging.getLogger("httpx")
    if not any(isinstance(f, RedactQueryFilter) for f in logger.filters):
        logger.addFilter(RedactQueryFilter())
