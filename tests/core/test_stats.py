from __future__ import annotations

from pathlib import Path

from core.record import STATUS_FAILED_DOWNLOAD, Pair
from core.stats import StageStats, tally


def test_tally_counts_every_reason(tmp_path: Path) -> None:
    pairs = [
        Pair(url="u1", caption="a b c"),
        Pair(url="u2", caption="a").dropped("text:too_short"),
        Pair(url="u3", caption="b").dropped("text:too_short"),
        Pair(url="u4", caption="a b c", status=STATUS_FAILED_DOWNLOAD),
    ]
    stats = StageStats("x")
    assert list(tally(pairs, stats)) == pairs
    assert (stats.seen, stats.kept) == (4, 1)
    assert stats.dropped == {"text:too_short": 2, STATUS_FAILED_DOWNLOAD: 1}
    stats.save(tmp_path / "s.json")
    assert StageStats.load(tmp_path / "s.json").to_dict() == stats.to_dict()


def test_merge_adds() -> None:
    a, b = StageStats("x", seen=2, kept=1), StageStats("x", seen=3, kept=3)
    a.drop("r")
    b.drop("r", 2)
    merged = a.merge(b)
    assert (merged.seen, merged.kept, merged.dropped["r"]) == (5, 4, 3)
