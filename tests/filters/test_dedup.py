from __future__ import annotations

import random
import zlib
from pathlib import Path

import pyarrow.parquet as pq

from core.record import Pair
from filters.dedup import dedup, dedup_images, dedup_on, find_winners, mark_duplicates


def outcome(pairs: list[Pair]) -> list[tuple[str, str, str, str]]:
    """What dedup decided, independent of the order pairs came in."""
    return sorted((p.uid, p.page_url or "", p.sha256 or "", p.drop_reason or "") for p in pairs)


def sample_pairs() -> list[Pair]:
    return [
        Pair(url="http://img/a.jpg", caption="a dog on a beach", page_url="http://p/1"),
        Pair(url="http://img/a.jpg", caption="a dog on a beach", page_url="http://p/0"),
        Pair(url="http://img/a.jpg", caption="another caption here", page_url="http://p/2"),
        Pair(url="http://img/b.jpg", caption="a cat on a sofa", page_url=None),
        Pair(url="http://img/b.jpg", caption="a cat on a sofa", page_url="http://p/3"),
        Pair(url="http://img/c.jpg", caption="a lone heron"),
    ]


def test_url_duplicates_keep_smallest_uid() -> None:
    out = list(dedup(sample_pairs(), keys=("url",)))
    kept = [p for p in out if p.kept]
    assert sorted(p.url for p in kept) == [
        "http://img/a.jpg",
        "http://img/b.jpg",
        "http://img/c.jpg",
    ]
    for pair in kept:
        rivals = [q for q in out if q.url == pair.url]
        assert (pair.uid, pair.page_url or "") == min((q.uid, q.page_url or "") for q in rivals)
    assert all(p.drop_reason == "dedup:url" for p in out if not p.kept)
    assert len(out) == 6  # dropped pairs stay in the stream


def test_uid_duplicates_keep_smallest_page_url() -> None:
    out = list(dedup(sample_pairs(), keys=("uid",)))
    kept_pages = sorted(p.page_url or "" for p in out if p.kept)
    assert kept_pages == ["", "", "http://p/0", "http://p/2"]
    assert sum(p.drop_reason == "dedup:uid" for p in out) == 2


def test_independent_of_input_order() -> None:
    expected = outcome(list(dedup(sample_pairs(), keys=("url", "uid"))))
    rng = random.Random(7)
    for _ in range(20):
        shuffled = sample_pairs()
        rng.shuffle(shuffled)
        assert outcome(list(dedup(shuffled, keys=("url", "uid")))) == expected


def test_identical_pairs_keep_exactly_one() -> None:
    twins = [Pair(url="http://img/t.jpg", caption="twin pictures of a cat") for _ in range(3)]
    out = list(dedup(twins, keys=("uid",)))
    assert [p.kept for p in out] == [True, False, False]


def test_dropped_pairs_neither_win_nor_change() -> None:
    first, second = sorted(
        [Pair(url="http://img/a.jpg", caption=c) for c in ("one caption here", "two captions")],
        key=lambda p: p.uid,
    )
    smallest = first.dropped("text:junk")
    out = list(dedup([smallest, second], keys=("url",)))
    assert out[0] is smallest
    assert out[1] is second  # a dropped pair with a smaller rank does not knock it out


def test_partitioned_passes_match_one_pass() -> None:
    """Sharding by hash of the key value and running both passes per shard changes nothing."""
    rng = random.Random(3)
    pairs = [
        Pair(url=f"http://img/{rng.randrange(40)}.jpg", caption=f"caption {rng.randrange(5)} x y")
        for _ in range(300)
    ]
    whole = dedup_on(pairs, "url")
    parts: list[list[Pair]] = [[] for _ in range(4)]
    for pair in pairs:
        parts[zlib.crc32(pair.url.encode()) % 4].append(pair)
    partitioned = [
        p for part in parts for p in mark_duplicates(part, "url", find_winners(part, "url"))
    ]
    assert outcome(partitioned) == outcome(whole)
    assert sum(p.kept for p in whole) == len({p.url for p in pairs})


def test_dedup_images_on_sha256() -> None:
    pairs = [
        Pair(url=f"http://img/{i}.jpg", caption=f"picture number {i}", sha256=sha)
        for i, sha in enumerate(["aa", "bb", "aa", None, "aa"])
    ]
    out = list(dedup_images(pairs))
    kept_aa = [p for p in out if p.sha256 == "aa" and p.kept]
    assert len(kept_aa) == 1
    assert kept_aa[0].uid == min(p.uid for p in pairs if p.sha256 == "aa")
    assert [p.drop_reason for p in out].count("dedup:sha256") == 2
    assert out[3].kept  # not hashed yet: not judged


def test_real_urls(shared_data: Path) -> None:
    table = pq.read_table(shared_data / "alt_text/img2dataset-test_10000.parquet")
    rows = zip(table.column("URL").to_pylist(), table.column("TEXT").to_pylist(), strict=True)
    pairs = [Pair(url=url, caption=text or "") for url, text in rows]
    out = list(dedup(pairs, keys=("url", "uid")))
    assert sum(p.kept for p in out) == len({p.url for p in pairs})
    reversed_out = list(dedup(reversed(pairs), keys=("url", "uid")))
    assert outcome(reversed_out) == outcome(out)
