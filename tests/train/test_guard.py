from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.errors import PipelineError
from tests.conftest import REPO
from train.guard import LOCK_FILE, RunLock, pid_alive

# A run of the tiny colour model long enough to be caught in the middle.
TINY_SET = (
    "image_size=32", "embed_dim=32", "patch_size=8", "vision_width=32", "vision_layers=1",
    "vision_head_width=16", "text_width=32", "text_layers=1",
    "text_heads=2", "context_length=12", "vocab_size=512", "batch_size=16", "workers=0",
    "samples=1000000", "checkpoint_every=1000000",
)  # fmt: skip


def train_args(workdir: Path, shards: str) -> list[str]:
    args = ["train", "--workdir", str(workdir), "--set", f"train.shards={shards}"]
    for item in TINY_SET:
        args += ["--set", f"train.{item}"]
    return args


def write_lock(folder: Path, pid: int, host: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / LOCK_FILE).write_text(json.dumps({"pid": pid, "host": host}))


def wait_for(condition: object, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return True
        time.sleep(0.2)
    return False


def test_a_held_lock_refuses_a_second_writer_in_one_line(tmp_path: Path) -> None:
    with RunLock(str(tmp_path)):
        holder = json.loads((tmp_path / LOCK_FILE).read_text())
        assert holder == {"pid": os.getpid(), "host": socket.gethostname()}
        with subprocess.Popen(["sleep", "30"]) as other:  # a live process on this host
            try:
                (tmp_path / LOCK_FILE).write_text(json.dumps({**holder, "pid": other.pid}))
                with pytest.raises(PipelineError) as error, RunLock(str(tmp_path)):
                    pass
            finally:
                other.kill()
    assert f"in use by training process {other.pid}" in str(error.value)
    assert "\n" not in str(error.value)
    assert (tmp_path / LOCK_FILE).exists()  # the refused one leaves the holder's lock alone


def test_a_stale_lock_is_taken_over_and_released(tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    write_lock(tmp_path, dead.pid, socket.gethostname())
    assert not pid_alive(dead.pid)
    with RunLock(str(tmp_path)):
        assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()
    assert not (tmp_path / LOCK_FILE).exists()


def test_another_hosts_lock_is_never_taken_over(tmp_path: Path) -> None:
    write_lock(tmp_path, 1, "some-other-host")
    with pytest.raises(PipelineError, match="on some-other-host"), RunLock(str(tmp_path)):
        pass


@pytest.mark.slow
def test_two_trainers_on_one_folder_the_second_fails_with_one_line(
    colour_shards: list[str], tmp_path: Path
) -> None:
    shards = str(Path(colour_shards[0]).parent)
    command = [sys.executable, "-m", "pipeline", *train_args(tmp_path, shards)]
    with subprocess.Popen(command, cwd=REPO, stderr=subprocess.DEVNULL) as first:
        try:
            assert wait_for(lambda: (tmp_path / "train" / LOCK_FILE).exists(), 60)
            second = subprocess.run(
                command, cwd=REPO, capture_output=True, text=True, timeout=120, check=False
            )
        finally:
            first.kill()
    assert second.returncode != 0
    assert "Traceback" not in second.stderr
    errors = [line for line in second.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and f"in use by training process {first.pid}" in errors[0], errors


def children(pid: int) -> list[int]:
    """The pids whose parent is `pid`, from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process tree from /proc")
def test_ranks_exit_once_torchrun_is_killed(colour_shards: list[str], tmp_path: Path) -> None:
    shards = str(Path(colour_shards[0]).parent)
    torchrun = str(Path(sys.executable).parent / "torchrun")
    command = [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "pipeline"]
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    with subprocess.Popen(
        [*command, *train_args(tmp_path, shards)], cwd=REPO, env=env, stderr=subprocess.DEVNULL
    ) as agent:
        try:
            assert wait_for(lambda: (tmp_path / "train" / "log.jsonl").exists(), 120)  # training
            ranks = children(agent.pid)
            assert len(ranks) == 2
        finally:
            agent.send_signal(signal.SIGKILL)
    gone = wait_for(lambda: not any(pid_alive(pid) for pid in ranks), 10)
    survivors = [pid for pid in ranks if pid_alive(pid)]
    for pid in survivors:  # leave nothing behind, even when the test fails
        os.kill(pid, signal.SIGKILL)
    assert gone, f"ranks {survivors} outlived their launcher"
