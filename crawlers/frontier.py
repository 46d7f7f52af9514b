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

The state a checkpoint would need (queues, seen-set, per-host counts and delays) is plain
data: `to_dict` / `from_dict`, with semaphores and clock readings rebuilt. Nothing
checkpoints a crawl yet: a killed crawl starts over (the crawl stage is resumed whole).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from crawlers.urls import host_key

DROP_MAX_DEPTH = "max_depth"
DROP_HOST_CAP = "max_pages_per_host"
DROP_CRAWL_DELAY = "crawl_delay_too_long"


@dataclass
class FrontierEntry:
    """A URL waiting to be fetched, with its link distance from a seed."""

    url: str
    depth: int


@dataclass
class HostSlot:
    """The queue and manners of one host."""

    queue: deque[FrontierEntry] = field(default_factory=deque)
    added: int = 0  # URLs ever queued for this host (the per-host page cap counts these)
    delay: float = 0.0
    delay_known: bool = False
    skipped: bool = False  # Crawl-delay over the maximum: nothing more from this host
    in_flight: int = 0
    next_start: float = 0.0  # clock reading before which no request may start


class HostFrontier:
    """Host-partitioned queue with a seen-set, depth and per-host caps, and politeness."""

    def __init__(
        self,
        max_depth: int,
        max_pages_per_host: int,
        per_host_connections: int,
        per_host_delay: float = 0.0,
        max_crawl_delay: float = 30.0,
        max_requests_per_second: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_depth = max_depth
        self.max_pages_per_host = max_pages_per_host
        self.per_host_connections = per_host_connections
        self.per_host_delay = per_host_delay
        self.max_crawl_delay = max_crawl_delay
        # 0: no global cap; else the least time between two starts, whatever their hosts
        self.interval = 1.0 / max_requests_per_second if max_requests_per_second > 0 else 0.0
        self.next_global_start = 0.0
        self.clock = clock
        self.seen: set[str] = set()
        self.hosts: dict[str, HostSlot] = {}
        self._changed = asyncio.Event()
        self._closed = False

    # ------------------------------------------------------------ adding

    def mark_seen(self, url: str) -> bool:
        """Record `url` (normalised) as seen; False if it already was."""
        if url in self.seen:
            return False
        self.seen.add(url)
        return True

    def add(self, url: str, depth: int) -> str | None:
        """Queue a seen URL; returns why it was not queued, or None."""
        if depth > self.max_depth:
            return DROP_MAX_DEPTH
        slot = self.hosts.setdefault(host_key(url), HostSlot(delay=self.per_host_delay))
        if slot.skipped:
            return DROP_CRAWL_DELAY
        if slot.added >= self.max_pages_per_host:
            return DROP_HOST_CAP
        slot.added += 1
        slot.queue.append(FrontierEntry(url, depth))
        self._changed.set()
        return None

    def set_crawl_delay(self, host: str, crawl_delay: float | None) -> list[FrontierEntry]:
        """Apply a host's robots.txt Crawl-delay (usually just after its first entry was
        handed out: the delay then counts from that request). If it is over the maximum
        the host is skipped: its queued entries are removed and returned for the caller
        to count."""
        slot = self.hosts.setdefault(host, HostSlot(delay=self.per_host_delay))
        slot.delay_known = True
        if crawl_delay is not None and crawl_delay > self.max_crawl_delay:
            slot.skipped = True
            dropped = list(slot.queue)
            slot.queue.clear()
            self._changed.set()
            return dropped
        slot.delay = max(self.per_host_delay, crawl_delay or 0.0)
        if slot.in_flight:  # the request being admitted starts now; the delay runs from it
            slot.next_start = max(slot.next_start, self.clock() + slot.delay)
        self._changed.set()
        return []

    def delay_known(self, host: str) -> bool:
        slot = self.hosts.get(host)
        return slot is not None and slot.delay_known

    def is_skipped(self, host: str) -> bool:
        slot = self.hosts.get(host)
        return slot is not None and slot.skipped

    # ------------------------------------------------------------ handing out

    @property
    def queued(self) -> int:
        return sum(len(slot.queue) for slot in self.hosts.values())

    @property
    def in_flight(self) -> int:
        return sum(slot.in_flight for slot in self.hosts.values())

    def close(self) -> list[FrontierEntry]:
        """Stop handing out; returns (and removes) every entry still queued."""
        self._closed = True
        left = [entry for slot in self.hosts.values() for entry in slot.queue]
        for slot in self.hosts.values():
            slot.queue.clear()
        self._changed.set()
        return left

    def _capacity(self, slot: HostSlot) -> int:
        return self.per_host_connections if slot.delay_known else 1

    def take_ready(self) -> tuple[FrontierEntry | None, float | None]:
        """The next entry that may start now (and book it), else how long until one may
        (None: nothing queued that could become ready without a release)."""
        now = self.clock()
        if self.next_global_start > now and any(
            slot.queue and slot.in_flight < self._capacity(slot) for slot in self.hosts.values()
        ):
            return None, self.next_global_start - now
        wait: float | None = None
        best: tuple[float, str] | None = None
        for host, slot in self.hosts.items():
            if not slot.queue or slot.in_flight >= self._capacity(slot):
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
        return slot.queue.popleft(), None

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
        """The request for `entry` has finished; its host's connection is free again."""
        slot = self.hosts[host_key(entry.url)]
        slot.in_flight -= 1
        self._changed.set()

    # ------------------------------------------------------------ checkpoint

    def to_dict(self) -> dict[str, Any]:
        """Plain data for a checkpoint; in-flight entries are the caller's to re-add."""
        return {
            "seen": sorted(self.seen),
            "hosts": {
                host: {
                    "queue": [[e.url, e.depth] for e in slot.queue],
                    "added": slot.added,
                    "delay": slot.delay,
                    "delay_known": slot.delay_known,
                    "skipped": slot.skipped,
                }
                for host, slot in self.hosts.items()
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], **settings: Any) -> HostFrontier:
        """A frontier restored from `to_dict`, with caps and delays from `settings`."""
        frontier = cls(**settings)
        frontier.seen = set(data["seen"])
        for host, item in data["hosts"].items():
            frontier.hosts[host] = HostSlot(
                queue=deque(FrontierEntry(url, depth) for url, depth in item["queue"]),
                added=item["added"],
                delay=item["delay"],
                delay_known=item["delay_known"],
                skipped=item["skipped"],
            )
        return frontier
