"""robots.txt per host, fetched once, parsed with Protego (Google's robots.txt spec).

Outcomes of fetching `scheme://host:port/robots.txt`, following Google's documented
handling (developers.google.com/search/docs/crawling-indexing/robots/robots_txt):

- 2xx: parsed; only the first 500 KiB is read (the rest is ignored, as Google does);
- 3xx: followed up to 5 hops; more, a loop, or a 3xx without target: allow all;
- 4xx other than 429, including 401 and 403: no usable robots.txt, so allow all;
- 429, 5xx, timeouts and connection failures: disallow all for that host this run
  (Google keeps its last copy; a single run has none, so it stays away).

A host whose robots.txt is refused for being on a private address is treated as allow-all:
its pages are refused by the same rule when fetched, and counted under that reason.

The body is decoded as UTF-8 with an optional byte-order mark (a BOM must not hide the first
group). Groups are matched against our product token only (RFC 9309 section 2.2.1):
"OpenWITBot" of "OpenWITBot/0.1 (+https://github.com/...)", so a group named `https` or
`github` is not ours. Protego then picks the group whose name occurs in that token at a
token start, case-insensitively, the longest such name winning: `OpenWIT` and `openwitbot`
apply to us (the longer first), `WITBot` or `Bot` do not, and `*` is the fallback.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

import aiohttp
from protego import Protego

from crawlers.fetch import ERROR_PRIVATE, FetchOptions, fetch
from crawlers.urls import host_key

ROBOTS_MAX_BYTES = 500 * 1024
ROBOTS_MAX_REDIRECTS = 5
_PRODUCT_TOKEN = re.compile(r"[A-Za-z_-]+")


def product_token(user_agent: str) -> str:
    """The leading run of letters, `_` and `-` of a User-Agent: the name robots.txt groups
    are matched against ("OpenWITBot" of "OpenWITBot/0.1 (+https://...)")."""
    match = _PRODUCT_TOKEN.match(user_agent.strip())
    return match.group() if match else user_agent.strip()


@dataclass(frozen=True)
class RobotsPolicy:
    """What one host's robots.txt says; `parser` is None for allow-all / disallow-all."""

    allow_all: bool
    parser: Protego | None = None
    reason: str = ""  # how the policy was decided: "parsed", "http_404", "http_503", ...

    def allowed(self, url: str, user_agent: str) -> bool:
        """May `user_agent` (a product token or a whole User-Agent) fetch `url`?"""
        if self.parser is None:
            return self.allow_all
        return bool(self.parser.can_fetch(url, product_token(user_agent)))

    def crawl_delay(self, user_agent: str) -> float | None:
        """The Crawl-delay of the group `user_agent`'s product token selects, if any."""
        if self.parser is None:
            return None
        delay = self.parser.crawl_delay(product_token(user_agent))
        return None if delay is None else float(delay)


def policy_from_response(status: int | None, error: str | None, body: bytes) -> RobotsPolicy:
    """The policy implied by fetching a robots.txt (see the module docstring)."""
    if error == ERROR_PRIVATE:
        return RobotsPolicy(allow_all=True, reason=error)
    if error is not None:
        return RobotsPolicy(
            allow_all=error in ("redirect_loop", "too_many_redirects"), reason=error
        )
    assert status is not None
    if 200 <= status < 300:
        text = body.decode("utf-8-sig", errors="replace")  # a leading BOM is dropped
        return RobotsPolicy(allow_all=True, parser=Protego.parse(text), reason="parsed")
    if status == 429 or status >= 500:
        return RobotsPolicy(allow_all=False, reason=f"http_{status}")
    return RobotsPolicy(allow_all=True, reason=f"http_{status}")  # 3xx without target, 4xx


class RobotsCache:
    """robots.txt policies by host key, each fetched at most once per run.

    Concurrent callers asking about the same new host share one fetch.
    """

    def __init__(self, session: aiohttp.ClientSession, options: FetchOptions) -> None:
        self.session = session
        self.user_agent = product_token(options.user_agent)  # what groups are matched against
        self.options = FetchOptions(
            user_agent=options.user_agent,
            timeout=options.timeout,
            deadline=options.deadline,  # the page's: a robots.txt may not hold a host longer
            retries=0,  # a failure means disallow-all for the run; no need to insist
            max_redirects=ROBOTS_MAX_REDIRECTS,
            max_bytes=ROBOTS_MAX_BYTES,
            truncate=True,
            net=options.net,
        )
        self._policies: dict[str, RobotsPolicy] = {}
        self._loading: dict[str, asyncio.Future[RobotsPolicy]] = {}
        self.fetches = 0

    async def policy(self, host: str) -> RobotsPolicy:
        """The policy of `host` (a `host_key`), fetching robots.txt the first time."""
        if host in self._policies:
            return self._policies[host]
        if host not in self._loading:
            self._loading[host] = asyncio.ensure_future(self._load(host))
        return await asyncio.shield(self._loading[host])

    async def _load(self, host: str) -> RobotsPolicy:
        self.fetches += 1
        result = await fetch(self.session, f"{host}/robots.txt", self.options)
        policy = policy_from_response(result.status, result.error, result.body)
        self._policies[host] = policy
        del self._loading[host]
        return policy

    def cached(self, host: str) -> RobotsPolicy | None:
        """The policy of `host` if already known, without fetching."""
        return self._policies.get(host)

    def cached_allowed(self, url: str) -> bool | None:
        """`allowed(url)` if the host's policy is known, else None (nothing fetched)."""
        known = self._policies.get(host_key(url))
        return None if known is None else known.allowed(url, self.user_agent)

    async def allowed(self, url: str) -> bool:
        """May `url` be fetched by our user agent?"""
        known = await self.policy(host_key(url))
        return known.allowed(url, self.user_agent)

    async def crawl_delay(self, host: str) -> float | None:
        """The Crawl-delay (seconds) robots.txt asks of our user agent, if any."""
        known = await self.policy(host)
        return known.crawl_delay(self.user_agent)
