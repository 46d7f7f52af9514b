"""Worldwide curation (MetaCLIP 2) on the sandbox: what balancing does per language.

One sandbox crawl with captions in seven languages (half English), curated twice: in
English mode (the peer: English only, one t) and in worldwide mode (an entry list and a t
per language). Reported, in runs/bench/worldwide.json and the note: pairs per language
before and after balancing, the derived t per language, and MetaCLIP's expected selected
size against the actual one.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from bench.common import BENCH_DIR, BenchResult, timed
from core.config import load_config
from core.io import read_json, write_json
from core.layout import RunLayout
from pipeline.stages.crawl import run_crawl
from pipeline.stages.curate import run_curate

LANGUAGES = "['en','fr','de','es','it','nl','pt']"
SETTINGS = [
    f"sandbox.languages={LANGUAGES}", "sandbox.heldout_per_class=1", "crawl.max_pages=1000",
    "crawl.per_host_delay=0", "curate.balance_threshold=20",
]  # fmt: skip


def curated(workdir: Path, mode: str) -> tuple[int, float]:
    config = load_config(None, [f"workdir='{workdir}'", *SETTINGS, f"curate.mode='{mode}'"])
    stats, seconds = timed(lambda: run_curate(config, quiet=True))
    return stats.kept, seconds


def summary_lines(report: dict[str, Any]) -> list[str]:
    lines = [f"p (English tail fraction at t_en) = {report['tail_fraction']:.3f}"]
    for code, counts in report["languages"].items():
        lines.append(f"{code}: t={counts['t']} before={counts['before']} after={counts['after']}")
    lines.append(f"expected {report['expected_selected']:.1f}, selected {report['selected']}")
    return lines


def run() -> BenchResult:
    root = BENCH_DIR / "worldwide"
    shutil.rmtree(root, ignore_errors=True)
    english_dir, world_dir = root / "english", root / "worldwide"
    run_crawl(load_config(None, [f"workdir='{world_dir}'", *SETTINGS]), quiet=True)
    shutil.copytree(world_dir, english_dir)
    english, english_seconds = curated(english_dir, "english")
    world, world_seconds = curated(world_dir, "worldwide")
    report = read_json(str(Path(RunLayout(str(world_dir)).curate_dir) / "worldwide.json"))
    write_json(BENCH_DIR / "worldwide.json", {"english_selected": english, **report})
    return BenchResult(
        name="worldwide curation",
        unit="selected pairs",
        items=world,
        peer=f"english mode ({english} pairs)",
        peer_seconds=english_seconds,
        ours_seconds=world_seconds,
        note="; ".join(summary_lines(report)),
    )
