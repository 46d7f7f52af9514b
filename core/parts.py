"""Partitioned datasets: a folder of parquet parts in `PAIR_SCHEMA`, each with its marker.

Stages hand each other folders of parts, never one big file: a part is bounded in rows
(`part_rows`), written atomically, and followed by `<name>.done`, so a stage resumes part
by part and any part can be read or written by any worker. A part without its marker is
unfinished and is not listed.

    with PartWriter(folder, "part-00003", part_rows) as parts:
        parts.write(table)        # any number of rows; cut into parts of <= part_rows
    -> part-00003-00000.parquet, part-00003-00001.parquet, ... each with its .done
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from core import storage
from core.io import align, is_done, mark_done, write_table
from core.storage import PathLike


def part_file(folder: PathLike, name: str) -> str:
    return storage.join(folder, f"{name}.parquet")


def finished_parts(folder: PathLike) -> list[str]:
    """The parquet parts in `folder` whose marker exists, sorted by name."""
    done = {n[: -len(".done")] for n in storage.list_names(folder, ".done")}
    return [
        storage.join(folder, n)
        for n in storage.list_names(folder, ".parquet")
        if n[: -len(".parquet")] in done
    ]


def part_rows(location: PathLike) -> int:
    """The number of rows of a parquet part (read from its footer)."""
    with storage.open_input(location) as handle:
        return int(pq.ParquetFile(handle).metadata.num_rows)


class PartWriter:
    """Cuts a stream of rows into parts `<prefix>-NNNNN` of at most `limit` rows each.

    Parts already finished (a rerun after a kill) are not written again: their rows are
    counted and skipped, so the stream must be the same on every run.
    """

    def __init__(self, folder: PathLike, prefix: str, limit: int) -> None:
        if limit <= 0:
            raise ValueError(f"parts need a positive row limit, got {limit}")
        self.folder = storage.name(folder)
        self.prefix = prefix
        self.limit = limit
        self.pending: list[pa.Table] = []
        self.pending_rows = 0
        self.parts = 0
        self.rows = 0

    def __enter__(self) -> PartWriter:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.close()

    def write(self, table: pa.Table) -> None:
        """Queue rows (any superset or subset of `PAIR_SCHEMA`); full parts are written."""
        table = align(table)
        while table.num_rows:
            room = self.limit - self.pending_rows
            self.pending.append(table.slice(0, room))
            self.pending_rows += min(room, table.num_rows)
            table = table.slice(room)
            if self.pending_rows == self.limit:
                self.flush()

    def flush(self) -> None:
        if not self.pending_rows:
            return
        name = f"{self.prefix}-{self.parts:05d}"
        if not is_done(self.folder, name):
            table = pa.concat_tables(self.pending).combine_chunks()
            write_table(part_file(self.folder, name), table)
            mark_done(self.folder, name, {"rows": table.num_rows})
        self.rows += self.pending_rows
        self.parts += 1
        self.pending, self.pending_rows = [], 0

    def close(self) -> None:
        self.flush()


def read_rows(location: PathLike, start: int, stop: int) -> pa.Table:
    """Rows [start, stop) of a parquet file, reading only the row groups that hold them."""
    with storage.open_input(location) as handle:
        parquet = pq.ParquetFile(handle)
        meta = parquet.metadata
        groups, first, offset = [], None, 0
        for index in range(meta.num_row_groups):
            rows = meta.row_group(index).num_rows
            if offset + rows > start and offset < stop:
                groups.append(index)
                first = offset if first is None else first
            offset += rows
        if not groups:
            return parquet.schema_arrow.empty_table()
        table = parquet.read_row_groups(groups)
    assert first is not None
    return table.slice(start - first, stop - start)
