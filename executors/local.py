"""The local executor: tasks in a pool of worker processes on this machine.

Workers are forked from a server process that has already imported what the tasks need
(`preload`), not forked from the stage (which may be serving the sandbox from a thread) and
not spawned (each spawned worker would import its modules again). Each worker watches the
stage's process and exits once it is gone, so a stage killed with SIGKILL leaves no worker
behind. With one worker, tasks run in the stage's own process, one after the other.

Keyed reductions read each bucket's row groups straight from the exchange files: the
exchange is the hash-bucketed spill, and the reduce of one bucket needs only that bucket's
rows in memory.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import multiprocessing.forkserver
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

import pyarrow as pa

from executors.base import Exchange, Executor, read_bucket_task

T = TypeVar("T")
R = TypeVar("R")
WATCH_SECONDS = 1.0  # how often a worker checks that the stage is still alive


def start_worker(stage_pid: int, threads: int) -> None:
    """A worker's initializer: share the cores with the other workers, watch the stage."""
    import pyarrow as pa

    pa.set_cpu_count(threads)  # Arrow's own pool: workers x threads = the machine's cores
    exit_with(stage_pid)


def exit_with(stage_pid: int) -> None:
    """In a worker: exit once the stage's process is gone (say, killed with SIGKILL).

    A pool worker waits on its task queue forever, so without this a killed stage would
    leave its workers behind.
    """

    def watch() -> None:
        while True:
            time.sleep(WATCH_SECONDS)
            try:
                os.kill(stage_pid, 0)
            except ProcessLookupError:
                os._exit(1)

    threading.Thread(target=watch, name="exit-with-stage", daemon=True).start()


def worker_pool(
    workers: int, preload: Sequence[str] = ()
) -> concurrent.futures.ProcessPoolExecutor:
    """Processes forked from a server that has imported `preload`, watching this process."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["executors.local", *preload])
    threads = max(1, (os.cpu_count() or 1) // workers)
    return concurrent.futures.ProcessPoolExecutor(
        workers, mp_context=context, initializer=start_worker, initargs=(os.getpid(), threads)
    )


class LocalExecutor(Executor):
    """Runs tasks in `workers` processes (in this process when `workers` is 1)."""

    name = "local"

    def __init__(self, workers: int = 1, preload: Sequence[str] = ()) -> None:
        self.workers = max(1, workers)
        self.preload = tuple(preload)
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None

    @property
    def pool(self) -> concurrent.futures.ProcessPoolExecutor:
        if self._pool is None:
            self._pool = worker_pool(self.workers, self.preload)
        return self._pool

    def start(self) -> None:
        """Start the server process now: it imports `preload` while the stage plans (the
        pool itself would start it at the first task)."""
        if self.workers > 1:
            _ = self.pool
            multiprocessing.forkserver.ensure_running()

    def map(self, fn: Callable[[T], R], tasks: Sequence[T]) -> Iterator[tuple[int, R]]:
        if self.workers == 1 or len(tasks) <= 1:
            for index, task in enumerate(tasks):
                yield index, fn(task)
            return
        futures = {self.pool.submit(fn, task): index for index, task in enumerate(tasks)}
        try:
            for future in concurrent.futures.as_completed(futures):
                yield futures[future], future.result()
        finally:
            for future in futures:
                future.cancel()

    def reduce(
        self, exchange: Exchange, fn: Callable[[int, pa.Table], R], buckets: Sequence[int]
    ) -> Iterator[tuple[int, R]]:
        jobs = [(fn, exchange, bucket) for bucket in buckets]
        for position, result in self.map(read_bucket_task, jobs):
            yield buckets[position], result

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
