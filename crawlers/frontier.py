"""The crawl frontier, partitioned by host: what to fetch next, and when.

Each host (`scheme://host:port`) has a FIFO queue, a connection cap, a delay between the
starts of two requests (the larger of the configured delay and its robots.txt
Crawl-delay) and a cap on pages. Links are added in the order pages are parsed, so each
host's queue is breadth-first. `next_entry` hands out the oldest URL of a host that has a
free connection and whose delay has elapsed, waiting when none is ready. An optional
global rate (`max_requests_per_second`) spaces the starts of all hosts' requests too.

Until a host's Crawl-delay is known (`set_crawl_delay`), it gets one request at a time,
so a slow robots.txt cannot let a burst through. Hosts asking for more than
`max_crawl_delay` are skipped and their URLs dropped.

The queues and the seen-set live in a `CrawlState` (SQLite, on disk): memory holds, per
host, its counters and at most `BUFFER` of its oldest queued URLs, so it stays bounded
however many URLs are queued or seen. An entry handed out stays queued on disk until
`done` removes it, in the same transaction as what its page added, so a crawl killed and
resumed (`resume`) fetches again only the pages that were in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from core.config import CrawlConfig
from crawlers.crawlstate import CrawlState
from crawlers.urls import host_key

DROP_MAX_DEPTH = "max_depth"
DROP_HOST_CAP = "max_pages_per_host"
DROP_CRAWL_DELAY = "crawl_delay_too_long"
BUFFER = 8  # queued URLs of one host held in memory; the rest wait on disk


@dataclass
class FrontierEntry:
    """A URL waiting to be fetched, with its link distance from a seed and its queue row."""

    url: str
    depth: int
    row: int = 0


@dataclass
class HostSlot:
    """The queue and manners of one host."""

    buffer: deque[FrontierEntry] = field(default_factory=deque)  # its oldest queued URLs
    on_disk: int = 0  # queued rows not in `buffer`
    loaded_to: int = 0  # id of the last row moved into `buffer`
    added: int = 0  # URLs ever queued for this host (the per-host page cap counts these)
    delay: float = 0.0
    delay_known: bool = False
    skipped: bool = False  # Crawl-delay over the maximum: nothing more from this host
    in_flight: int = 0
    next_start: float = 0.0  # clock reading before which no request may start

    @property
    def queued(self) -> int:
        return len(self.buffer) + self.on_disk


@dataclass(frozen=True)
class FrontierLimits:
    """The caps and manners a frontier applies (from a `CrawlConfig`: `from_config`)."""

    max_depth: int
    max_pages_per_host: int
    per_host_connections: int
    per_host_delay: float = 0.0
    max_crawl_delay: float = 30.0
    max_requests_per_second: float = 0.0

    @classmethod
    def from_config(cls, config: CrawlConfig) -> FrontierLimits:
        return cls(
            max_depth=config.max_depth,
            max_pages_per_host=config.max_pages_per_host,
            per_host_connections=config.per_host_connections,
            per_host_delay=config.per_host_delay,
            max_crawl_delay=config.max_crawl_delay,
            max_requests_per_second=config.max_requests_per_second,
        )


class HostFrontier:
    """Host-partitioned queue with a seen-set, depth and per-host caps, and politeness."""

    def __init__(
        self,
        limits: FrontierLimits,
        state: CrawlState | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_depth = limits.max_depth
        self.max_pages_per_host = limits.max_pages_per_host
        self.per_host_connections = limits.per_host_connections
        self.per_host_delay = limits.per_host_delay
        self.max_crawl_delay = limits.max_crawl_delay
        # 0: no global cap; else the least time between two starts, whatever their hosts
        rate = limits.max_requests_per_second
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.next_global_start = 0.0
        self.clock = clock
        self.state = state or CrawlState(":memory:")  # in memory: nothing to resume
        self.hosts: dict[str, HostSlot] = {}
        self.taken: dict[int, FrontierEntry] = {}  # handed out, not yet released
        self._changed = asyncio.Event()
        self._closed = False

    def resume(self) -> int:
        """Take up the queue a killed crawl left on disk; returns how many URLs it holds
        (the pages that were in flight among them)."""
        queued = self.state.queued_by_host()
        for host, count in queued.items():
            self.slot(host).on_disk = count
        return sum(queued.values())

    def slot(self, host: str) -> HostSlot:
        """The slot of `host`, made (with its counts from disk) the first time."""
        found = self.hosts.get(host)
        if found is None:
            added, skipped = self.state.host(host)
            found = HostSlot(delay=self.per_host_delay, added=added, skipped=skipped)
            self.hosts[host] = found
        return found

    # ------------------------------------------------------------ adding

    def mark_seen(self, url: str) -> bool:
        """Record `url` (normalised) as seen; False if it already was."""
        return self.state.mark_seen(url)

    def add(self, url: str, depth: int) -> str | None:
        """Queue a seen URL; returns why it was not queued, or None."""
        if depth > self.max_depth:
            return DROP_MAX_DEPTH
        host = host_key(url)
        slot = self.slot(host)
        if slot.skipped:
            return DROP_CRAWL_DELAY
        if slot.added >= self.max_pages_per_host:
            return DROP_HOST_CAP
        slot.added += 1
        self.state.set_host(host, slot.added, slot.skipped)
        self.state.push(host, url, depth)
        slot.on_disk += 1
        self._changed.set()
        return None

    def set_crawl_delay(self, host: str, crawl_delay: float | None) -> int:
        """Apply a host's robots.txt Crawl-delay (usually just after its first entry was
        handed out: the delay then counts from that request). If it is over the maximum
        the host is skipped: its queued entries are removed; returns how many."""
        slot = self.slot(host)
        slot.delay_known = True
        if crawl_delay is not None and crawl_delay > self.max_crawl_delay:
            slot.skipped = True
            self.state.set_host(host, slot.added, True)
            dropped = self.state.remove_queued(host, self._taken_rows())
            slot.buffer.clear()
            slot.on_disk = 0
            self._changed.set()
            return dropped
        slot.delay = max(self.per_host_delay, crawl_delay or 0.0)
        if slot.in_flight:  # the request being admitted starts now; the delay runs from it
            slot.next_start = max(slot.next_start, self.clock() + slot.delay)
        self._changed.set()
        return 0

    def delay_known(self, host: str) -> bool:
        slot = self.hosts.get(host)
        return slot is not None and slot.delay_known

    def is_skipped(self, host: str) -> bool:
        return self.slot(host).skipped

    # ------------------------------------------------------------ handing out

    @property
    def queued(self) -> int:
        return sum(slot.queued for slot in self.hosts.values())

    @property
    def in_flight(self) -> int:
        return len(self.taken)

    def _taken_rows(self) -> list[int]:
        return list(self.taken)

    def close(self) -> int:
        """Stop handing out; removes every entry still queued and returns how many."""
        self._closed = True
        dropped = self.state.remove_queued(None, self._taken_rows())
        for slot in self.hosts.values():
            slot.buffer.clear()
            slot.on_disk = 0
        self._changed.set()
        return dropped

    def _capacity(self, slot: HostSlot) -> int:
        return self.per_host_connections if slot.delay_known else 1

    def take_ready(self) -> tuple[FrontierEntry | None, float | None]:
        """The next entry that may start now (and book it), else how long until one may
        (None: nothing queued that could become ready without a release)."""
        now = self.clock()
        if self.next_global_start > now and any(
            slot.queued and slot.in_flight < self._capacity(slot) for slot in self.hosts.values()
        ):
            return None, self.next_global_start - now
        wait: float | None = None
        best: tuple[float, str] | None = None
        for host, slot in self.hosts.items():
            if not slot.queued or slot.in_flight >= self._capacity(slot):
                continue
            if slot.next_start > now:
                pause = slot.next_start - now
                wait = pause if wait is None else min(wait, pause)
            elif best is None or slot.next_start < best[0]:
                best = (slot.next_start, host)  # the host that waited longest goes first
        if best is None:
            return None, wait
        slot = self.hosts[best[1]]
        slot.in_flight += 1
        slot.next_start = now + slot.delay
        self.next_global_start = now + self.interval
        entry = self._pop(best[1], slot)
        self.taken[entry.row] = entry
        return entry, None

    def _pop(self, host: str, slot: HostSlot) -> FrontierEntry:
        """The oldest queued entry of `host`, refilling its buffer from disk when empty."""
        if not slot.buffer:
            rows = self.state.load(host, slot.loaded_to, BUFFER)
            slot.buffer.extend(FrontierEntry(url, depth, row) for row, url, depth in rows)
            slot.on_disk -= len(rows)
            slot.loaded_to = rows[-1][0]
        return slot.buffer.popleft()

    async def next_entry(self) -> FrontierEntry | None:
        """Wait for the next entry that may start; None once nothing is left to hand out
        (queues empty and nothing in flight that could add more, or closed)."""
        while not self._closed:
            entry, wait = self.take_ready()
            if entry is not None:
                return entry
            if wait is None and self.in_flight == 0:
                return None
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=wait)
        return None

    def release(self, entry: FrontierEntry) -> None:
        """The request for `entry` has finished; its host's connection is free again. Its
        row stays queued on disk until `done`."""
        slot = self.hosts[host_key(entry.url)]
        slot.in_flight -= 1
        self.taken.pop(entry.row, None)
        self._changed.set()

    def done(self, entry: FrontierEntry) -> None:
        """`entry` is dealt with: its queue row goes (at the caller's next commit)."""
        self.state.remove(entry.row)
