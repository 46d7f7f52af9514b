"""Atomic writes, completion markers and the on-disk form of pairs, on any storage.

Every file a stage produces is written under a temporary name and then renamed into place
(or, on object storage, uploaded in one piece: `core.storage`), so a reader never sees
half a file and a killed run leaves at most a stray local `.tmp-*` file. A finished unit
of work (a part, a shard, a whole stage) leaves a marker `<name>.done`, written last; a
rerun skips units whose marker exists. Locations are local paths or URLs (`s3://...`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from core import storage
from core.record import PAIR_SCHEMA, Pair, pairs_to_table, table_to_pairs
from core.storage import FILE_MODE, TMP_PREFIX, PathLike, atomic_open, atomic_path

__all__ = [
    "FILE_MODE",
    "TMP_PREFIX",
    "atomic_open",
    "atomic_path",
    "clear_done",
    "is_done",
    "mark_done",
    "marker_path",
    "parquet_files",
    "read_json",
    "read_pairs",
    "read_parquet",
    "read_table",
    "remove_stale_temporaries",
    "saved_once",
    "write_json",
    "write_pairs",
    "write_table",
    "write_text",
]


def remove_stale_temporaries(folder: PathLike) -> int:
    """Delete the `.tmp-*` files a killed writer left in a local `folder`; returns how many.

    Only for a stage's own output folder at the stage's start: one run owns a folder.
    Object storage has none (an upload that did not finish leaves no object).
    """
    if storage.is_remote(folder) or not os.path.isdir(storage.local(folder)):
        return 0
    stale = 0
    for root, _dirs, files in os.walk(storage.local(folder)):
        for file_name in files:
            if file_name.startswith(TMP_PREFIX):
                os.unlink(os.path.join(root, file_name))
                stale += 1
    return stale


def write_text(location: PathLike, text: str) -> None:
    with atomic_open(location, "w") as handle:
        handle.write(text)


def write_json(location: PathLike, obj: Any) -> None:
    write_text(location, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(location: PathLike) -> Any:
    return json.loads(storage.read_bytes(location))


def saved_once(location: PathLike, make: Callable[[], Any]) -> Any:
    """The JSON at `location`, or `make()` written there first: a decision (a stage's plan)
    taken when a unit first starts and kept for every resume."""
    if storage.exists(location):
        return read_json(location)
    value = make()
    write_json(location, value)
    return value


def marker_path(folder: PathLike, name: str) -> str:
    return storage.join(folder, f"{name}.done")


def mark_done(folder: PathLike, name: str, info: dict[str, Any] | None = None) -> None:
    """Leave the completion marker of unit `name` in `folder`."""
    write_json(marker_path(folder, name), info or {})


def is_done(folder: PathLike, name: str) -> bool:
    return storage.exists(marker_path(folder, name))


def done_info(folder: PathLike, name: str) -> dict[str, Any]:
    """What `mark_done` recorded for a finished unit."""
    info: dict[str, Any] = read_json(marker_path(folder, name))
    return info


def clear_done(folder: PathLike, name: str) -> None:
    storage.remove(marker_path(folder, name))


def write_table(
    location: PathLike,
    table: pa.Table,
    compression: str | dict[str, str] = "zstd",
    row_group_size: int | None = None,
) -> None:
    with atomic_path(location) as tmp:
        pq.write_table(table, tmp, compression=compression, row_group_size=row_group_size)


def write_pairs(location: PathLike, pairs: Iterable[Pair]) -> int:
    """Write pairs to a parquet file atomically; returns the number of rows."""
    table = pairs_to_table(pairs)
    write_table(location, table)
    return table.num_rows


def parquet_files(location: PathLike) -> list[str]:
    """A parquet file, or the sorted parquet files in a folder (temporary files skipped)."""
    if storage.is_file(location):
        return [storage.name(location)]
    if not storage.is_dir(location):
        raise FileNotFoundError(f"no such file or folder: {storage.name(location)}")
    return storage.list_files(location, ".parquet")


def read_parquet(location: PathLike, columns: list[str] | None = None) -> pa.Table:
    """One parquet file as it is stored, from local disk or object storage."""
    return pq.read_table(
        storage.arrow_path(location),
        columns=columns,
        filesystem=storage.arrow_filesystem(location),
    )


def read_table(location: PathLike, columns: list[str] | None = None) -> pa.Table:
    """All rows of a parquet file or folder in `PAIR_SCHEMA` (missing columns as nulls)."""
    tables = [align(read_parquet(p)) for p in parquet_files(location)]
    table = pa.concat_tables(tables) if tables else PAIR_SCHEMA.empty_table()
    return table.select(columns) if columns else table


def align(table: pa.Table, schema: pa.Schema = PAIR_SCHEMA) -> pa.Table:
    """`table` with exactly the columns of `schema`, cast, missing ones as nulls."""
    columns = []
    for fld in schema:
        if fld.name in table.column_names:
            columns.append(table.column(fld.name).cast(fld.type))
        else:
            columns.append(pa.nulls(table.num_rows, fld.type))
    return pa.Table.from_arrays(columns, schema=schema)


def read_pairs(location: PathLike) -> Iterator[Pair]:
    return table_to_pairs(read_table(location))
