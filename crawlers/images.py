"""Async image download: pairs in, (pair with fetch fields set, bytes or None) out.

Every input pair comes out exactly once, in completion order. At most `window` pairs
are being handled at a time (the input is read lazily), at most `config.concurrency`
requests are in flight, and at most `config.per_host_connections` to one host. Each
returned pair has `status` success, failed_to_download or opted_out, with `http_status`,
`content_type`, `image_bytes` and a short `error_message` as img2dataset writes them.
Pairs already dropped by curation pass through untouched, without a request.

Opt-out: with `respect_opt_out`, an `X-Robots-Tag` carrying noai, noimageai, noindex or
noimageindex (any case, comma or space separated, for every agent or for ours by name)
marks the pair opted_out and its bytes are discarded.

Content types: image/*, a generic binary type or none at all pass (decoding is checked
later); any other type (text/html, application/json, ...) is a failure naming it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import AsyncIterator, Iterable
from typing import Any

import aiohttp

from core.config import ShardsConfig
from core.record import STATUS_FAILED_DOWNLOAD, STATUS_OPTED_OUT, STATUS_SUCCESS, Pair
from core.stats import StageStats
from crawlers.fetch import FetchOptions, FetchResult, fetch, session_for
from crawlers.urls import InvalidURLError, host_key, normalize_url

OPT_OUT_DIRECTIVES = frozenset({"noai", "noimageai", "noindex", "noimageindex"})
BINARY_TYPES = frozenset(
    {"application/octet-stream", "binary/octet-stream", "application/binary", "unknown/unknown"}
)
_DIRECTIVE_SPLIT = re.compile(r"[,\s]+")
_AGENT_PREFIX = re.compile(r"^\s*([A-Za-z0-9_.*-]+)\s*:(.*)$", re.S)
# Directives written `name: value`, which must not be mistaken for a user-agent prefix.
VALUED_DIRECTIVES = frozenset(
    {"unavailable_after", "max-snippet", "max-image-preview", "max-video-preview"}
)


def agent_token(user_agent: str) -> str:
    """The product token of a User-Agent string, lower-cased ("openwitbot")."""
    return user_agent.split("/")[0].split()[0].lower() if user_agent.strip() else ""


def opt_out_directive(values: Iterable[str], agent: str) -> str | None:
    """The first opt-out directive in X-Robots-Tag values that applies to `agent`.

    A value is `directives` or `agent: directives` (Google's form); an agent prefix other
    than ours (or `*`) means the value is for someone else.
    """
    for value in values:
        match = _AGENT_PREFIX.match(value)
        if match and match.group(1).lower() not in VALUED_DIRECTIVES:
            if match.group(1).lower() not in (agent, "*"):
                continue
            value = match.group(2)
        for directive in _DIRECTIVE_SPLIT.split(value.lower()):
            if directive in OPT_OUT_DIRECTIVES:
                return directive
    return None


def content_type_refusal(content_type: str | None) -> str | None:
    """Why a Content-Type is clearly not an image, or None if it may be one."""
    if not content_type or content_type.startswith("image/") or content_type in BINARY_TYPES:
        return None
    return f"content type {content_type} is not an image"


class ImageDownloader:
    """Downloads one pair at a time under shared global and per-host limits."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        config: ShardsConfig,
        stats: StageStats,
        options: FetchOptions,
    ) -> None:
        self.session = session
        self.config = config
        self.stats = stats
        self.options = options
        self.agent = agent_token(config.user_agent)
        self.slots = asyncio.Semaphore(config.concurrency)
        self.host_slots: dict[str, asyncio.Semaphore] = {}
        self.host_waiting: dict[str, int] = {}

    async def download(self, pair: Pair) -> tuple[Pair, bytes | None]:
        """Fetch `pair.url`; the pair comes back with its fetch fields set."""
        if pair.drop_reason is not None:
            return pair, None
        self.stats.seen += 1
        try:
            url = normalize_url(pair.url)
        except InvalidURLError as exc:
            return self.failed(pair, "invalid_url", str(exc)), None
        async with self.host_slot(host_key(url)), self.slots:
            result = await fetch(self.session, url, self.options)
        self.stats.count("retries", result.retries)
        return self.outcome(pair, result)

    def host_slot(self, host: str) -> _HostSlot:
        return _HostSlot(self, host)

    def outcome(self, pair: Pair, result: FetchResult) -> tuple[Pair, bytes | None]:
        fields: dict[str, Any] = {
            "http_status": result.status,
            "content_type": result.content_type,
        }
        reason = result.failure()
        if reason is not None:
            message = result.error_message or f"http {result.status}"
            return self.failed(pair, reason, message, **fields), None
        refusal = content_type_refusal(result.content_type)
        if refusal is not None:
            return self.failed(pair, "not_image", refusal, **fields), None
        directive = self.opt_out(result)
        if directive is not None:
            self.stats.drop("opted_out")
            message = f"disallowed by X-Robots-Tag: {directive}"
            opted = dataclasses.replace(
                pair, status=STATUS_OPTED_OUT, error_message=message, **fields
            )
            return opted, None
        self.stats.kept += 1
        done = dataclasses.replace(
            pair, status=STATUS_SUCCESS, error_message=None, image_bytes=len(result.body), **fields
        )
        return done, result.body

    def opt_out(self, result: FetchResult) -> str | None:
        if not self.config.respect_opt_out:
            return None
        return opt_out_directive(result.headers.getall("X-Robots-Tag", []), self.agent)

    def failed(self, pair: Pair, reason: str, message: str, **fields: Any) -> Pair:
        self.stats.drop(reason)
        return dataclasses.replace(
            pair, status=STATUS_FAILED_DOWNLOAD, error_message=message, **fields
        )


class _HostSlot:
    """`async with`: hold one of a host's connections; forgets idle hosts (bounded memory)."""

    def __init__(self, downloader: ImageDownloader, host: str) -> None:
        self.downloader = downloader
        self.host = host

    async def __aenter__(self) -> None:
        d = self.downloader
        if self.host not in d.host_slots:
            d.host_slots[self.host] = asyncio.Semaphore(d.config.per_host_connections)
        d.host_waiting[self.host] = d.host_waiting.get(self.host, 0) + 1
        await d.host_slots[self.host].acquire()

    async def __aexit__(self, *exc: object) -> None:
        d = self.downloader
        d.host_slots[self.host].release()
        d.host_waiting[self.host] -= 1
        if d.host_waiting[self.host] == 0:
            del d.host_waiting[self.host], d.host_slots[self.host]


async def fetch_images(
    pairs: Iterable[Pair],
    config: ShardsConfig,
    stats: StageStats,
    session: aiohttp.ClientSession | None = None,
    window: int | None = None,
) -> AsyncIterator[tuple[Pair, bytes | None]]:
    """Download the image of every pair; yields each pair once, as downloads finish.

    `window` (default 4 x concurrency) bounds how many pairs are taken from the input
    before their results are yielded.
    """
    options = FetchOptions.for_images(config)
    async with session_for(session, config) as shared:
        async for item in _download_all(pairs, config, stats, shared, options, window):
            yield item


async def _download_all(
    pairs: Iterable[Pair],
    config: ShardsConfig,
    stats: StageStats,
    session: aiohttp.ClientSession,
    options: FetchOptions,
    window: int | None,
) -> AsyncIterator[tuple[Pair, bytes | None]]:
    downloader = ImageDownloader(session, config, stats, options)
    limit = window or 4 * config.concurrency
    pending: set[asyncio.Task[tuple[Pair, bytes | None]]] = set()
    try:
        for pair in pairs:
            pending.add(asyncio.create_task(downloader.download(pair)))
            if len(pending) >= limit:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    yield task.result()
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                yield task.result()
    finally:
        for task in pending:
            task.cancel()
