"""The whole chain on the sandbox web, through the CLI: crawl -> curate -> shards -> train.

One run (module-scoped, a couple of minutes on 2 cores) is checked against the sandbox's
ground truth: what must never reach the shards, the reasons every drop is counted under,
that the shards are real webdataset tars, and that the trained model beats chance.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import webdataset as wds

from core.config import load_config
from core.io import read_json, read_pairs, read_table
from core.layout import RunLayout
from sandbox.site import SandboxSite, SandboxTruth
from tests.conftest import run_cli

pytestmark = pytest.mark.slow

# The demo's settings, with a smaller training budget: in samples, so the run trains the
# same number of steps on a busy machine as on an idle one (100 steps of 64).
OVERRIDES = ["train.samples=6400", "sandbox.base_port=0"]

NEVER_IN_SHARDS = (
    "junk_alt",
    "short_alt",
    "no_alt",
    "non_english",
    "noai",
    "robots_disallowed",
    "bomb",
    "broken",
    "truncated",
    "http_error",
    "small",
    "aspect",
    "redirect_loop",
)


class DemoRun:
    def __init__(self, workdir: Path, result: subprocess.CompletedProcess[str], seconds: float):
        self.workdir = workdir
        self.layout = RunLayout(workdir)
        self.result = result
        self.seconds = seconds

    def stats(self, stage: str) -> dict[str, Any]:
        data: dict[str, Any] = read_json(self.layout.stats_file(stage))
        return data

    def truth(self) -> SandboxTruth:
        config = load_config(self.layout.config_file)
        base_urls = read_json(self.layout.ports_file)["base_urls"]
        return SandboxSite(config.sandbox).truth(base_urls)

    def samples(self) -> list[dict[str, Any]]:
        tars = sorted(str(p) for p in Path(self.layout.shards_dir).glob("*.tar"))
        dataset = wds.WebDataset(tars, shardshuffle=False).decode("pil")
        return list(dataset)


def demo_args(workdir: Path) -> list[str]:
    args = ["demo", "--config", "configs/demo.toml", "--workdir", str(workdir)]
    for item in OVERRIDES:
        args += ["--set", item]
    return args


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    workdir = tmp_path_factory.mktemp("e2e") / "run"
    started = time.perf_counter()
    result = run_cli(*demo_args(workdir), timeout=900)
    seconds = time.perf_counter() - started
    assert result.returncode == 0, result.stderr[-3000:]
    return DemoRun(workdir, result, seconds)


def test_report_is_printed(demo: DemoRun) -> None:
    out = demo.result.stdout
    for line in ("pages considered", "candidates", "written to shards", "zero-shot"):
        assert line in out, out
    assert (demo.workdir / "report.txt").read_text() == out


def test_every_shard_opens_with_webdataset(demo: DemoRun) -> None:
    samples = demo.samples()
    sizes = read_json(demo.layout.at("shards", "sizes.json"))
    assert len(samples) == sum(sizes.values()) == demo.stats("shards")["kept"] > 500
    for sample in samples[:50]:
        assert sample["jpg"].size[0] > 0
        meta = sample["json"]
        assert sample["txt"] == meta["caption"]
        assert meta["status"] == "success"


def test_bad_items_never_reach_the_shards(demo: DemoRun) -> None:
    truth = demo.truth()
    written = {s["json"]["url"] for s in demo.samples()}
    for kind in NEVER_IN_SHARDS:
        leaked = written & truth.kinds.get(kind, frozenset())
        assert not leaked, f"{kind} images in the shards: {sorted(leaked)[:3]}"
    for kind in ("duplicate_bytes", "near_duplicate"):
        for group in truth.groups.get(kind, ()):
            assert len(written & group) <= 1, f"{kind} group written twice: {sorted(group)}"
    # Most good images survive everything but balancing.
    good = set(truth.good)
    assert len(written & good) > 0.5 * len(written)


def test_drops_are_counted_under_their_reasons(demo: DemoRun) -> None:
    crawl, curate, shards = (demo.stats(s) for s in ("crawl", "curate", "shards"))
    assert crawl["dropped"]["robots_disallowed"] >= 1
    assert crawl["dropped"]["redirect_loop"] >= 1
    for reason in ("text:junk", "text:filename", "text:too_few_words", "text:empty", "dedup:uid"):
        assert curate["dropped"].get(reason, 0) >= 1, reason
    assert any(r.startswith("language:") for r in curate["dropped"])
    assert curate["dropped"]["balance:over_threshold"] >= 1
    for reason in ("opted_out", "dedup:sha256", "neardup:phash", "image:too_small", "image:aspect"):
        assert shards["dropped"].get(reason, 0) >= 1, reason
    assert shards["dropped"].get("failed_to_decode", 0) >= 1
    # Every candidate is accounted for: kept or dropped with a reason, nothing vanishes.
    for stats in (curate, shards):
        assert stats["seen"] == stats["kept"] + sum(stats["dropped"].values())
    rows = read_table(demo.layout.selected).num_rows + read_table(demo.layout.dropped).num_rows
    assert rows == curate["seen"] == demo.stats("crawl")["counts"]["candidates"]


def test_shard_parquet_keeps_failures(demo: DemoRun) -> None:
    rows = list(read_pairs(demo.layout.shards_dir))
    failed = [r for r in rows if r.status != "success"]
    assert failed and all(r.error_message for r in failed)
    assert len(rows) == demo.stats("shards")["seen"]


def test_model_beats_chance(demo: DemoRun) -> None:
    results = read_json(demo.layout.at("train", "results.json"))
    zero_shot = results["zero_shot"]
    assert results["steps"] == results["total_steps"] == 100 and not results["stopped_early"]
    assert zero_shot["n"] >= 100
    assert zero_shot["top1"] > 3 * zero_shot["chance"], zero_shot


def test_rerun_resumes_without_redoing_work(demo: DemoRun) -> None:
    before = {p: p.stat().st_mtime_ns for p in Path(demo.layout.shards_dir).glob("*.tar")}
    started = time.perf_counter()
    result = run_cli(*demo_args(demo.workdir), timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert time.perf_counter() - started < 60
    assert result.stdout == demo.result.stdout
    after = {p: p.stat().st_mtime_ns for p in Path(demo.layout.shards_dir).glob("*.tar")}
    assert after == before
    assert json.loads((demo.workdir / "report.json").read_text())["stages"]["shards"]["kept"]
