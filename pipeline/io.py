"""Atomic writes, completion markers and the on-disk form of pairs.

Every file a stage produces is written under a temporary name in the same folder and then
renamed into place, so a reader never sees half a file and a killed run leaves at most a
stray `.tmp-*` file. A finished unit of work (a shard, a partition, a whole stage) leaves
a marker `<name>.done`; a rerun skips units whose marker exists.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.record import PAIR_SCHEMA, Pair, pairs_to_table, table_to_pairs

TMP_PREFIX = ".tmp-"


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once, at import: os.umask is process-wide, so reading it later could race with a
# writer thread creating a file in the instant it is 0.
FILE_MODE = 0o666 & ~_read_umask()


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it to `path` if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=TMP_PREFIX + target.name + ".", dir=target.parent)
    os.fchmod(fd, FILE_MODE)  # mkstemp makes 0600; outputs get the usual mode
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary file that becomes `path` when the block exits without error."""
    with atomic_path(path) as tmp, open(tmp, mode) as handle:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())


def remove_stale_temporaries(folder: str | Path) -> int:
    """Delete the `.tmp-*` files a killed writer left in `folder`; returns how many.

    Only for a stage's own output folder at the stage's start: one run owns a folder.
    """
    target = Path(folder)
    if not target.is_dir():
        return 0
    stale = [p for p in target.glob(TMP_PREFIX + "*") if p.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)


def write_text(path: str | Path, text: str) -> None:
    with atomic_open(path, "w") as handle:
        handle.write(text)


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: str | Path) -> Any:
    with open(path) as handle:
        return json.load(handle)


def marker_path(folder: str | Path, name: str) -> Path:
    return Path(folder) / f"{name}.done"


def mark_done(folder: str | Path, name: str, info: dict[str, Any] | None = None) -> None:
    """Leave the completion marker of unit `name` in `folder`."""
    write_json(marker_path(folder, name), info or {})


def is_done(folder: str | Path, name: str) -> bool:
    return marker_path(folder, name).exists()


def clear_done(folder: str | Path, name: str) -> None:
    marker_path(folder, name).unlink(missing_ok=True)


def write_table(path: str | Path, table: pa.Table) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def write_pairs(path: str | Path, pairs: Iterable[Pair]) -> int:
    """Write pairs to a parquet file atomically; returns the number of rows."""
    table = pairs_to_table(pairs)
    write_table(path, table)
    return table.num_rows


def parquet_files(path: str | Path) -> list[Path]:
    """A parquet file, or the sorted parquet files in a folder (temporary files skipped)."""
    target = Path(path)
    if target.is_file():
        return [target]
    if not target.is_dir():
        raise FileNotFoundError(f"no such file or folder: {target}")
    return sorted(p for p in target.glob("*.parquet") if not p.name.startswith(TMP_PREFIX))


def read_table(path: str | Path) -> pa.Table:
    """All rows of a parquet file or folder in `PAIR_SCHEMA` (missing columns as nulls)."""
    tables = [pq.read_table(p) for p in parquet_files(path)]
    if not tables:
        return PAIR_SCHEMA.empty_table()
    aligned = [_align(t) for t in tables]
    return pa.concat_tables(aligned)


def _align(table: pa.Table) -> pa.Table:
    columns = []
    for fld in PAIR_SCHEMA:
        if fld.name in table.column_names:
            columns.append(table.column(fld.name).cast(fld.type))
        else:
            columns.append(pa.nulls(table.num_rows, fld.type))
    return pa.Table.from_arrays(columns, schema=PAIR_SCHEMA)


def read_pairs(path: str | Path) -> Iterator[Pair]:
    return table_to_pairs(read_table(path))
