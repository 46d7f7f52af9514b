"""The run report: what each stage saw, kept and dropped (by reason), and the training result.

Built only from the files the stages leave on disk (`<stage>_stats.json`, `train/results.json`),
so it can be printed for any run, finished or not, on any machine that has the folder. The
text goes to `report.txt`, the figures to `report.json`, and the page with plots and a
gallery (`pipeline.report_html`) to `report.html`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from core import storage
from core.io import read_json, write_json, write_text
from core.layout import RunLayout
from core.stats import StageStats

log = logging.getLogger("pipeline.report")

STAGES = ("crawl", "curate", "shards")


def collect(layout: RunLayout) -> dict[str, Any]:
    """Everything the report shows, as one JSON-able dict."""
    data: dict[str, Any] = {"workdir": str(layout.root), "stages": {}}
    for stage in STAGES:
        path = layout.stats_file(stage)
        if storage.exists(path):
            data["stages"][stage] = StageStats.load(path).to_dict()
    results = storage.join(layout.train_dir, "results.json")
    if storage.exists(results):
        data["train"] = read_json(results)
    return data


def _reasons(dropped: dict[str, int], limit: int = 12) -> list[str]:
    items = sorted(dropped.items(), key=lambda kv: (-kv[1], kv[0]))
    lines = [f"      {n:>7,}  {reason}" for reason, n in items[:limit]]
    if len(items) > limit:
        rest = sum(n for _, n in items[limit:])
        lines.append(f"      {rest:>7,}  ({len(items) - limit} other reasons)")
    return lines


def _stage_lines(name: str, stats: dict[str, Any]) -> list[str]:
    heading = {
        "crawl": "pages considered {seen:,} -> fetched and parsed {kept:,}",
        "curate": "candidates {seen:,} -> selected {kept:,}",
        "shards": "selected {seen:,} -> written to shards {kept:,}",
    }[name].format(**stats)
    lines = [f"  {name:<7} {heading}   ({stats['seconds']:.1f} s)"]
    if stats["dropped"]:
        lines.append("    dropped, by reason:")
        lines += _reasons(stats["dropped"])
    counts = stats.get("counts", {})
    if counts:
        shown = ", ".join(f"{k} {v:,}" for k, v in counts.items())
        lines.append(f"    counts: {shown}")
    return lines


def _train_lines(train: dict[str, Any]) -> list[str]:
    loss = train.get("final_loss")
    loss_text = f"{loss:.3f}" if isinstance(loss, int | float) else "n/a"
    lines = [
        f"  train   steps {train.get('steps', 0):,}, samples seen {train.get('samples_seen', 0):,},"
        f" final loss {loss_text}, {train.get('samples_per_second', 0.0):.0f} samples/s"
        f"   ({train.get('seconds', 0.0):.1f} s)"
    ]
    zero_shot = train.get("zero_shot")
    if zero_shot:
        lines.append(
            f"    zero-shot on {zero_shot['n']:,} held-out images:"
            f" top-1 {zero_shot['top1']:.1%}, top-5 {zero_shot.get('top5', 0.0):.1%}"
            f" (chance {zero_shot['chance']:.1%})"
        )
    return lines


def render(data: dict[str, Any]) -> str:
    lines = [f"OpenWIT run report: {data['workdir']}"]
    for name in STAGES:
        if name in data["stages"]:
            lines += _stage_lines(name, data["stages"][name])
        else:
            lines.append(f"  {name:<7} not run")
    if "train" in data:
        lines += _train_lines(data["train"])
    else:
        lines.append("  train   not run")
    return "\n".join(lines) + "\n"


def write_report(workdir: str | Path) -> str:
    """Write report.json, report.txt and report.html into the run folder; return the text."""
    from pipeline.report_html import render_html  # reads tars and images: loaded on use

    layout = RunLayout(workdir)
    data = collect(layout)
    if not data["stages"] and "train" not in data:
        log.warning("%s holds no finished stage: the report is empty", layout.root)
    text = render(data)
    write_json(layout.at("report.json"), data)
    write_text(layout.at("report.txt"), text)
    try:
        page = render_html(layout, data)
    except (OSError, ValueError) as exc:  # an unreadable shard or part: the text still stands
        log.error("report.html not written: %s", exc)
        return text
    write_text(layout.at("report.html"), page)
    log.info("report written to %s", layout.at("report.html"))
    return text
