from __future__ import annotations

import asyncio
import json

from crawlers.frontier import FrontierEntry, HostFrontier


class FakeClock:
    """A settable clock so delays are checked without sleeping."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def frontier(clock: FakeClock | None = None, **overrides: float) -> HostFrontier:
    settings: dict = {"max_depth": 2, "max_pages_per_host": 3, "per_host_connections": 2}
    settings.update(overrides)
    return HostFrontier(**settings, clock=clock or FakeClock())


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
    f.release(FrontierEntry("http://a.com/0", 0))
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
    dropped = f.set_crawl_delay("http://slow.com:80", 60.0)
    assert [e.url for e in dropped] == ["http://slow.com/0", "http://slow.com/1"]
    assert f.is_skipped("http://slow.com:80")
    assert f.add("http://slow.com/2", 0) == "crawl_delay_too_long"
    assert f.queued == 0


def test_next_entry_waits_for_delay_and_ends_when_empty() -> None:
    async def go() -> list[str]:
        f = HostFrontier(
            max_depth=5, max_pages_per_host=10, per_host_connections=1, per_host_delay=0.05
        )
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
    assert len(f.close()) == 2 and f.queued == 0
    assert asyncio.run(f.next_entry()) is None


def test_checkpoint_round_trip_is_plain_data() -> None:
    f = frontier(per_host_delay=0.25)
    for url in ("http://a.com/0", "http://a.com/1", "http://b.com/x"):
        f.mark_seen(url)
        f.add(url, 1)
    f.set_crawl_delay("http://a.com:80", 1.0)
    f.set_crawl_delay("http://z.com:80", 99.0)
    data = json.loads(json.dumps(f.to_dict()))
    g = HostFrontier.from_dict(data, max_depth=2, max_pages_per_host=3, per_host_connections=2)
    assert g.seen == f.seen and g.queued == 3
    assert g.hosts["http://a.com:80"].delay == 1.0 and g.is_skipped("http://z.com:80")
    assert g.to_dict() == f.to_dict()
    assert not g.mark_seen("http://a.com/0")
