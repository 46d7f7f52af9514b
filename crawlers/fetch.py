"""One HTTP GET with the crawler's manners, shared by the page crawler and the image downloader.

`fetch` follows redirects itself (so every hop is re-checked against robots.txt and the
network policy, and loops are caught), streams the body under a size cap that also
bounds the decompressed size (aiohttp decompresses while streaming), retries on 408, 429,
5xx, timeouts and connection errors with exponential backoff (Retry-After honoured up to
a cap), and reports every failure as data in `FetchResult.error`, never as an exception.
Two clocks bound it: `timeout` each attempt (connection, headers and body), and
`deadline` the whole fetch, retries, backoff and redirect hops included, so a server that
trickles bytes, or answers every attempt just in time, ends at the deadline
(`deadline_exceeded`); a retry whose backoff would end past the deadline is not made.

`open_session` builds the one `aiohttp.ClientSession` a stage uses: a DNS cache
(`DnsCache`: answers kept `net.dns_cache_seconds`, failures a shorter while, one query per
name however many requests wait for it; with the system resolver, one cache per process,
so the sessions a worker opens one after another, one per shard, share it), a connection
cap overall and per host, no cookies, and the network policy (`NetConfig`, the pipeline's
`net` section) enforced on every request, robots.txt and redirect hops included:

- a URL whose host is an address literal is checked before anything is sent;
- a host name is checked after DNS resolution (`PolicyResolver`): if any address it
  resolves to is not public and not allowed, the request fails, so a public name cannot
  be pointed at an internal address; cached answers are checked again on every use;
- every new connection's peer address and port are checked before the request is written
  (`PolicyConnector`), whatever produced the address.

A refusal is the `private_address` error, never retried. Stage configs carry their copy of
the policy (`CrawlConfig.net`, `ShardsConfig.net`) and `FetchOptions.for_crawl` /
`for_images` copy it into the options, so the robots.txt cache shares it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import functools
import ipaddress
import socket
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from multidict import CIMultiDict

from core.config import CrawlConfig, NetConfig, ShardsConfig
from crawlers.urls import DEFAULT_PORTS, InvalidURLError, is_ip_literal, normalize_url

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
RETRY_STATUSES = frozenset({408, 429})  # and every 5xx
RETRY_ERRORS = frozenset({"timeout", "connection_error"})
CHUNK_BYTES = 64 * 1024

# `error` values a FetchResult can carry
ERROR_TIMEOUT = "timeout"
ERROR_DEADLINE = "deadline_exceeded"
ERROR_CONNECTION = "connection_error"
ERROR_TOO_LARGE = "too_large"
ERROR_REDIRECT_LOOP = "redirect_loop"
ERROR_TOO_MANY_REDIRECTS = "too_many_redirects"
ERROR_PRIVATE = "private_address"
ERROR_INVALID_URL = "invalid_url"

# Checks a redirect target; returns a reason to stop (e.g. "robots_disallowed") or None.
HopCheck = Callable[[str], Awaitable[str | None]]


@dataclass(frozen=True)
class FetchOptions:
    """How one fetch behaves; built from a stage config with `for_crawl` / `for_images`."""

    user_agent: str = "OpenWITBot/0.1"
    timeout: float = 10.0  # per attempt, body included
    deadline: float = 30.0  # the whole fetch: every attempt, backoff and redirect hop
    retries: int = 2
    backoff: float = 0.2  # first retry delay, doubled each retry
    max_retry_after: float = 10.0  # Retry-After above this is cut to this
    max_redirects: int = 5
    max_bytes: int = 5_000_000  # on the decompressed body
    truncate: bool = False  # True: keep the first max_bytes instead of failing too_large
    net: NetConfig = field(default_factory=NetConfig)  # which non-public addresses may be used

    @classmethod
    def for_crawl(cls, config: CrawlConfig, **overrides: Any) -> FetchOptions:
        values: dict[str, Any] = {
            "user_agent": config.user_agent,
            "timeout": config.timeout,
            "deadline": config.deadline,
            "retries": config.retries,
            "backoff": config.backoff,
            "max_redirects": config.max_redirects,
            "max_bytes": config.max_page_bytes,
            "net": config.net,
        }
        return cls(**{**values, **overrides})

    @classmethod
    def for_images(cls, config: ShardsConfig, **overrides: Any) -> FetchOptions:
        values: dict[str, Any] = {
            "user_agent": config.user_agent,
            "timeout": config.timeout,
            "deadline": config.deadline,
            "retries": config.retries,
            "max_bytes": config.max_image_bytes,
            "net": config.net,
        }
        return cls(**{**values, **overrides})


@dataclass
class FetchResult:
    """The outcome of `fetch`: a response (any status) or an `error` reason, never both."""

    url: str
    final_url: str
    status: int | None = None
    headers: CIMultiDict[str] = field(default_factory=CIMultiDict)
    body: bytes = b""
    error: str | None = None  # one of the ERROR_* reasons, or a HopCheck's reason
    error_message: str | None = None  # short human-readable detail
    retries: int = 0
    redirects: list[str] = field(default_factory=list)  # hop targets, in order
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None and self.status is not None and 200 <= self.status < 300

    @property
    def content_type(self) -> str | None:
        """The media type without parameters, lower-cased."""
        value = self.headers.get("Content-Type")
        return value.split(";")[0].strip().lower() or None if value else None

    def failure(self) -> str | None:
        """Why this is not a usable 2xx response (`timeout`, `http_404`, ...), or None."""
        if self.error is not None:
            return self.error
        if self.status is None or not 200 <= self.status < 300:
            return f"http_{self.status}"
        return None


class PrivateAddressError(OSError):
    """A request that would reach an address the network policy refuses."""


def is_public_ip(address: str) -> bool:
    """True only for a globally routable unicast address.

    False for loopback, private, link-local, multicast, unspecified (0.0.0.0, ::), reserved
    and shared ranges, for every IPv4-mapped IPv6 address, and for 6to4 or NAT64 addresses
    wrapping a non-public IPv4 one.
    """
    ip = ipaddress.ip_address(address.strip("[]").split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return False
        inner = ip.sixtofour or (_nat64(ip) if ip in NAT64 else None)
        if inner is not None and not is_public_ip(str(inner)):
            return False
    special = ip.is_multicast or ip.is_link_local or ip.is_unspecified or ip.is_loopback
    return ip.is_global and not special and not ip.is_reserved


NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def _nat64(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)


class NetPolicy:
    """A `NetConfig` ready to ask: may a request to `host` reach `address`:`port`?"""

    def __init__(self, config: NetConfig) -> None:
        self.rules = config.rules()

    def refusal(self, host: str, address: str, port: int) -> str | None:
        """Why the request must not be made, or None: public addresses always pass,
        others only when an `allow_private` entry covers them."""
        if is_public_ip(address) or any(r.matches(host, address, port) for r in self.rules):
            return None
        where = address if host.strip("[]") == address else f"{host} ({address})"
        return f"refusing private address {where} port {port}: not in net.allow_private"


@functools.lru_cache(maxsize=64)
def net_policy(config: NetConfig) -> NetPolicy:
    """The parsed policy of `config` (parsed once per distinct config)."""
    return NetPolicy(config)


DnsKey = tuple[str, int, int]  # host, port, address family


@dataclass
class DnsEntry:
    """A cached answer (or failure) and the clock reading it expires at."""

    expires: float
    results: list[ResolveResult] | None = None
    error: OSError | None = None


class DnsCache:
    """Resolver answers kept `ttl` seconds and failures `negative_ttl` (the system resolver
    gives no TTL, so one is configured), at most `max_entries` of them (the least recently
    used go first); concurrent lookups of one name share one query."""

    def __init__(
        self,
        ttl: float = 300.0,
        negative_ttl: float = 30.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl, self.negative_ttl, self.max_entries = ttl, negative_ttl, max_entries
        self.clock = clock
        self.entries: OrderedDict[DnsKey, DnsEntry] = OrderedDict()
        # lookups under way; one ends with None when its query was cancelled
        self.pending: dict[DnsKey, asyncio.Future[DnsEntry | None]] = {}
        self.queries = 0  # lookups that reached the inner resolver

    async def resolve(
        self, inner: AbstractResolver, host: str, port: int, family: socket.AddressFamily
    ) -> list[ResolveResult]:
        """The addresses of `host`, from the cache while fresh, else from `inner`."""
        key = (host, port, int(family))
        entry = self.entries.get(key)
        if entry is None or entry.expires <= self.clock():
            entry = await self._lookup(inner, key, family)
        else:
            self.entries.move_to_end(key)
        if entry.error is not None:
            raise OSError(entry.error.errno, entry.error.strerror or str(entry.error))
        return [dict(result) for result in entry.results or []]  # type: ignore[misc]

    async def _lookup(
        self, inner: AbstractResolver, key: DnsKey, family: socket.AddressFamily
    ) -> DnsEntry:
        loop = asyncio.get_running_loop()
        waiting = self.pending.get(key)
        if waiting is not None and waiting.get_loop() is loop:
            shared = await asyncio.shield(waiting)
            if shared is not None:
                return shared  # else the query waited for was cancelled: ask again
        future: asyncio.Future[DnsEntry | None] = loop.create_future()
        self.pending[key] = future
        entry: DnsEntry | None = None
        try:
            entry = await self._query(inner, key, family)
            return entry
        finally:
            if not future.done():
                future.set_result(entry)
            if self.pending.get(key) is future:
                del self.pending[key]

    async def _query(
        self, inner: AbstractResolver, key: DnsKey, family: socket.AddressFamily
    ) -> DnsEntry:
        self.queries += 1
        try:
            results = await inner.resolve(key[0], key[1], family)
            entry = DnsEntry(self.clock() + self.ttl, results=results)
        except OSError as exc:
            entry = DnsEntry(self.clock() + self.negative_ttl, error=exc)
        self.entries[key] = entry
        self.entries.move_to_end(key)
        while len(self.entries) > self.max_entries:
            self.entries.popitem(last=False)
        return entry


@functools.cache
def process_dns_cache(ttl: float) -> DnsCache:
    """This process's cache of system DNS answers kept `ttl` seconds. Sessions open one
    after another (a worker opens one per shard), each with its own event loop; the cache
    keeps answers across them and shares a query in flight only within one loop."""
    return DnsCache(ttl=ttl)


class PolicyResolver(AbstractResolver):
    """Resolves through `inner` (aiohttp's default resolver), answers cached in `cache`,
    and refuses the name if any address it resolves to, cached or not, is refused by the
    policy for that port."""

    def __init__(
        self,
        policy: NetPolicy,
        inner: AbstractResolver | None = None,
        cache: DnsCache | None = None,
    ) -> None:
        self.policy = policy
        self._inner = inner or DefaultResolver()
        self.cache = cache or DnsCache()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self.cache.resolve(self._inner, host, port, family)
        for result in results:
            reason = self.policy.refusal(host, result["host"], port)
            if reason is not None:
                raise PrivateAddressError(reason)
        return results

    async def close(self) -> None:
        await self._inner.close()


class PolicyConnector(aiohttp.TCPConnector):
    """A TCP connector that checks each new connection's peer before a byte is sent."""

    def __init__(self, policy: NetPolicy, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.policy = policy

    async def _create_connection(
        self, req: aiohttp.ClientRequest, traces: list[Any], timeout: aiohttp.ClientTimeout
    ) -> Any:
        protocol = await super()._create_connection(req, traces, timeout)
        transport = protocol.transport
        peer = transport.get_extra_info("peername") if transport is not None else None
        if peer is None:
            protocol.close()
            raise PrivateAddressError(f"no peer address for {req.url.host}")
        reason = self.policy.refusal(req.url.host or "", str(peer[0]), int(peer[1]))
        if reason is not None:
            protocol.close()
            raise PrivateAddressError(reason)
        return protocol


def open_session(
    user_agent: str,
    concurrency: int,
    per_host_connections: int,
    net: NetConfig | None = None,
    resolver: AbstractResolver | None = None,
    dns_cache: DnsCache | None = None,
) -> aiohttp.ClientSession:
    """The shared session of a stage (use as `async with`), enforcing `net` (default: no
    non-public address) on every connection; `resolver` replaces the system DNS (tests).
    DNS answers are cached in `dns_cache`, else in this process's cache of `net`'s TTL
    (a new one when `resolver` is given); the connector's own cache is off, so the policy
    sees every lookup, cached or not."""
    net = net or NetConfig()
    policy = net_policy(net)
    if dns_cache is not None:
        cache = dns_cache
    elif resolver is not None:
        cache = DnsCache(ttl=net.dns_cache_seconds)
    else:
        cache = process_dns_cache(net.dns_cache_seconds)
    connector = PolicyConnector(
        policy,
        limit=concurrency,
        limit_per_host=per_host_connections,
        use_dns_cache=False,
        resolver=PolicyResolver(policy, resolver, cache),
    )
    return aiohttp.ClientSession(
        connector=connector,
        headers={"User-Agent": user_agent},
        cookie_jar=aiohttp.DummyCookieJar(),
        trust_env=False,
    )


@contextlib.asynccontextmanager
async def session_for(
    session: aiohttp.ClientSession | None, config: CrawlConfig | ShardsConfig
) -> AsyncIterator[aiohttp.ClientSession]:
    """`session` when the caller shares one, else one of our own for `config`, closed after."""
    if session is not None:
        yield session
        return
    async with open_session(
        config.user_agent, config.concurrency, config.per_host_connections, config.net
    ) as own_session:
        yield own_session


def retry_delay(
    attempt: int,
    status: int | None,
    error: str | None,
    retry_after: float | None,
    options: FetchOptions,
) -> float | None:
    """Seconds to wait before retry number `attempt + 1`, or None to stop.

    Retries 408, 429, 5xx, timeouts and connection errors, at most `options.retries`
    times, waiting backoff * 2**attempt, or Retry-After when given (cut to a cap).
    """
    if attempt >= options.retries:
        return None
    retryable = error in RETRY_ERRORS or (
        error is None and status is not None and (status in RETRY_STATUSES or status >= 500)
    )
    if not retryable:
        return None
    if retry_after is not None:
        return min(retry_after, options.max_retry_after)
    return options.backoff * 2**attempt


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds asked for by a Retry-After header (delta-seconds or HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))


async def fetch(
    session: aiohttp.ClientSession,
    url: str,
    options: FetchOptions,
    hop_check: HopCheck | None = None,
) -> FetchResult:
    """GET `url`, following redirects by hand; every outcome is a `FetchResult`.

    `hop_check` is asked about every redirect target before it is requested (the first
    URL is the caller's to check). The whole fetch ends at `options.deadline`.
    """
    result = FetchResult(url=url, final_url=url)
    try:
        async with asyncio.timeout(options.deadline):
            return await _follow(session, result, options, hop_check)
    except TimeoutError:
        result.status, result.headers = None, CIMultiDict()
        return _failed(result, ERROR_DEADLINE, f"not done within {options.deadline:g}s")


async def _follow(
    session: aiohttp.ClientSession,
    result: FetchResult,
    options: FetchOptions,
    hop_check: HopCheck | None,
) -> FetchResult:
    """Request `result.final_url`, then each redirect target in turn."""
    visited = {result.url}
    ends = asyncio.get_running_loop().time() + options.deadline
    while True:
        refusal = address_refusal(result.final_url, options)
        if refusal is not None:
            return _failed(result, ERROR_PRIVATE, refusal)
        await _get_with_retries(session, result, options, ends)
        location = _redirect_target(result)
        if location is None:
            return result
        stop = await _check_hop(result, location, visited, options, hop_check)
        if stop is not None:
            return stop
        result.redirects.append(location)
        visited.add(location)
        result.final_url = location
        result.status, result.headers, result.body = None, CIMultiDict(), b""


def address_refusal(url: str, options: FetchOptions) -> str | None:
    """Why `url` must not be fetched for its address literal, or None. Host names are
    checked after resolution by `PolicyResolver`, every peer by `PolicyConnector`."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if not is_ip_literal(host):
        return None
    try:
        port = parts.port or DEFAULT_PORTS.get(parts.scheme, 0)
    except ValueError:
        return None  # a bad port fails as invalid_url when requested
    return net_policy(options.net).refusal(host, host, port)


def _redirect_target(result: FetchResult) -> str | None:
    if result.error is not None or result.status not in REDIRECT_STATUSES:
        return None
    location = result.headers.get("Location")
    if not location:
        return None
    try:
        return normalize_url(urljoin(result.final_url, location.strip()))
    except (InvalidURLError, ValueError):
        return None


async def _check_hop(
    result: FetchResult,
    location: str,
    visited: set[str],
    options: FetchOptions,
    hop_check: HopCheck | None,
) -> FetchResult | None:
    if location in visited:
        return _failed(result, ERROR_REDIRECT_LOOP, f"redirect loop at {location}")
    if len(result.redirects) >= options.max_redirects:
        return _failed(result, ERROR_TOO_MANY_REDIRECTS, f"over {options.max_redirects} redirects")
    if hop_check is not None:
        reason = await hop_check(location)
        if reason is not None:
            result.final_url = location
            return _failed(result, reason, f"redirect to {location}: {reason}")
    return None


def _failed(result: FetchResult, error: str, message: str) -> FetchResult:
    result.error, result.error_message = error, message
    result.body = b""
    return result


async def _get_with_retries(
    session: aiohttp.ClientSession, result: FetchResult, options: FetchOptions, ends: float
) -> None:
    """Attempts until one is final, retries run out, or the next would start past `ends`."""
    loop = asyncio.get_running_loop()
    attempt = 0
    while True:
        result.error = result.error_message = None
        await _get_once(session, result, options)
        retry_after = parse_retry_after(result.headers.get("Retry-After"))
        delay = retry_delay(attempt, result.status, result.error, retry_after, options)
        if delay is None or loop.time() + delay >= ends:
            return
        attempt += 1
        result.retries += 1
        await asyncio.sleep(delay)


async def _get_once(
    session: aiohttp.ClientSession, result: FetchResult, options: FetchOptions
) -> None:
    timeout = aiohttp.ClientTimeout(total=options.timeout)
    result.status, result.headers, result.body = None, CIMultiDict(), b""
    try:
        async with session.get(
            result.final_url, allow_redirects=False, timeout=timeout
        ) as response:
            result.status = response.status
            result.headers = CIMultiDict(response.headers)
            if response.status in REDIRECT_STATUSES:
                return  # the body of a redirect is not wanted
            await _read_body(response, result, options)
    except TimeoutError:
        _failed(result, ERROR_TIMEOUT, f"timeout after {options.timeout:g}s")
    except PrivateAddressError as exc:
        _connection_failed(result, exc, exc)
    except aiohttp.ClientConnectorError as exc:
        _connection_failed(result, exc, exc.os_error)
    except aiohttp.InvalidURL as exc:
        _failed(result, ERROR_INVALID_URL, f"invalid URL: {exc}")
    except (aiohttp.ClientError, OSError) as exc:
        _connection_failed(result, exc, None)


def _connection_failed(result: FetchResult, exc: Exception, cause: OSError | None) -> None:
    result.status = None
    if isinstance(cause, PrivateAddressError) or isinstance(exc.__cause__, PrivateAddressError):
        _failed(result, ERROR_PRIVATE, str(cause))
    else:
        _failed(result, ERROR_CONNECTION, f"{type(exc).__name__}: {exc}"[:200])


async def _read_body(
    response: aiohttp.ClientResponse, result: FetchResult, options: FetchOptions
) -> None:
    """Stream the (decompressed) body, stopping at `options.max_bytes`."""
    declared = response.content_length
    encoded = response.headers.get("Content-Encoding", "identity").lower() != "identity"
    too_large = declared is not None and declared > options.max_bytes
    if too_large and not encoded and not options.truncate:
        _failed(result, ERROR_TOO_LARGE, f"body of {declared} bytes over {options.max_bytes}")
        return
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(CHUNK_BYTES):
        chunks.append(chunk)
        size += len(chunk)
        if size > options.max_bytes:
            if options.truncate:
                result.body, result.truncated = b"".join(chunks)[: options.max_bytes], True
                return
            _failed(result, ERROR_TOO_LARGE, f"body over {options.max_bytes} bytes")
            return
    result.body = b"".join(chunks)
