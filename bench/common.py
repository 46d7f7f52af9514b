"""What every benchmark shares: a result row, timing, the table, the shared data."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parent.parent
BENCH_DIR = REPO / "runs" / "bench"
T = TypeVar("T")


@dataclass
class BenchResult:
    name: str  # what was measured
    unit: str  # what `items` counts
    items: int
    peer: str  # the peer's name
    peer_seconds: float
    ours_seconds: float
    note: str = ""

    @property
    def speedup(self) -> float:
        return self.peer_seconds / self.ours_seconds if self.ours_seconds else float("inf")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["speedup"] = round(self.speedup, 2)
        data["peer_per_second"] = round(self.items / self.peer_seconds, 1)
        data["ours_per_second"] = round(self.items / self.ours_seconds, 1)
        return data


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def cpu_timed(fn: Callable[[], T]) -> tuple[T, float]:
    """`fn()` and the CPU seconds this process spent in it: one core's time, which other
    users of a shared machine disturb less than the wall clock."""
    started = time.process_time()
    result = fn()
    return result, time.process_time() - started


def shared_data() -> Path | None:
    path = Path(os.environ.get("OPENWIT_SHARED_DATA", REPO.parent / "shared" / "data"))
    return path if path.is_dir() else None


def render_table(results: list[BenchResult]) -> str:
    lines = [
        f"{'benchmark':<28} {'items':>7} {'peer':<26} {'peer/s':>9} {'ours/s':>9} {'ratio':>7}",
    ]
    for r in results:
        lines.append(
            f"{r.name:<28} {r.items:>7,} {r.peer:<26} {r.items / r.peer_seconds:>9,.1f}"
            f" {r.items / r.ours_seconds:>9,.1f} {r.speedup:>6.2f}x"
        )
        if r.note:
            lines.append(f"    {r.note}")
    return "\n".join(lines)
