"""The network policy (`net.allow_private`): parsing, which addresses are public, and that a
refused address never receives a request: not a page, a redirect hop, a robots.txt or an
image, whether the URL names it by address or by a name that resolves to it."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from core.config import (
    ConfigError,
    CrawlConfig,
    NetConfig,
    PipelineConfig,
    ShardsConfig,
    load_config,
    parse_net_rule,
    save_config,
)
from core.record import Pair
from core.stats import StageStats
from crawlers.fetch import (
    DnsCache,
    FetchOptions,
    FetchResult,
    NetPolicy,
    PolicyConnector,
    PolicyResolver,
    PrivateAddressError,
    fetch,
    is_public_ip,
    open_session,
    process_dns_cache,
)
from crawlers.images import fetch_images
from crawlers.pages import crawl
from tests.crawlers.conftest import FaultServer

NAME = "intranet.example"  # resolved to 127.0.0.1 by `LoopbackResolver`, never by DNS


class LoopbackResolver(AbstractResolver):
    """Resolves `NAME` to 127.0.0.1, and nothing else (no DNS, no /etc/hosts)."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host != NAME:
            raise OSError(f"unknown host {host}")
        return [
            ResolveResult(
                hostname=host, host="127.0.0.1", port=port, family=socket.AF_INET,
                proto=0, flags=socket.AI_NUMERICHOST,
            )
        ]  # fmt: skip

    async def close(self) -> None:
        pass


def only(server: FaultServer) -> NetConfig:
    """A policy allowing exactly `server`'s host:port."""
    return NetConfig(allow_private=(f"127.0.0.1:{server.port}",))


def fetch_with(url: str, net: NetConfig, resolver: AbstractResolver | None = None) -> FetchResult:
    async def go() -> FetchResult:
        async with open_session("TestBot/1.0", 4, 2, net, resolver=resolver) as session:
            return await fetch(session, url, FetchOptions(timeout=2.0, retries=0, net=net))

    return asyncio.run(go())


# ---------------------------------------------------------------- the rules


def test_entries_parse_and_bad_ones_name_the_key() -> None:
    assert parse_net_rule("127.0.0.1:8080").port == 8080
    assert parse_net_rule("10.0.0.0/8").port is None
    assert parse_net_rule("[::1]:80").port == 80 and parse_net_rule("fd00::/8").port is None
    assert parse_net_rule("Intranet.Example.").host == "intranet.example"
    for bad in ("10.0.0.1/8", "host:0", "host:99999", "a b", "[::1", "[::1]x", "host:port"):
        with pytest.raises(ConfigError, match=r"net\.allow_private"):
            load_config(None, [f"net.allow_private=['{bad}']"])


def test_one_policy_set_once_reaches_every_stage(tmp_path: Path) -> None:
    config = load_config(None, ['net.allow_private=["127.0.0.1:8080", "10.0.0.0/8"]'])
    assert config.net.allow_private == ("127.0.0.1:8080", "10.0.0.0/8")
    assert config.crawl.net == config.net and config.shards.net == config.net
    with pytest.raises(ConfigError, match=r"unknown config key: crawl\.net"):
        load_config(None, ["crawl.net.allow_private=['127.0.0.1']"])
    save_config(config, tmp_path / "config.toml")
    assert "crawl.net" not in (tmp_path / "config.toml").read_text()
    assert load_config(tmp_path / "config.toml") == config
    assert PipelineConfig(net=NetConfig(("h",))).shards.net == NetConfig(("h",))


def test_sandbox_origins_are_added_exactly() -> None:
    net = NetConfig(("10.0.0.0/8",)).allowing(["http://127.0.0.1:8080", "https://h.test/x"])
    assert net.allow_private == ("10.0.0.0/8", "127.0.0.1:8080", "h.test:443")


def test_only_global_unicast_addresses_are_public() -> None:
    for address in ("8.8.8.8", "2606:4700::1111"):
        assert is_public_ip(address), address
    refused = [
        "127.0.0.1", "10.1.2.3", "192.168.0.1", "172.16.0.1", "100.64.0.1", "169.254.169.254",
        "0.0.0.0", "224.0.0.1", "239.255.255.250", "255.255.255.255", "::", "::1", "fe80::1",
        "fc00::1", "ff02::1", "::ffff:8.8.8.8", "::ffff:127.0.0.1", "2002:7f00:1::",
        "64:ff9b::a00:1",
    ]  # fmt: skip
    for address in refused:
        assert not is_public_ip(address), address


def test_entries_cover_exactly_their_ports_networks_and_names() -> None:
    policy = NetPolicy(NetConfig(("127.0.0.1:8080", "10.0.0.0/8", f"{NAME}:80")))
    assert policy.refusal("127.0.0.1", "127.0.0.1", 8080) is None
    assert policy.refusal("127.0.0.1", "127.0.0.1", 8081) is not None
    assert policy.refusal("10.9.8.7", "10.9.8.7", 1234) is None
    assert policy.refusal(NAME, "192.168.1.1", 80) is None  # a name entry: whatever it resolves to
    assert policy.refusal(NAME, "192.168.1.1", 81) is not None
    assert policy.refusal("other.example", "192.168.1.1", 80) is not None
    assert policy.refusal("[::ffff:127.0.0.1]", "::ffff:127.0.0.1", 8080) is None
    assert policy.refusal("example.org", "93.184.215.14", 443) is None  # public


# ---------------------------------------------------------------- on the wire


def test_a_name_resolving_to_loopback_is_refused(fault_server: FaultServer) -> None:
    url = f"http://{NAME}:{fault_server.port}/html"
    refused = fetch_with(url, NetConfig(), LoopbackResolver())
    assert refused.failure() == "private_address" and "127.0.0.1" in str(refused.error_message)
    other_port = fetch_with(
        url, NetConfig((f"{NAME}:{fault_server.port + 1}",)), LoopbackResolver()
    )
    assert other_port.failure() == "private_address"
    assert fault_server.log.paths == []
    assert fetch_with(url, NetConfig((f"{NAME}:{fault_server.port}",)), LoopbackResolver()).ok
    assert fetch_with(url, only(fault_server), LoopbackResolver()).ok  # the address is allowed


def test_the_connected_peer_is_checked_whatever_the_resolver_said(
    fault_server: FaultServer,
) -> None:
    """A resolver that checks nothing still cannot open the way: the connector refuses."""

    async def go() -> FetchResult:
        policy = NetPolicy(NetConfig())
        connector = PolicyConnector(policy, resolver=LoopbackResolver())
        async with aiohttp.ClientSession(connector=connector) as session:
            url = f"http://{NAME}:{fault_server.port}/html"
            return await fetch(session, url, FetchOptions(timeout=2.0, retries=0))

    result = asyncio.run(go())
    assert result.failure() == "private_address" and result.retries == 0
    assert fault_server.log.paths == []


def test_only_the_allowed_port_is_ever_reached(
    fault_server: FaultServer, second_server: FaultServer
) -> None:
    """A crawl on one allowed loopback port whose links, redirects, robots.txt and images
    point at a second loopback port: the second port sees no request at all."""
    other = second_server.url
    fault_server.robots_redirect = other("/robots.txt")
    gallery = fault_server.url(f"/gallery?src={quote(other('/img/a.jpg'))}&src=/img/ok.jpg")
    links = "&".join(
        f"to={quote(u, safe='')}"
        for u in (other("/site/0"), fault_server.url(f"/to?url={quote(other('/html'))}"), gallery)
    )
    net = only(fault_server)
    stats = StageStats("crawl")
    pairs = crawl(
        [fault_server.url(f"/links?{links}"), other("/html")],
        CrawlConfig(per_host_delay=0.0, net=net),
        stats,
    )
    assert stats.dropped == {"private_address": 3}  # the link, the redirect hop, the seed
    assert {p.url for p in pairs} == {fault_server.url("/img/ok.jpg"), other("/img/a.jpg")}
    downloaded = StageStats("download")
    results = download(pairs, ShardsConfig(timeout=2.0, net=net), downloaded)
    assert downloaded.kept == 1 and downloaded.dropped == {"private_address": 1}
    refused = results[other("/img/a.jpg")]
    assert refused.status == "failed_to_download" and "net.allow_private" in str(
        refused.error_message
    )
    assert second_server.log.paths == []
    assert fault_server.log.hits["/robots.txt"] == 1


def download(pairs: list[Pair], config: ShardsConfig, stats: StageStats) -> dict[str, Pair]:
    async def go() -> dict[str, Pair]:
        out: dict[str, Any] = {}
        async for pair, _ in fetch_images(pairs, config, stats):
            out[pair.url] = pair
        return out

    return asyncio.run(go())


# ---------------------------------------------------------------- the DNS cache


class CountingResolver(LoopbackResolver):
    """`LoopbackResolver` that counts its queries (and fails for other names, counted too)."""

    def __init__(self) -> None:
        self.queries = 0

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.queries += 1
        await asyncio.sleep(0.01)  # long enough for concurrent lookups to overlap
        return await super().resolve(host, port, family)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_dns_answers_are_cached_for_their_ttl_and_checked_on_every_use() -> None:
    inner, clock = CountingResolver(), Clock()
    cache = DnsCache(ttl=60.0, negative_ttl=5.0, clock=clock)
    allowed = PolicyResolver(NetPolicy(NetConfig((NAME,))), inner, cache)
    refused = PolicyResolver(NetPolicy(NetConfig()), inner, cache)  # same cache, no allowance

    async def go() -> None:
        first = await allowed.resolve(NAME, 80)
        assert [r["host"] for r in first] == ["127.0.0.1"] and inner.queries == 1
        await allowed.resolve(NAME, 80)
        assert inner.queries == 1  # from the cache
        with pytest.raises(PrivateAddressError):
            await refused.resolve(NAME, 80)  # a cached answer is still checked
        clock.now = 61.0
        await allowed.resolve(NAME, 80)
        assert inner.queries == 2  # expired, asked again
        for _ in range(2):
            with pytest.raises(OSError, match="unknown host"):
                await allowed.resolve("nowhere.example", 80)
        assert inner.queries == 3  # the failure is cached too ...
        clock.now = 67.0
        with pytest.raises(OSError):
            await allowed.resolve("nowhere.example", 80)
        assert inner.queries == 4  # ... for the shorter negative TTL

    asyncio.run(go())


def test_a_session_resolves_a_name_once_for_many_connections(fault_server: FaultServer) -> None:
    """Eight requests at once open eight connections; the name is looked up once."""
    inner = CountingResolver()
    net = NetConfig((f"{NAME}:{fault_server.port}",))
    url = f"http://{NAME}:{fault_server.port}/slow?seconds=0.2"

    async def go() -> list[FetchResult]:
        async with open_session("TestBot/1.0", 8, 8, net, resolver=inner) as session:
            options = FetchOptions(timeout=2.0, retries=0, net=net)
            return await asyncio.gather(*(fetch(session, url, options) for _ in range(8)))

    results = asyncio.run(go())
    assert all(r.ok for r in results) and fault_server.log.max_in_flight == 8
    assert inner.queries == 1


def test_sessions_one_after_another_share_the_process_dns_cache(
    fault_server: FaultServer,
) -> None:
    """A worker opens one session per shard, each in its own event loop: with the system
    resolver, the second session takes the first one's answer for the name."""
    ttl = 4321.0  # a cache of this process no other test uses
    net = NetConfig((f"localhost:{fault_server.port}",), dns_cache_seconds=ttl)
    url = f"http://localhost:{fault_server.port}/slow?seconds=0"

    async def one_session() -> FetchResult:
        async with open_session("TestBot/1.0", 2, 2, net) as session:
            return await fetch(session, url, FetchOptions(timeout=2.0, retries=0, net=net))

    assert asyncio.run(one_session()).ok and asyncio.run(one_session()).ok
    assert process_dns_cache(ttl).queries == 1


def test_a_cancelled_lookup_does_not_fail_those_waiting_for_it() -> None:
    """A fetch cut by its deadline mid-lookup: the others sharing the lookup ask again."""
    inner = CountingResolver()
    resolver = PolicyResolver(NetPolicy(NetConfig((NAME,))), inner, DnsCache())

    async def go() -> None:
        first = asyncio.create_task(resolver.resolve(NAME, 80))
        await asyncio.sleep(0)  # the first is now querying
        second = asyncio.create_task(resolver.resolve(NAME, 80))
        await asyncio.sleep(0)  # the second waits for the first's answer
        first.cancel()
        assert [r["host"] for r in await second] == ["127.0.0.1"]
        assert first.cancelled() and inner.queries == 2

    asyncio.run(go())
