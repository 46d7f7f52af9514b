"""RayExecutor on a real two-node cluster (tests/services.py), checked against LocalExecutor."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from executors.base import Exchange
from executors.local import LocalExecutor
from tests.executors import (
    BUCKETS,
    EMPTY_BUCKETS,
    FAILING_BUCKET,
    SCHEMA,
    ExchangeData,
    build_exchange,
    count_and_fail,
    fail_on_bucket,
    fail_on_three,
    node_of,
    slow_square,
    square,
    summarize,
)

pytest.importorskip("ray", reason="ray is not installed (pip install -e '.[ray]')")
pytestmark = pytest.mark.slow

from executors.ray import RayExecutor  # noqa: E402 - needs ray


@pytest.fixture(scope="module")
def ray_executor(ray_cluster: str, s3_server: str) -> Iterator[RayExecutor]:
    """One driver connection for the module (made once the S3 endpoint is in os.environ,
    so that the workers are handed it too)."""
    executor = RayExecutor(address=ray_cluster)
    try:
        yield executor
    finally:
        executor.close()


@pytest.fixture(scope="module")
def exchange(tmp_path_factory: pytest.TempPathFactory) -> ExchangeData:
    return build_exchange(str(tmp_path_factory.mktemp("exchange")))


def local_reduce(data: Exchange, buckets: list[int]) -> list[tuple[int, dict]]:
    with LocalExecutor(1) as local:
        return sorted(local.reduce(data, summarize, buckets))


def test_connects_to_both_nodes(ray_executor: RayExecutor) -> None:
    assert ray_executor.workers == 2
    nodes = {node for _, (_, node) in ray_executor.map(node_of, list(range(6)))}
    assert len(nodes) == 2


def test_map_matches_local(ray_executor: RayExecutor) -> None:
    results = list(ray_executor.map(square, list(range(20))))
    assert sorted(results) == sorted(LocalExecutor(1).map(square, list(range(20))))
    assert list(ray_executor.map(square, [])) == []


def test_map_with_workers_capped(ray_cluster: str, ray_executor: RayExecutor) -> None:
    capped = RayExecutor(address=ray_cluster, workers=1)  # reuses the connection
    assert capped.in_flight == 1
    assert sorted(capped.map(square, list(range(5)))) == [(i, i * i) for i in range(5)]
    capped.close()  # not its connection: leaves it open
    assert sorted(ray_executor.map(square, [3])) == [(0, 9)]


def test_map_raises_the_tasks_exception_without_retrying(
    ray_executor: RayExecutor, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="task 3 failed on purpose") as raised:
        list(ray_executor.map(fail_on_three, list(range(6))))
    assert type(raised.value) is ValueError  # the task's own exception, not Ray's wrapper
    with pytest.raises(KeyError, match="task 1"):
        list(ray_executor.map(count_and_fail, [(str(tmp_path), 1)]))
    assert len(list(tmp_path.glob("run-1-*"))) == 1  # application errors are not retried


def test_reduce_matches_local(ray_executor: RayExecutor, exchange: ExchangeData) -> None:
    data, expected = exchange
    buckets = list(range(BUCKETS))
    results = list(ray_executor.reduce(data, summarize, buckets))
    assert sorted(b for b, _ in results) == buckets  # each bucket once
    for bucket, summary in results:
        assert summary == {"bucket": bucket, "rows": expected[bucket], "schema_ok": True}
    assert sorted(results) == local_reduce(data, buckets)


def test_reduce_only_the_buckets_asked_for(
    ray_executor: RayExecutor, exchange: ExchangeData
) -> None:
    data, _ = exchange
    buckets = [6, EMPTY_BUCKETS[1], 1]
    assert sorted(ray_executor.reduce(data, summarize, buckets)) == local_reduce(data, buckets)
    assert list(ray_executor.reduce(data, summarize, [])) == []


def test_reduce_raises_the_functions_exception(
    ray_executor: RayExecutor, exchange: ExchangeData
) -> None:
    with pytest.raises(ValueError, match=f"bucket {FAILING_BUCKET} is broken") as raised:
        list(ray_executor.reduce(exchange[0], fail_on_bucket, list(range(BUCKETS))))
    assert type(raised.value) is ValueError


def test_reduce_of_an_exchange_without_files(ray_executor: RayExecutor, tmp_path: Path) -> None:
    empty = Exchange(root=str(tmp_path / "none"), buckets=4, schema=SCHEMA)
    results = dict(ray_executor.reduce(empty, summarize, [0, 3]))
    assert {b: s["rows"] for b, s in results.items()} == {0: [], 3: []}


def test_reduce_of_an_exchange_in_s3(ray_executor: RayExecutor, s3_bucket: str) -> None:
    data, expected = build_exchange(f"{s3_bucket}/exchange")
    results = dict(ray_executor.reduce(data, summarize, list(range(BUCKETS))))
    assert {b: s["rows"] for b, s in results.items()} == expected


def worker_running(pid: int, title: str) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return cmdline.startswith(title.encode())


def kill_when_started(folder: Path, title: str, killed: list[int]) -> None:
    """Wait for task 0's first run to leave its marker; SIGKILL the worker running it."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        markers = list(folder.glob("started-0-*"))
        if markers:
            pid = int(markers[0].name.rsplit("-", 1)[1])
            if worker_running(pid, title):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            return
        time.sleep(0.05)


def test_a_killed_worker_is_retried(ray_executor: RayExecutor, tmp_path: Path) -> None:
    killed: list[int] = []
    killer = threading.Thread(
        target=kill_when_started, args=(tmp_path, "ray::slow_square", killed), daemon=True
    )
    killer.start()
    started = time.monotonic()
    results = sorted(ray_executor.map(slow_square, [(str(tmp_path), x) for x in range(4)]))
    killer.join()
    assert killed, "the first run of task 0 was not found running as ray::slow_square"
    assert results == [(x, x * x) for x in range(4)]
    runs = sorted(p.name for p in tmp_path.glob("started-0-*"))
    assert len(runs) == 2 and f"started-0-{killed[0]}" in runs  # killed, then run again
    assert time.monotonic() - started < 30  # the retry did not wait for the sleep
