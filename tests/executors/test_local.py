from __future__ import annotations

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
    fail_on_bucket,
    fail_on_three,
    square,
    summarize,
)


@pytest.fixture(scope="module")
def exchange(tmp_path_factory: pytest.TempPathFactory) -> ExchangeData:
    return build_exchange(str(tmp_path_factory.mktemp("exchange")))


@pytest.fixture(params=[1, 2], ids=["1-worker", "2-workers"])
def executor(request: pytest.FixtureRequest) -> Iterator[LocalExecutor]:
    local = LocalExecutor(request.param)
    try:
        yield local
    finally:
        local.close()


def test_map_yields_every_task_once(executor: LocalExecutor) -> None:
    results = list(executor.map(square, list(range(10))))
    assert sorted(results) == [(i, i * i) for i in range(10)]


def test_map_raises_the_tasks_exception(executor: LocalExecutor) -> None:
    with pytest.raises(ValueError, match="task 3 failed on purpose"):
        list(executor.map(fail_on_three, list(range(6))))


def test_reduce_calls_every_bucket_once_with_its_rows(
    executor: LocalExecutor, exchange: ExchangeData
) -> None:
    data, expected = exchange
    buckets = list(range(BUCKETS))
    results = list(executor.reduce(data, summarize, buckets))
    assert sorted(b for b, _ in results) == buckets
    for bucket, summary in results:
        assert summary == {"bucket": bucket, "rows": expected[bucket], "schema_ok": True}
    assert all(not expected[b] for b in EMPTY_BUCKETS)
    assert sum(len(rows) for rows in expected.values()) == 5 * (1 + 2 + 3)


def test_reduce_only_the_buckets_asked_for(executor: LocalExecutor, exchange: ExchangeData) -> None:
    data, expected = exchange
    results = dict(executor.reduce(data, summarize, [6, EMPTY_BUCKETS[0], 1]))
    assert sorted(results) == sorted([6, EMPTY_BUCKETS[0], 1])
    assert {b: s["rows"] for b, s in results.items()} == {b: expected[b] for b in results}


def test_reduce_raises_the_functions_exception(
    executor: LocalExecutor, exchange: ExchangeData
) -> None:
    with pytest.raises(ValueError, match=f"bucket {FAILING_BUCKET} is broken"):
        list(executor.reduce(exchange[0], fail_on_bucket, list(range(BUCKETS))))


def test_reduce_of_an_exchange_without_files(tmp_path: Path) -> None:
    empty = Exchange(root=str(tmp_path / "none"), buckets=4, schema=SCHEMA)
    with LocalExecutor(1) as local:
        results = dict(local.reduce(empty, summarize, [0, 3]))
    assert {b: s["rows"] for b, s in results.items()} == {0: [], 3: []}


def test_one_and_two_workers_agree(exchange: ExchangeData) -> None:
    outcomes = []
    for workers in (1, 2):
        with LocalExecutor(workers) as local:
            reduced = sorted(local.reduce(exchange[0], summarize, list(range(BUCKETS))))
            mapped = sorted(local.map(square, list(range(7))))
        outcomes.append((reduced, mapped))
    assert outcomes[0] == outcomes[1]
