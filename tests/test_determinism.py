"""Same input and seed, any number of workers: the same pairs selected, the same shards."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.io import read_pairs
from tests.conftest import REPO, run_cli

pytestmark = pytest.mark.slow

HOSTS = 4
STAGES = ("crawl", "curate", "shards")


def free_port_run(hosts: int) -> int:
    """A base port with `hosts` free ports from it (checked now; free ports stay free here)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
        if base + hosts > 65535:
            continue
        try:
            for port in range(base, base + hosts):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no run of free ports")


def run_stages(
    workdir: Path, base_port: int, workers: int, commands: tuple[str, ...] = STAGES
) -> None:
    for command in commands:
        result = run_cli(
            command, "--config", "configs/demo.toml", "--workdir", str(workdir),
            "--set", f"sandbox.base_port={base_port}",
            "--set", f"executor.workers={workers}",
            timeout=600,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]


def parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def descendants(root: int) -> set[int]:
    """Every process below `root` now (read from /proc)."""
    pids = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]
    parents = {pid: parent_of(pid) for pid in pids}
    found: set[int] = set()
    frontier = {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def decisions(*paths: Path) -> list[tuple[str, str, str]]:
    return sorted(
        (p.uid, p.drop_reason or "", p.key or "") for path in paths for p in read_pairs(path)
    )


def curated(workdir: Path) -> list[tuple[str, str, str]]:
    return decisions(workdir / "curate" / "selected", workdir / "curate" / "dropped")


def test_one_and_two_workers_select_the_same_pairs(tmp_path: Path) -> None:
    base = free_port_run(HOSTS)
    one, two = tmp_path / "one", tmp_path / "two"
    run_stages(one, base, workers=1)
    run_stages(two, base, workers=2)
    assert curated(one) == curated(two)
    shards_one, shards_two = decisions(one / "shards"), decisions(two / "shards")
    assert shards_one == shards_two
    assert sum(1 for _, reason, _ in shards_one if not reason) > 500
    tars = sorted(p.name for p in (one / "shards").glob("*.tar"))
    assert tars == sorted(p.name for p in (two / "shards").glob("*.tar"))
    for name in tars:
        assert (one / "shards" / name).read_bytes() == (two / "shards" / name).read_bytes()


def kill_when(command: str, workdir: Path, marker: Path) -> set[int]:
    """Start `command` on `workdir`, SIGKILL it once `marker` exists; its children then."""
    argv = [sys.executable, "-m", "pipeline", command, "--workdir", str(workdir)]
    process = subprocess.Popen(argv, cwd=REPO, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    children = descendants(process.pid)
    process.kill()  # SIGKILL: no cleanup runs
    process.wait()
    assert marker.exists(), f"{command} ended before {marker.name}"
    return children


def test_curate_killed_mid_stage_resumes_to_the_same_selection(tmp_path: Path) -> None:
    base = free_port_run(HOSTS)
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    run_stages(clean, base, workers=2, commands=("crawl", "curate"))
    run_stages(killed, base, workers=2, commands=("crawl",))
    kill_when("curate", killed, killed / "curate" / "_work" / "pass0-00003.done")
    assert not (killed / "curate" / "curate.done").exists()
    run_stages(killed, base, workers=2, commands=("curate",))
    assert curated(killed) == curated(clean)
    for name in sorted(p.name for p in (clean / "curate" / "selected").iterdir()):
        assert (killed / "curate" / "selected" / name).read_bytes() == (
            clean / "curate" / "selected" / name
        ).read_bytes()


def test_shards_killed_mid_stage_resume_to_the_same_bytes(tmp_path: Path) -> None:
    base = free_port_run(HOSTS)
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    run_stages(clean, base, workers=2)
    run_stages(killed, base, workers=2, commands=("crawl", "curate"))
    marker = killed / "images" / "part-00001.done"
    children = kill_when("shards", killed, marker)
    assert children, "the stage should have had worker processes"
    deadline = time.monotonic() + 15
    while any(alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in children if alive(pid)], "workers outlived the killed stage"
    assert not (killed / "shards" / "shards.done").exists()
    run_stages(killed, base, workers=2, commands=("shards",))
    assert decisions(killed / "shards") == decisions(clean / "shards")
    for tar in sorted((clean / "shards").glob("*.tar")):
        assert (killed / "shards" / tar.name).read_bytes() == tar.read_bytes()
    assert not list(killed.rglob(".tmp-*"))
