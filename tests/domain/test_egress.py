"""The egress policy: which URLs and addresses outbound requests may go to, and that the
connection goes to the address that was checked."""

from __future__ import annotations

import ipaddress
import logging
import ssl
from pathlib import Path

import httpx
import pytest

from studio_integrations.core.enums import FailureCategory
from studio_integrations.outbound.egress import (
    EgressRefused,
    EgressUnresolvable,
    address_problem,
    check_target,
    install_log_redaction,
    resolve_target,
)
from tests.domain.conftest import CountingResolver
from tests.fakes.provider import FakeProvider, Reply
from tests.fakes.tls import make_tls


@pytest.mark.parametrize(
    "url",
    [
        "https://api.example.com",
        "https://api.example.com/v1/x?y=1",
        "https://api.example.com:8443/",
        "https://Bücher.example/",  # IDNA
        "https://8.8.8.8/",
        "https://[2606:4700:4700::1111]/dns-query",
        "https://rest.iad-01.braze.com./campaigns/list",  # trailing dot
    ],
)
def test_public_https_targets_pass_the_static_check(url: str) -> None:
    target = check_target(url, allow_loopback=False)
    assert target.scheme == "https"
    assert target.port in (443, 8443)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://api.example.com/", "scheme"),
        ("ftp://api.example.com/", "scheme"),
        ("file:///etc/passwd", "scheme"),
        ("https://user:s3cr3t-pw@api.example.com/", "userinfo"),
        ("https://token@api.example.com/", "userinfo"),
        ("https:///no-host", "host"),
        ("https://exa mple.com/", "host"),
        ("https://a..b.com/", "host"),
        ("https://2130706433/", "host"),  # 127.0.0.1 as a decimal number
        ("https://0x7f000001/", "host"),
        ("https://127.1/", "host"),
        ("https://[fe80::1%25eth0]/", "host"),
        ("https://api.example.com:25/", "port"),  # SMTP: a Fetch "bad port"
        ("https://api.example.com:0/", "port"),
        ("https://api.example.com:70000/", "port"),
        ("https://127.0.0.1/", "address"),
        ("https://[::1]/", "address"),
        ("https://localhost/", "address"),
        ("https://db.localhost/", "address"),
        ("https://10.1.2.3/", "address"),
        ("https://169.254.169.254/latest/meta-data/", "address"),
        ("https://[fd00:ec2::254]/", "address"),
        ("https://100.64.0.1/", "address"),
        ("https://[::ffff:10.0.0.1]/", "address"),
    ],
)
def test_refused_targets(url: str, reason: str) -> None:
    with pytest.raises(EgressRefused) as refused:
        check_target(url, allow_loopback=False)
    assert refused.value.reason == reason
    assert refused.value.code == "EGRESS_REFUSED"
    assert refused.value.category is FailureCategory.CONFIGURATION
    assert "s3cr3t-pw" not in refused.value.message  # the URL's userinfo is never echoed


def test_loopback_allowance_admits_http_and_loopback_only() -> None:
    assert check_target("http://127.0.0.1:8080/x", allow_loopback=True).port == 8080
    assert check_target("http://localhost/", allow_loopback=True).host == "localhost"
    assert check_target("https://[::1]:8443/", allow_loopback=True).ip_literal is True
    for url in ("http://10.0.0.1/", "http://169.254.169.254/", "http://0.0.0.0/"):
        with pytest.raises(EgressRefused):
            check_target(url, allow_loopback=True)
    with pytest.raises(EgressRefused) as refused:
        check_target("https://user:pw@127.0.0.1/", allow_loopback=True)
    assert refused.value.reason == "userinfo"


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("8.8.8.8", None),
        ("1.1.1.1", None),
        ("2606:4700:4700::1111", None),
        ("2002:808:808::1", None),  # 6to4 of a public address
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("fc00::1", "private"),
        ("fd12:3456::1", "private"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("169.254.169.254", "metadata"),
        ("fd00:ec2::254", "metadata"),
        ("169.254.170.2", "metadata"),
        ("100.100.100.200", "metadata"),
        ("192.0.0.192", "metadata"),
        ("100.64.0.1", "CGNAT"),
        ("100.127.255.254", "CGNAT"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("0.1.2.3", "this network"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("198.18.0.1", "benchmarking"),
        ("192.0.2.1", "private"),  # TEST-NET-1 (documentation)
        ("2001:db8::1", "private"),  # documentation
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
        ("::ffff:10.0.0.1", "private"),
        ("::ffff:169.254.169.254", "metadata"),
        ("::127.0.0.1", "loopback"),  # IPv4-compatible
        ("64:ff9b::a00:1", "private"),  # NAT64 of 10.0.0.1
        ("64:ff9b:1::1", "NAT64"),
        ("2002:a00:1::1", "private"),  # 6to4 of 10.0.0.1
    ],
)
def test_address_policy(address: str, problem: str | None) -> None:
    verdict = address_problem(ipaddress.ip_address(address), allow_loopback=False)
    if problem is None:
        assert verdict is None
    else:
        assert verdict is not None and problem in verdict


@pytest.mark.parametrize("address", ["127.0.0.1", "::1", "::ffff:127.0.0.1"])
def test_loopback_allowance_admits_loopback_addresses(address: str) -> None:
    assert address_problem(ipaddress.ip_address(address), allow_loopback=True) is None


@pytest.mark.parametrize(
    "address", ["169.254.169.254", "fd00:ec2::254", "10.0.0.1", "100.64.0.1", "0.0.0.0"]
)
def test_loopback_allowance_admits_nothing_else(address: str) -> None:
    assert address_problem(ipaddress.ip_address(address), allow_loopback=True) is not None


async def test_localhost_resolves_to_loopback_refused_unless_allowed() -> None:
    # check_target refuses the name statically; resolution refuses what it resolves to.
    target = check_target("http://localhost:8080/x", allow_loopback=True)
    with pytest.raises(EgressRefused) as refused:
        await resolve_target(target, allow_loopback=False)
    assert "loopback" in refused.value.message
    resolved = await resolve_target(target, allow_loopback=True)
    assert ipaddress.ip_address(resolved.address).is_loopback
    assert resolved.url.host == resolved.address


@pytest.mark.parametrize(
    ("answers", "allowed"),
    [
        (["93.184.216.34"], True),
        (["10.0.0.7"], False),
        (["169.254.169.254"], False),
        (["93.184.216.34", "10.0.0.7"], False),  # one bad answer refuses the name
        (["2606:2800:220:1::1", "::ffff:192.168.0.1"], False),
        (["100.64.1.1"], False),
    ],
)
async def test_every_resolved_address_is_checked(answers: list[str], allowed: bool) -> None:
    resolver = CountingResolver(names={"api.example.com": answers})
    target = check_target("https://api.example.com/v1", allow_loopback=False)
    if allowed:
        resolved = await resolve_target(target, allow_loopback=False, resolver=resolver)
        assert resolved.address == answers[0]
        assert resolved.addresses == tuple(answers)
    else:
        with pytest.raises(EgressRefused) as refused:
            await resolve_target(target, allow_loopback=False, resolver=resolver)
        assert "api.example.com" in refused.value.message


async def test_resolution_happens_on_every_call() -> None:
    """DNS rebinding: a name that answered a public address, then a private one."""
    resolver = CountingResolver(names={"rebind.example.com": ["93.184.216.34"]})
    target = check_target("https://rebind.example.com/", allow_loopback=False)
    first = await resolve_target(target, allow_loopback=False, resolver=resolver)
    assert first.address == "93.184.216.34"
    resolver.names["rebind.example.com"] = ["127.0.0.1"]
    with pytest.raises(EgressRefused):
        await resolve_target(target, allow_loopback=False, resolver=resolver)
    assert resolver.lookups["rebind.example.com"] == 2


async def test_unresolvable_names_are_a_network_problem() -> None:
    target = check_target("https://no-such-host.invalid/", allow_loopback=False)
    with pytest.raises(EgressUnresolvable) as failed:
        await resolve_target(target, allow_loopback=False)
    assert failed.value.category is FailureCategory.NETWORK
    empty = CountingResolver(names={"no-such-host.invalid": []})
    with pytest.raises(EgressUnresolvable):
        await resolve_target(target, allow_loopback=False, resolver=empty)


async def test_the_connection_goes_to_the_checked_address(
    http: httpx.AsyncClient, provider: FakeProvider
) -> None:
    """``provider.test`` exists only in the test's resolver: reaching the fake at all proves
    the request used the checked address, and the server still sees the name as Host."""
    provider.on("/ping", Reply(json={"ok": True}))
    port = int(provider.base_url.rsplit(":", 1)[1])
    resolver = CountingResolver(names={"provider.test": ["127.0.0.1"]})
    target = check_target(f"http://provider.test:{port}/ping", allow_loopback=True)
    resolved = await resolve_target(target, allow_loopback=True, resolver=resolver)
    response = await http.send(resolved.build_request(http, "GET", timeout=2))
    assert response.status_code == 200
    assert provider.seen("/ping")[0].headers["host"] == f"provider.test:{port}"
    assert resolver.lookups == {"provider.test": 1}

    # Checked 127.0.0.2 (where nothing listens): the request goes there, not to a fresh
    # resolution of the name, and fails.
    resolver.names["provider.test"] = ["127.0.0.2"]
    resolved = await resolve_target(target, allow_loopback=True, resolver=resolver)
    with pytest.raises(httpx.ConnectError):
        await http.send(resolved.build_request(http, "GET", timeout=2))
    assert len(provider.seen("/ping")) == 1


async def test_pinned_requests_never_reuse_a_connection(
    http: httpx.AsyncClient, provider: FakeProvider
) -> None:
    provider.on("/ping", Reply(json={"ok": True}))
    port = int(provider.base_url.rsplit(":", 1)[1])
    resolver = CountingResolver(names={"a.test": ["127.0.0.1"], "b.test": ["127.0.0.1"]})
    for name in ("a.test", "b.test", "a.test"):
        target = check_target(f"http://{name}:{port}/ping", allow_loopback=True)
        resolved = await resolve_target(target, allow_loopback=True, resolver=resolver)
        assert (await http.send(resolved.build_request(http, "GET", timeout=2))).status_code == 200
    ports = [r.client_port for r in provider.seen("/ping")]
    assert len(set(ports)) == 3, "each pinned request opens its own connection"
    assert [r.headers["connection"] for r in provider.seen("/ping")] == ["close"] * 3


async def test_https_to_the_pinned_ip_verifies_the_certificate_for_the_name(
    tmp_path: Path,
) -> None:
    tls = make_tls(tmp_path / "tls", hostnames=["provider.test"])  # no IP in the certificate
    fake = FakeProvider()
    fake.on("/secure", Reply(json={"ok": True}))
    context = ssl.create_default_context(cafile=str(tls.ca))
    resolver = CountingResolver(names={"provider.test": ["127.0.0.1"], "other.test": ["127.0.0.1"]})
    async with (
        fake.running(tls=tls, name="provider.test"),
        httpx.AsyncClient(verify=context, follow_redirects=False) as client,
    ):
        port = int(fake.base_url.rsplit(":", 1)[1])
        target = check_target(f"https://provider.test:{port}/secure", allow_loopback=True)
        resolved = await resolve_target(target, allow_loopback=True, resolver=resolver)
        assert resolved.extensions == {"sni_hostname": "provider.test"}
        response = await client.send(resolved.build_request(client, "GET", timeout=5))
        assert response.status_code == 200
        assert fake.seen("/secure")[0].headers["host"] == f"provider.test:{port}"

        # Same address, a name the certificate does not hold: verification fails.
        other = check_target(f"https://other.test:{port}/secure", allow_loopback=True)
        resolved = await resolve_target(other, allow_loopback=True, resolver=resolver)
        with pytest.raises(httpx.ConnectError, match="certificate"):
            await client.send(resolved.build_request(client, "GET", timeout=5))
    assert len(fake.seen("/secure")) == 1


async def test_httpx_request_logs_mask_query_values(
    http: httpx.AsyncClient, provider: FakeProvider, caplog: pytest.LogCaptureFixture
) -> None:
    install_log_redaction()
    install_log_redaction()  # idempotent
    assert len(logging.getLogger("httpx").filters) == 1
    provider.on("/q", Reply(json={}))
    caplog.set_level(logging.DEBUG)
    await http.get(f"{provider.base_url}/q", params={"api_key": "k-5f0c7d1e9a"})
    lines = [r.getMessage() for r in caplog.records if r.name == "httpx"]
    assert any("api_key=REDACTED" in line for line in lines)
    assert not any("k-5f0c7d1e9a" in line for line in lines)
    assert provider.seen("/q")[0].params == {"api_key": "k-5f0c7d1e9a"}
