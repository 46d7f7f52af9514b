from __future__ import annotations

from pathlib import Path

from core.io import write_json
from core.layout import RunLayout
from core.stats import StageStats
from pipeline.report import write_report


def test_report_lists_every_stage_and_reason(tmp_path: Path) -> None:
    layout = RunLayout(tmp_path)
    crawl = StageStats("crawl", seen=10, kept=8, seconds=1.5)
    crawl.drop("robots_disallowed", 2)
    crawl.save(layout.stats_file("crawl"))
    curate = StageStats("curate", seen=40, kept=25)
    for n, reason in enumerate(f"reason:{i:02d}" for i in range(15)):
        curate.drop(reason, n + 1)
    curate.save(layout.stats_file("curate"))
    write_json(
        layout.at("train", "results.json"),
        {"steps": 5, "samples_seen": 320, "final_loss": None, "samples_per_second": 50.0,
         "seconds": 6.4, "zero_shot": {"n": 48, "top1": 0.5, "top5": 0.9, "chance": 1 / 48}},
    )  # fmt: skip
    text = write_report(tmp_path)
    assert "pages considered 10 -> fetched and parsed 8" in text
    assert "2  robots_disallowed" in text
    assert "15  reason:14" in text and "(3 other reasons)" in text
    assert "shards  not run" in text
    assert "final loss n/a" in text
    assert "top-1 50.0%" in text and "(chance 2.1%)" in text
    assert (tmp_path / "report.txt").read_text() == text
    assert (tmp_path / "report.json").exists()
