"""Guards around a training run: a rank dies with its launcher; one writer per folder.

`exit_with_launcher` starts a daemon thread that ends the process once the process that
started it (torchrun's agent, or the process that spawned the ranks) is gone: torchrun
starts its workers in their own session, so a SIGKILL of the agent reaches none of them,
and a rank blocked in a collective would otherwise wait forever.

`RunLock` is a lock file in the run's train folder holding the holder's pid and host,
created atomically (a hard link to a finished temporary file, which fails if the name
exists). A lock whose pid is dead on this host is stale (its run
was killed) and is taken over; a live one, or one from another host, is an error.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import threading
import time
from pathlib import Path
from types import TracebackType

from core import storage
from core.errors import PipelineError

log = logging.getLogger(__name__)

LOCK_FILE = "train.lock"
WATCH_SECONDS = 0.5
WATCHER = "exit-with-launcher"


def exit_with_launcher(launcher_pid: int, interval: float = WATCH_SECONDS) -> threading.Thread:
    """Exit this process (status 1) once `launcher_pid` is no longer its parent.

    A parent that dies leaves its children to init (or a subreaper), so the parent pid
    changes; comparing it, rather than probing `launcher_pid`, is immune to pid reuse.
    Started once per process: a second call returns the thread already watching.
    """
    running = [t for t in threading.enumerate() if t.name == WATCHER]
    if running:
        return running[0]

    def watch() -> None:
        while os.getppid() == launcher_pid:
            time.sleep(interval)
        print(f"train: launcher {launcher_pid} is gone; rank {os.getpid()} exits", file=sys.stderr)
        os._exit(1)

    thread = threading.Thread(target=watch, name=WATCHER, daemon=True)
    thread.start()
    return thread


def pid_alive(pid: int) -> bool:
    """Whether `pid` names a running (not zombie) process on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


class RunLock:
    """`with RunLock(folder):` one writer at a time in a local folder; no-op for URLs."""

    def __init__(self, folder: str) -> None:
        self.path = storage.join(folder, LOCK_FILE)
        self.enabled = not storage.is_remote(folder)  # object storage has no atomic create
        self.held = False

    def acquire(self) -> None:
        if not self.enabled:
            return
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):  # the second try after removing a stale lock
            if self._create():
                self.held = True
                return
            holder = self._holder()
            if not self._is_stale(holder):
                raise PipelineError(
                    f"{storage.parent(self.path)} is in use by training process "
                    f"{holder.get('pid')} on {holder.get('host')} (lock {self.path}); "
                    "wait for it, or delete the lock if that process is gone"
                )
            log.warning("taking over the stale lock %s of process %s", self.path, holder)
            Path(self.path).unlink(missing_ok=True)
        raise PipelineError(f"could not take the lock {self.path}: another process races for it")

    def release(self) -> None:
        """Remove the lock if it is still this process's (not taken over since)."""
        if self.held and self._holder().get("pid") == os.getpid():
            Path(self.path).unlink(missing_ok=True)
        self.held = False

    def _create(self) -> bool:
        """Link a finished temporary file to the lock's name: it appears whole, or not."""
        record = json.dumps({"pid": os.getpid(), "host": socket.gethostname()})
        tmp = Path(f"{self.path}.{os.getpid()}.tmp")
        tmp.write_text(record)
        try:
            os.link(tmp, self.path)
        except FileExistsError:
            return False
        finally:
            tmp.unlink()
        return True

    def _holder(self) -> dict[str, object]:
        try:
            holder: dict[str, object] = json.loads(Path(self.path).read_text())
        except (OSError, ValueError):
            return {}
        return holder

    @staticmethod
    def _is_stale(holder: dict[str, object]) -> bool:
        pid = holder.get("pid")
        if not isinstance(pid, int):
            return True
        if holder.get("host") != socket.gethostname():
            return False  # another machine's process: cannot tell, assume alive
        return pid == os.getpid() or not pid_alive(pid)

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.release()
