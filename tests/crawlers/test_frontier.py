from __future__ import annotations

import asyncio
from pathlib import Path

from crawlers.crawlstate import CrawlState
from crawlers.frontier import BUFFER, FrontierLimits, HostFrontier


class FakeClock:
    """A settable clock so delays are checked without sleeping."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def frontier(
    clock: FakeClock | None = None, state: CrawlState | None = None, **overrides: float
) -> HostFrontier:
    settings: dict = {"max_depth": 2, "max_pages_per_host": 3, "per_host_connections": 2}
    settings.update(overrides)
    return HostFrontier(FrontierLimits(**settings), state, clock=clock or FakeClock())


def test_seen_set_depth_and_host_caps() -> None:
    f = frontier()
    assert f.mark_seen("http://a.com/1") and not f.mark_seen("http://a.com/1")
    assert f.add("http://a.com/deep", depth=3) == "max_depth"
    assert [f.add(f"http://a.com/{i}", depth=1) for i in range(4)] == [
        None,
        None,
        None,
        "max_pages_per_host",
    ]
    assert f.add("http://b.com/1", depth=0) is None
    assert f.queued == 4


def test_hands_out_round_robin_within_connection_cap() -> None:
    clock = FakeClock()
    f = frontier(clock)
    for i in range(3):
        f.add(f"http://a.com/{i}", 0)
    f.add("http://b.com/0", 0)
    f.set_crawl_delay("http://a.com:80", None)
    f.set_crawl_delay("http://b.com:80", None)
    taken = [f.take_ready()[0] for _ in range(4)]
    urls = [e.url for e in taken if e is not None]
    assert sorted(urls) == ["http://a.com/0", "http://a.com/1", "http://b.com/0"]
    assert taken[3] is None  # a.com is at its 2 connections, b.com is empty
    first = next(e for e in taken if e is not None and e.url == "http://a.com/0")
    f.release(first)
    entry, _ = f.take_ready()
    assert entry is not None and entry.url == "http://a.com/2"


def test_unknown_delay_means_one_connection() -> None:
    f = frontier()
    f.add("http://a.com/0", 0)
    f.add("http://a.com/1", 0)
    assert f.take_ready()[0] is not None
    assert f.take_ready() == (None, None)  # waits for a release, not for time


def test_delay_is_the_larger_of_config_and_crawl_delay() -> None:
    clock = FakeClock()
    f = frontier(clock, per_host_delay=0.5, per_host_connections=4)
    for i in range(3):
        f.add(f"http://a.com/{i}", 0)
    f.set_crawl_delay("http://a.com:80", 2.0)
    first, _ = f.take_ready()
    assert first is not None
    entry, wait = f.take_ready()
    assert entry is None and wait == 2.0
    clock.now += 1.9
    assert f.take_ready()[0] is None
    clock.now += 0.1
    assert f.take_ready()[0] is not None
    g = frontier(clock, per_host_delay=0.5)
    g.add("http://c.com/0", 0)
    g.set_crawl_delay("http://c.com:80", 0.1)
    assert g.hosts["http://c.com:80"].delay == 0.5


def test_crawl_delay_over_the_maximum_skips_the_host() -> None:
    f = frontier(max_crawl_delay=30.0)
    f.add("http://slow.com/0", 0)
    f.add("http://slow.com/1", 0)
    assert f.set_crawl_delay("http://slow.com:80", 60.0) == 2
    assert f.is_skipped("http://slow.com:80")
    assert f.add("http://slow.com/2", 0) == "crawl_delay_too_long"
    assert f.queued == 0


def test_next_entry_waits_for_delay_and_ends_when_empty() -> None:
    async def go() -> list[str]:
        f = HostFrontier(FrontierLimits(5, 10, 1, per_host_delay=0.05))
        f.add("http://a.com/0", 0)
        f.add("http://a.com/1", 0)
        f.set_crawl_delay("http://a.com:80", None)
        got = []
        while (entry := await f.next_entry()) is not None:
            got.append(entry.url)
            f.release(entry)
        return got

    loop = asyncio.new_event_loop()
    start = loop.time()
    assert loop.run_until_complete(go()) == ["http://a.com/0", "http://a.com/1"]
    assert loop.time() - start >= 0.05
    loop.close()


def test_close_returns_what_is_left() -> None:
    f = frontier()
    f.add("http://a.com/0", 0)
    f.add("http://b.com/0", 0)
    assert f.close() == 2 and f.queued == 0
    assert asyncio.run(f.next_entry()) is None


def test_queue_and_seen_set_survive_on_disk(tmp_path: Path) -> None:
    """What a killed crawl leaves: the seen-set, per-host counts and skips, and every entry
    not yet done (in flight or queued); a new frontier on the same file takes them up."""
    state = CrawlState(tmp_path / "crawl.db")
    f = frontier(state=state, max_pages_per_host=100)
    urls = [f"http://a.com/{i}" for i in range(BUFFER * 3)] + ["http://b.com/x"]
    for url in urls:
        assert f.mark_seen(url) and f.add(url, 1) is None
    f.set_crawl_delay("http://a.com:80", None)
    f.set_crawl_delay("http://b.com:80", None)
    f.add("http://z.com/0", 0)
    f.set_crawl_delay("http://z.com:80", 99.0)  # skipped
    done, in_flight = f.take_ready()[0], f.take_ready()[0]
    assert done is not None and in_flight is not None
    f.release(done)
    f.done(done)
    state.commit()
    f.add("http://a.com/late", 1)  # never committed: lost with the killed process
    state.db.close()

    again = CrawlState(tmp_path / "crawl.db")
    g = frontier(state=again, max_pages_per_host=100)
    assert g.resume() == len(urls) - 1  # the one in flight is queued again
    assert not g.mark_seen("http://a.com/0") and g.mark_seen("http://a.com/late")
    assert g.is_skipped("http://z.com:80") and g.add("http://z.com/1", 0) == "crawl_delay_too_long"
    assert g.hosts["http://a.com:80"].added == BUFFER * 3
    g.set_crawl_delay("http://a.com:80", None)
    g.set_crawl_delay("http://b.com:80", None)
    handed = []
    while (entry := g.take_ready()[0]) is not None:
        handed.append(entry.url)
        g.release(entry)
        g.done(entry)
    assert sorted(handed) == sorted(set(urls) - {done.url})
    assert in_flight.url in handed and g.queued == 0
    in_order = [u for u in urls if "a.com" in u and u != done.url]
    assert [u for u in handed if "a.com" in u] == in_order  # oldest first, across buffers


def test_memory_holds_a_few_urls_per_host_however_many_are_queued() -> None:
    f = frontier(max_pages_per_host=100_000)
    for i in range(5_000):
        f.mark_seen(f"http://a.com/{i}")
        assert f.add(f"http://a.com/{i}", 1) is None
    slot = f.hosts["http://a.com:80"]
    assert f.queued == 5_000 and len(slot.buffer) == 0  # all on disk
    f.set_crawl_delay("http://a.com:80", None)
    entry, _ = f.take_ready()
    assert entry is not None and entry.url == "http://a.com/0"
    assert len(slot.buffer) == BUFFER - 1 and f.queued == 4_999
    assert not hasattr(f, "seen") and f.state.seen_count() == 5_000  # the seen-set too
