"""The executor interface and the exchange, the one on-disk form of a keyed reduction.

A keyed reduction ("every decision is a pure function of the rows sharing a key") runs in
two halves. Producers (ordinary tasks) write their rows to an `Exchange`, each row tagged
with the bucket its key hashes to; then `Executor.reduce` calls a function once per
bucket with every row of that bucket, wherever they were written. Buckets are chosen by
the stage (a hash of the key, modulo a bucket count fixed by the data size), so any
executor that groups by bucket hands each call the same rows, in some order; reduce
functions sort what they get, so their output does not depend on that order.

An exchange is a folder of parquet files, one per producer, rows sorted by bucket with one
row group per bucket and the bucket in the column `__bucket`. The local executor reads a
bucket's row groups straight from every file (a hash-bucketed spill to disk); the Ray
executor hands the files to Ray Data and groups by the column.
"""

from __future__ import annotations

import abc
import itertools
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Self, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from core import storage
from core.hashing import mix64

T = TypeVar("T")
R = TypeVar("R")
BUCKET_COLUMN = "__bucket"
SPILL_COMPRESSION = "none"  # exchange files are read once, soon: fast beats small


@dataclass(frozen=True)
class Exchange:
    """Rows bucketed by key, written by many producers, read back a whole bucket at a time."""

    root: str  # folder of the producers' files
    buckets: int
    schema: pa.Schema  # of the rows, without the bucket column

    def producer_file(self, producer: str) -> str:
        return storage.join(self.root, f"{producer}.parquet")

    def files(self) -> list[str]:
        return storage.list_files(self.root, ".parquet")

    def write(self, producer: str, table: pa.Table, buckets: np.ndarray) -> None:
        """Write one producer's rows, `buckets[i]` the bucket of row i (atomically)."""
        if table.num_rows != len(buckets):
            raise ValueError("one bucket per row")
        if len(buckets) and (buckets.min() < 0 or buckets.max() >= self.buckets):
            raise ValueError(f"buckets must lie in [0, {self.buckets})")
        order = np.argsort(buckets, kind="stable")
        ordered = buckets[order].astype(np.int32)
        table = table.select(self.schema.names).cast(self.schema).take(pa.array(order))
        table = table.append_column(BUCKET_COLUMN, pa.array(ordered, pa.int32()))
        starts = (
            np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
            if len(ordered)
            else np.empty(0, np.int64)
        )
        bounds = [*starts, len(ordered)]
        with (
            storage.atomic_path(self.producer_file(producer)) as tmp,
            pq.ParquetWriter(tmp, table.schema, compression=SPILL_COMPRESSION) as writer,
        ):
            for start, end in itertools.pairwise(bounds):
                writer.write_table(table.slice(start, end - start), row_group_size=end - start)

    def read_bucket(self, bucket: int) -> pa.Table:
        """Every row written to `bucket`, from all producers (in file order)."""
        parts = []
        for location in self.files():
            with storage.open_input(location) as handle:
                parquet = pq.ParquetFile(handle)
                groups = _row_groups_of(parquet, bucket)
                if groups:
                    parts.append(parquet.read_row_groups(groups, columns=self.schema.names))
        if not parts:
            return self.schema.empty_table()
        return pa.concat_tables([p.cast(self.schema) for p in parts])


def _row_groups_of(parquet: pq.ParquetFile, bucket: int) -> list[int]:
    meta = parquet.metadata
    column = parquet.schema_arrow.get_field_index(BUCKET_COLUMN)
    found = []
    for index in range(meta.num_row_groups):
        stats = meta.row_group(index).column(column).statistics
        if stats is None or not stats.has_min_max:
            raise ValueError(f"exchange file without bucket statistics: {parquet.metadata}")
        if stats.min <= bucket <= stats.max:
            found.append(index)
    return found


def bucket_of(keys: pa.Array | pa.ChunkedArray, buckets: int) -> np.ndarray:
    """The bucket of each key: a stable hash of its value, modulo `buckets`."""
    return (hash_keys(keys) % np.uint64(buckets)).astype(np.int64)


def hash_keys(keys: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A stable 64-bit hash of every string (or binary) value, the same in every process.

    CRC-32 of the UTF-8 bytes (zlib, ~0.2 us a value), spread over 64 bits by splitmix64;
    nulls hash as "". Python's own `hash` is salted per process, so it cannot be used.
    """
    values = pc.fill_null(keys, "") if keys.null_count else keys
    raw = values.cast(pa.binary()).to_pylist()
    crc = np.fromiter(map(zlib.crc32, raw), dtype=np.uint64, count=len(raw))
    return mix64(crc)


class Executor(abc.ABC):
    """Runs a stage's tasks somewhere. Task functions must be module-level (picklable)."""

    name = "executor"
    workers = 1

    @abc.abstractmethod
    def map(self, fn: Callable[[T], R], tasks: Sequence[T]) -> Iterator[tuple[int, R]]:
        """Run `fn(task)` for every task; yield (position of the task, result) as they end."""

    @abc.abstractmethod
    def reduce(
        self, exchange: Exchange, fn: Callable[[int, pa.Table], R], buckets: Sequence[int]
    ) -> Iterator[tuple[int, R]]:
        """Call `fn(bucket, rows)` once for every bucket in `buckets` (empty ones too), with
        every row the exchange holds for it; yield (bucket, result) as they end."""

    def start(self) -> None:  # noqa: B027 - most executors start on first use
        """Begin starting workers now, so that they get ready while the caller plans."""

    def close(self) -> None:  # noqa: B027 - most executors hold nothing
        """Release workers or cluster connections."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_bucket_task(job: tuple[Callable[[int, pa.Table], Any], Exchange, int]) -> Any:
    """A reduce call as an ordinary task: read the bucket from every file, then `fn`."""
    fn, exchange, bucket = job
    return fn(bucket, exchange.read_bucket(bucket))
