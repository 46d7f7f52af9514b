from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.io import (
    FILE_MODE,
    atomic_open,
    clear_done,
    is_done,
    mark_done,
    read_pairs,
    read_table,
    remove_stale_temporaries,
    write_pairs,
)
from core.record import PAIR_SCHEMA, Pair, pair_uid


def test_atomic_open_leaves_nothing_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_open(target) as handle:
        handle.write("new, half written")
        raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_atomic_open_replaces(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "out.txt"
    with atomic_open(target) as handle:
        handle.write("new")
    assert target.read_text() == "new"


def test_markers(tmp_path: Path) -> None:
    assert not is_done(tmp_path, "part-00001")
    mark_done(tmp_path, "part-00001", {"rows": 3})
    assert is_done(tmp_path, "part-00001")
    clear_done(tmp_path, "part-00001")
    assert not is_done(tmp_path, "part-00001")


def test_pairs_round_trip(tmp_path: Path) -> None:
    pairs = [
        Pair(url="http://a.test/1.jpg", caption="a red circle", matched=["red", "circle"]),
        Pair(url="http://a.test/2.jpg", caption="", phash=2**64 - 1, width=256, height=200),
        Pair(url="http://a.test/1.jpg", caption="x").dropped("text:too_short"),
    ]
    assert write_pairs(tmp_path / "p.parquet", pairs) == 3
    assert list(read_pairs(tmp_path / "p.parquet")) == pairs
    assert pairs[0].uid == pair_uid("a red circle", "http://a.test/1.jpg")


def test_read_table_aligns_foreign_columns(tmp_path: Path) -> None:
    # A file with only some of the columns (and one extra) reads back in PAIR_SCHEMA.
    table = pa.table({"url": ["http://a.test/x.jpg"], "caption": ["dog"], "extra": [1]})
    pq.write_table(table, tmp_path / "a.parquet")
    write_pairs(tmp_path / "b.parquet", [Pair(url="http://b.test/y.jpg", caption="cat")])
    (tmp_path / ".tmp-c.parquet").write_bytes(b"half written")
    out = read_table(tmp_path)
    assert out.schema == PAIR_SCHEMA
    assert out.column("caption").to_pylist() == ["dog", "cat"]


def test_stale_temporaries_are_removed(tmp_path: Path) -> None:
    (tmp_path / ".tmp-00001.tar.abc").write_bytes(b"half")
    (tmp_path / "00000.tar").write_bytes(b"whole")
    assert remove_stale_temporaries(tmp_path) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["00000.tar"]
    assert remove_stale_temporaries(tmp_path / "missing") == 0


def test_outputs_get_the_usual_file_mode(tmp_path: Path) -> None:
    with atomic_open(tmp_path / "out.txt") as handle:
        handle.write("x")
    assert (tmp_path / "out.txt").stat().st_mode & 0o777 == FILE_MODE
    assert FILE_MODE & 0o044  # readable by others under any ordinary umask
