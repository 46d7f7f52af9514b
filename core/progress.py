"""Progress of a stage: a tqdm bar on a terminal, one log line per finished part elsewhere.

    with Progress("curate", "screen", parts=12) as progress:
        progress.part_done(rows=250_000, dropped=41_000)
        # or, over an executor's (position, info) results:
        infos = progress.drain(executor.map(task, parts))

The bar shows parts and rows done, rows per second and the drops so far; without a
terminal (CI, a log file, `--quiet`) each finished part is one INFO line instead.
`track(items, stage, step)` does the same over a plain sequence (one item a part).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar

log = logging.getLogger("pipeline.progress")
T = TypeVar("T")


class Progress:
    def __init__(self, stage: str, step: str, parts: int, quiet: bool = False) -> None:
        self.stage = stage
        self.step = step
        self.parts = parts
        self.done = 0
        self.rows = 0
        self.dropped = 0
        self.started = time.perf_counter()
        self.bar: Any = None
        if not quiet and sys.stderr.isatty() and log.isEnabledFor(logging.INFO):
            from tqdm import tqdm

            self.bar = tqdm(total=parts, desc=f"{stage}: {step}", unit="part", leave=False)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()

    def part_done(self, rows: int = 0, dropped: int = 0, skipped: bool = False) -> None:
        """One part finished (or found finished, `skipped`), with its rows and drops."""
        self.done += 1
        self.rows += rows
        self.dropped += dropped
        rate = self.rows / max(time.perf_counter() - self.started, 1e-9)
        if self.bar is not None:
            self.bar.set_postfix(rows=f"{self.rows:,}", rows_s=f"{rate:,.0f}", dropped=self.dropped)
            self.bar.update(1)
        elif not skipped and not self.rows and not self.dropped:
            log.info("%s: %s part %d/%d done", self.stage, self.step, self.done, self.parts)
        elif not skipped:
            log.info(
                "%s: %s part %d/%d done (%s rows so far, %s rows/s, %s dropped)",
                self.stage, self.step, self.done, self.parts,
                f"{self.rows:,}", f"{rate:,.0f}", f"{self.dropped:,}",
            )  # fmt: skip

    def drain(self, results: Iterable[tuple[int, dict[str, Any]]]) -> list[dict[str, Any]]:
        """Consume (task position, info) results as they come, each a finished part (its
        `rows` and `dropped` counts shown); return the infos in task order."""
        found: dict[int, dict[str, Any]] = {}
        for position, info in results:
            found[position] = info
            self.part_done(int(info.get("rows", 0)), sum(info.get("dropped", {}).values()))
        return [found[k] for k in sorted(found)]


def track(items: Sequence[T], stage: str, step: str, quiet: bool = False) -> Iterator[T]:
    """Yield `items`, each counted as a finished part once the caller asks for the next."""
    with Progress(stage, step, len(items), quiet) as progress:
        for item in items:
            yield item
            progress.part_done()
