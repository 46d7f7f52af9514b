"""Counters for a stage: rows in, rows kept, drops by reason, time taken.

Every stage fills one `StageStats`; the runner saves it as `<stage>_stats.json` next to the
stage's output and the report reads those files back. Stats from several workers merge by
adding, so a partitioned run reports the same totals as a single process.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.io import read_json, write_json
from core.record import Pair


@dataclass
class StageStats:
    stage: str
    seen: int = 0
    kept: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    counts: Counter[str] = field(default_factory=Counter)  # anything else worth counting
    seconds: float = 0.0

    def drop(self, reason: str, n: int = 1) -> None:
        self.dropped[reason] += n

    def count(self, name: str, n: int = 1) -> None:
        self.counts[name] += n

    def merge(self, other: StageStats) -> StageStats:
        self.seen += other.seen
        self.kept += other.kept
        self.dropped.update(other.dropped)
        self.counts.update(other.counts)
        self.seconds = max(self.seconds, other.seconds)
        return self

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "seen": self.seen,
            "kept": self.kept,
            "dropped": dict(sorted(self.dropped.items())),
            "counts": dict(sorted(self.counts.items())),
            "seconds": round(self.seconds, 3),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StageStats:
        return cls(
            stage=data["stage"],
            seen=int(data.get("seen", 0)),
            kept=int(data.get("kept", 0)),
            dropped=Counter(data.get("dropped", {})),
            counts=Counter(data.get("counts", {})),
            seconds=float(data.get("seconds", 0.0)),
        )

    def save(self, path: str | Path) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> StageStats:
        return cls.from_dict(read_json(path))


def tally(pairs: Iterable[Pair], stats: StageStats) -> Iterator[Pair]:
    """Pass pairs through, counting each as seen and as kept or dropped by its reason."""
    for pair in pairs:
        stats.seen += 1
        if pair.drop_reason is not None:
            stats.drop(pair.drop_reason)
        elif not pair.kept:
            stats.drop(f"{pair.status}")
        else:
            stats.kept += 1
        yield pair


class Timer:
    """`with Timer() as t: ...` then `t.seconds`."""

    def __init__(self) -> None:
        self.start = 0.0
        self.seconds = 0.0

    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start
