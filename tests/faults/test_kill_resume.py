"""kill -9 at seeded points of every stage (crawl, curate, shards, train), then the same
command again: the run must end exactly as an uninterrupted one.

A clean run of a small sandbox chain comes first, its stage folders watched: the files
each stage wrote, in the order they appeared (staged files removed later included), are
the candidate kill points, and a seeded generator draws among them. A second run is
started stage by stage, its process group SIGKILLed (no cleanup runs, workers die with it)
the moment the drawn file exists, and the stage rerun.
Then the outputs are compared with the clean run's: the crawl's candidates, the curated
selection's bytes, the shards' bytes, and the trained model's weights.

The suite draws one point per stage; `make faults` (the `faults` marker) draws several.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.io import read_pairs
from tests.conftest import REPO
from tests.faults.common import StageRun, run_stage
from tests.faults.conftest import FaultLine
from tests.test_determinism import free_port_run

SEED = 9
HOSTS = 2
STAGES = ("crawl", "curate", "shards", "train")
STAGE_DIRS = {  # where each stage writes: the kill points are files appearing there
    "crawl": ("sandbox", "crawl"),
    "curate": ("curate",),
    "shards": ("images", "shards"),
    "train": ("train",),
}
SETTINGS = [  # a small chain: ~60 candidates, ~20 samples in 3 shards, 3 training steps
    f"sandbox.hosts={HOSTS}",
    "sandbox.pages_per_host=8",
    "sandbox.images_per_page=6",
    "sandbox.heldout_per_class=1",
    "part_rows=30",
    "shards.samples_per_shard=20",
    "executor.workers=2",
    "train.samples=24",
    "train.batch_size=8",
    "train.checkpoint_every=1",
]
SAFETY_S = 300.0  # a stage that runs longer than this is hung, not slow


def command(stage: str, workdir: Path, base_port: int) -> list[str]:
    argv = [sys.executable, "-m", "pipeline", stage, "--config", "configs/demo.toml"]
    argv += ["--workdir", str(workdir), "--set", f"sandbox.base_port={base_port}"]
    for item in SETTINGS:
        argv += ["--set", item]
    return argv


def run(stage: str, workdir: Path, base_port: int) -> StageRun:
    """The stage to its end, measured (peak memory, time); it must succeed."""
    sets = [f"sandbox.base_port={base_port}", *SETTINGS]
    done = run_stage(stage, workdir, sets, SAFETY_S, ("--config", "configs/demo.toml"))
    assert done.rc == 0, done.stderr[-3000:]
    return done


class FileWatch:
    """The files that appear in a stage's folders while it runs, in order of appearance,
    staged files it removes later included (paths relative to the run folder); temporaries
    (random names) and the stage's own final marker left out."""

    def __init__(self, workdir: Path, stage: str) -> None:
        self.workdir, self.stage = workdir, stage
        self.seen: dict[str, None] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> FileWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.scan()

    def _poll(self) -> None:
        while not self._stop.wait(0.01):
            self.scan()

    def scan(self) -> None:
        for folder in STAGE_DIRS[self.stage]:
            try:
                paths = sorted((self.workdir / folder).rglob("*"))
            except OSError:  # a folder removed while it was listed: next round
                continue
            for path in paths:
                name = path.name
                if ".tmp" in name or name == f"{self.stage}.done" or not path.is_file():
                    continue
                self.seen.setdefault(str(path.relative_to(self.workdir)), None)


@dataclass(frozen=True)
class Kill:
    stage: str
    point: str  # the file whose appearance triggers SIGKILL
    killed: bool  # False: the stage finished before the file appeared
    seconds: float  # from start to kill (or end)


def kill_at(stage: str, workdir: Path, base_port: int, point: str) -> Kill:
    """Start the stage, SIGKILL its process group once `point` exists."""
    process = subprocess.Popen(
        command(stage, workdir, base_port), cwd=REPO, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    started = time.monotonic()
    target = workdir / point
    while process.poll() is None and not target.exists():
        assert time.monotonic() - started < SAFETY_S, f"{stage} hung before {point}"
        time.sleep(0.005)
    killed = process.poll() is None
    if killed:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    return Kill(stage, point, killed, time.monotonic() - started)


def candidates(workdir: Path) -> list[tuple[str, str, str]]:
    pairs = read_pairs(workdir / "crawl" / "parts")
    return sorted((p.uid, p.url, p.caption) for p in pairs)


def file_bytes(workdir: Path, folder: str, pattern: str) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((workdir / folder).glob(pattern))}


def model_weights(workdir: Path) -> dict[str, list[float]]:
    import torch

    state = torch.load(workdir / "train" / "checkpoint.pt", map_location="cpu", weights_only=False)
    model = state["model"]
    return {name: tensor.flatten().tolist() for name, tensor in model.items()}


def assert_same_outputs(stage: str, clean: Path, killed: Path) -> None:
    if stage == "crawl":
        assert candidates(killed) == candidates(clean)
    elif stage == "curate":
        selected = file_bytes(clean, "curate/selected", "*.parquet")
        assert selected and file_bytes(killed, "curate/selected", "*.parquet") == selected
    elif stage == "shards":
        for pattern in ("*.tar", "*.parquet"):
            shards = file_bytes(clean, "shards", pattern)
            assert shards and file_bytes(killed, "shards", pattern) == shards, pattern
    else:
        assert model_weights(killed) == model_weights(clean)
        results = json.loads((clean / "train" / "results.json").read_text())
        again = json.loads((killed / "train" / "results.json").read_text())
        assert again.get("steps") == results.get("steps")
    assert not leftovers(killed), "a temporary was left"


def leftovers(workdir: Path) -> list[Path]:
    """Temporaries left anywhere in the run folder."""
    return [p for p in workdir.rglob("*") if ".tmp" in p.name]


@dataclass
class CleanRun:
    workdir: Path
    base_port: int
    files: dict[str, list[str]]
    seconds: dict[str, float]


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory: pytest.TempPathFactory) -> CleanRun:
    workdir = tmp_path_factory.mktemp("kill") / "clean"
    base_port = free_port_run(HOSTS)
    seconds, files = {}, {}
    for stage in STAGES:
        with FileWatch(workdir, stage) as watch:
            seconds[stage] = run(stage, workdir, base_port).seconds
        files[stage] = list(watch.seen)
    return CleanRun(workdir, base_port, files, seconds)


def kill_points(clean: CleanRun, stage: str, count: int, rng: random.Random) -> list[str]:
    files = clean.files[stage]
    assert files, f"{stage} wrote nothing to kill it at"
    return sorted(rng.sample(files, min(count, len(files))), key=files.index)


def kill_and_resume(
    clean: CleanRun, root: Path, points_per_stage: int, lines: list[FaultLine]
) -> list[Kill]:
    """One run killed at the drawn points of each stage in turn, each stage rerun until it
    completes; every stage's outputs checked against the clean run's."""
    rng = random.Random(SEED)
    workdir = root / "killed"
    kills = []
    for stage in STAGES:
        for point in kill_points(clean, stage, points_per_stage, rng):
            kills.append(kill_at(stage, workdir, clean.base_port, point))
        rerun = run(stage, workdir, clean.base_port)
        assert_same_outputs(stage, clean.workdir, workdir)
        ours = [k for k in kills if k.stage == stage]
        mid = sum(k.killed for k in ours)
        points = ", ".join(Path(k.point).name for k in ours)
        survived = f"identical ({mid}/{len(ours)} mid-stage)"
        lines.append(
            FaultLine(f"kill -9 in {stage}", points, survived, "nothing", rerun.peak_rss_mib,
                      rerun.seconds)
        )  # fmt: skip
    return kills


def test_kill_once_per_stage_resumes_identically(
    clean_run: CleanRun, tmp_path: Path, fault_report: list[FaultLine]
):
    kills = kill_and_resume(clean_run, tmp_path, 1, fault_report)
    assert [k.stage for k in kills] == list(STAGES)
    assert sum(k.killed for k in kills) >= 3, kills  # most points land inside the stage


@pytest.mark.faults
def test_kill_at_many_points_resumes_identically(
    clean_run: CleanRun, tmp_path: Path, fault_report: list[FaultLine]
):
    kills = kill_and_resume(clean_run, tmp_path, 4, fault_report)
    assert sum(k.killed for k in kills) >= len(STAGES) * 2, kills


def test_a_crawl_rerun_sweeps_the_heldout_sets_temporaries(tmp_path: Path):
    workdir = tmp_path / "run"
    stale = workdir / "sandbox" / "heldout" / "images" / ".tmp-00029.jpg.i2tkve2w"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"\xff\xd8 half a JPEG")  # as a kill -9 mid-write leaves it
    run("crawl", workdir, free_port_run(HOSTS))
    assert not stale.exists()


@pytest.mark.faults
def test_a_train_rerun_sweeps_its_stale_temporaries(clean_run: CleanRun, tmp_path: Path):
    workdir = tmp_path / "run"
    shutil.copytree(clean_run.workdir, workdir, ignore=shutil.ignore_patterns("train"))
    stale = workdir / "train" / ".tmp-checkpoint.pt.qmue37wn"
    stale.parent.mkdir()
    stale.write_bytes(b"half a checkpoint")  # as a kill -9 mid-save leaves it
    run("train", workdir, clean_run.base_port)
    assert not stale.exists()
