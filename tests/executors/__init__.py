"""Shared by the executor tests: a synthetic exchange and module-level task functions.

Task functions live here, not in the test modules, so that every executor's workers (a
local process pool, a Ray cluster's processes) import them by the same name.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from executors.base import Exchange

SCHEMA = pa.schema([("key", pa.string()), ("value", pa.int64())])
BUCKETS = 8
EMPTY_BUCKETS = (2, 5)  # no producer writes to these
PRODUCERS = 4  # producer 0 writes no rows at all
FAILING_BUCKET = 3
ExchangeData = tuple[Exchange, dict[int, list[tuple[str, int]]]]


def build_exchange(root: str) -> ExchangeData:
    """An exchange of `PRODUCERS` files, and the rows every bucket should hold (sorted)."""
    exchange = Exchange(root=root, buckets=BUCKETS, schema=SCHEMA)
    used = [b for b in range(BUCKETS) if b not in EMPTY_BUCKETS]
    expected: dict[int, list[tuple[str, int]]] = defaultdict(list)
    for producer in range(PRODUCERS):
        rows = [(f"p{producer}-r{i}", producer * 100 + i) for i in range(5 * producer)]
        buckets = np.array([used[(producer + 3 * i) % len(used)] for i in range(len(rows))])
        for row, bucket in zip(rows, buckets, strict=True):
            expected[int(bucket)].append(row)
        table = pa.table(
            {"value": [v for _, v in rows], "key": [k for k, _ in rows]}  # columns reordered
        )
        exchange.write(f"producer-{producer}", table, buckets.astype(np.int64))
    return exchange, {b: sorted(expected.get(b, [])) for b in range(BUCKETS)}


def summarize(bucket: int, rows: pa.Table) -> dict[str, Any]:
    """A reduce function: the bucket's rows, sorted, with the schema it was handed."""
    keys, values = rows.column("key").to_pylist(), rows.column("value").to_pylist()
    pairs = sorted(zip(keys, values, strict=True))
    return {"bucket": bucket, "rows": pairs, "schema_ok": rows.schema.equals(SCHEMA)}


def fail_on_bucket(bucket: int, rows: pa.Table) -> int:
    if bucket == FAILING_BUCKET:
        raise ValueError(f"bucket {bucket} is broken")
    return rows.num_rows


def square(x: int) -> int:
    return x * x


def fail_on_three(x: int) -> int:
    if x == 3:
        raise ValueError(f"task {x} failed on purpose")
    return x


def count_and_fail(job: tuple[str, int]) -> int:
    """Records every run in the folder `job[0]`, then fails for task 1."""
    folder, x = job
    Path(folder, f"run-{x}-{os.getpid()}-{time.monotonic_ns()}").touch()
    if x == 1:
        raise KeyError(f"task {x}")
    return x


def node_of(x: int) -> tuple[int, str]:
    """The Ray node a task ran on (it sleeps so that the tasks spread over the nodes)."""
    import ray

    time.sleep(0.5)
    return x, ray.get_runtime_context().get_node_id()


def slow_square(job: tuple[str, int]) -> int:
    """Leaves `<folder>/started-<x>-<pid>`; the first run of task 0 then sleeps a while."""
    folder, x = job
    first = not any(Path(folder).glob(f"started-{x}-*"))
    Path(folder, f"started-{x}-{os.getpid()}").touch()
    if x == 0 and first:
        time.sleep(30)  # long enough to be killed in
    return x * x
