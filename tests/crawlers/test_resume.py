"""A page crawl killed with SIGKILL mid-way, then run again, ends where an uninterrupted crawl
of the same sandbox ends: the same candidates, none twice, the same counts."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from core.config import CrawlConfig, PipelineConfig, load_config
from core.io import read_pairs
from core.layout import RunLayout
from core.stats import StageStats
from crawlers.crawlstate import CrawlState
from crawlers.pages import ResumeError, crawl_into
from pipeline.stages.crawl import run_crawl
from tests.conftest import REPO
from tests.test_determinism import free_port_run

KILL_AFTER_PAIRS = 250  # of this sandbox's ~900: well inside the crawl
SANDBOX = ["sandbox.pages_per_host=30"]  # half the default web: half the time


def crawl_config(workdir: Path, base_port: int) -> list[str]:
    return [f"workdir='{workdir}'", f"sandbox.base_port={base_port}", *SANDBOX]


def candidates(workdir: Path) -> list[tuple[str, str, str]]:
    return [(p.url, p.caption, p.page_url or "") for p in read_pairs(RunLayout(workdir).candidates)]


def counts_of(workdir: Path) -> dict[str, object]:
    stats = json.loads((workdir / "crawl" / "crawl_stats.json").read_text())
    stats["counts"].pop("robots_fetches")  # a resumed crawl asks each host again
    return {key: stats[key] for key in ("seen", "kept", "dropped", "counts")}


def pairs_committed(database: Path) -> int:
    if not database.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
            return int(db.execute("SELECT COUNT(*) FROM pairs").fetchone()[0])
    except sqlite3.OperationalError:  # not created yet, or busy
        return 0


def kill_mid_crawl(workdir: Path, base_port: int) -> int:
    """Run `pipeline crawl` in a process, SIGKILL it once enough pairs are committed;
    returns how many were."""
    argv = [sys.executable, "-m", "pipeline", "crawl", "--workdir", str(workdir)]
    for setting in [f"sandbox.base_port={base_port}", *SANDBOX]:
        argv += ["--set", setting]
    process = subprocess.Popen(argv, cwd=REPO, stderr=subprocess.DEVNULL)
    database = workdir / "crawl" / "_work" / "crawl.db"
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        if pairs_committed(database) >= KILL_AFTER_PAIRS:
            break
        time.sleep(0.01)
    process.kill()  # SIGKILL: nothing is flushed or closed
    process.wait()
    assert not (workdir / "crawl" / "crawl.done").exists(), "the crawl ended before the kill"
    return pairs_committed(database)


def test_killed_crawl_resumes_to_the_same_candidates(tmp_path: Path) -> None:
    base = free_port_run(4)
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    config: PipelineConfig = load_config(None, crawl_config(clean, base))
    run_crawl(config, quiet=True)
    expected = candidates(clean)
    assert len(expected) > KILL_AFTER_PAIRS * 2

    committed = kill_mid_crawl(killed, base)
    assert KILL_AFTER_PAIRS <= committed < len(expected)
    run_crawl(load_config(None, crawl_config(killed, base)), quiet=True)

    got = candidates(killed)
    assert len(got) == len(expected)  # no pair recorded twice, none lost
    assert Counter(got) == Counter(expected)
    # each page counted once: the pages finished before the kill were not fetched again
    assert counts_of(killed) == counts_of(clean)
    assert not (killed / "crawl" / "_work").exists()  # the state is removed once done


def test_a_state_of_other_seeds_is_not_resumed(tmp_path: Path) -> None:
    database = tmp_path / "crawl.db"
    state = CrawlState(database)
    state.put("seeds", ["http://a.example/"])
    state.commit()
    state.close()
    with pytest.raises(ResumeError, match="began from other seeds"):
        crawl_into(["http://b.example/"], CrawlConfig(), StageStats("crawl"), database)
