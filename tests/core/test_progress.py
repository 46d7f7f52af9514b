from __future__ import annotations

import logging

import pytest

from core.progress import Progress, track


def test_track_logs_one_line_per_item_off_a_terminal(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pipeline.progress")
    assert list(track(["a", "b", "c"], "shards", "index tars")) == ["a", "b", "c"]
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3
    assert lines[-1].startswith("shards: index tars part 3/3 done")


def test_parts_found_finished_are_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pipeline.progress")
    with Progress("curate", "screen", parts=2) as progress:
        progress.part_done(rows=10, skipped=True)
        progress.part_done(rows=5, dropped=2)
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == [
        "curate: screen part 2/2 done"
    ]
    assert "15 rows so far" in caplog.records[0].getMessage()
