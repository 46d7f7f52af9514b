"""Running pipeline stages as real child processes, measured, for the fault tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import REPO


@dataclass(frozen=True)
class StageRun:
    """One `python -m pipeline STAGE` run: its output, exit status, peak memory and time."""

    stage: str
    rc: int
    stdout: str
    stderr: str
    peak_rss_mib: float
    seconds: float


def run_stage(
    stage: str, workdir: Path, sets: list[str], timeout: float, extra: tuple[str, ...] = ()
) -> StageRun:
    """`python -m pipeline STAGE --workdir W --set ...` under `measure`, as a child."""
    # beside, not inside, the run's file system: a full disk must not lose the figures
    handle, name = tempfile.mkstemp(prefix=f"measure-{stage}-", suffix=".json")
    os.close(handle)
    report = Path(name)
    command = [sys.executable, "-m", "pipeline", stage, "--workdir", str(workdir), *extra]
    for item in sets:
        command += ["--set", item]
    done = subprocess.run(
        [sys.executable, "-m", "tests.faults.measure", str(report), "--", *command],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    text = report.read_text()
    report.unlink()
    measured: dict[str, Any] = json.loads(text) if text else {}
    return StageRun(
        stage=stage,
        rc=done.returncode,
        stdout=done.stdout,
        stderr=done.stderr,
        peak_rss_mib=float(measured.get("peak_rss_mib", -1)),
        seconds=float(measured.get("seconds", -1)),
    )


def stats(workdir: Path, stage: str) -> dict[str, Any]:
    """The `<stage>_stats.json` a stage left in `workdir`."""
    found = sorted(workdir.rglob(f"{stage}_stats.json"))
    assert found, f"no {stage}_stats.json under {workdir}"
    data: dict[str, Any] = json.loads(found[0].read_text())
    return data
