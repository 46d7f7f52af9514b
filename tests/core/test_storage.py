"""core.storage and core.io on a local folder and on S3 (moto, tests/services.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import fsspec
import pyarrow as pa
import pytest

from core import io, storage

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["local", "s3"])
def root(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A folder to work in: under tmp_path, or in a fresh bucket."""
    if request.param == "local":
        return str(tmp_path / "root")
    bucket: str = request.getfixturevalue("s3_bucket")
    return f"{bucket}/root"


def put_raw(location: str, data: bytes) -> None:
    """Bytes written straight to the storage, past `storage` (as another writer would)."""
    if storage.is_remote(location):
        fsspec.filesystem("s3").pipe(location, data)
    else:
        Path(location).parent.mkdir(parents=True, exist_ok=True)
        Path(location).write_bytes(data)


def test_json_round_trip_and_overwrite(root: str) -> None:
    target = storage.join(root, "sub", "stats.json")
    io.write_json(target, {"b": 2, "a": [1, "x"]})
    assert io.read_json(target) == {"a": [1, "x"], "b": 2}
    io.write_json(target, {"c": None})
    assert io.read_json(target) == {"c": None}
    assert storage.read_text(target).endswith("\n")


def test_atomic_path_shows_nothing_when_the_block_raises(root: str) -> None:
    target = storage.join(root, "out.bin")
    with pytest.raises(RuntimeError, match="killed"), storage.atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed")
    assert not storage.exists(target)
    assert storage.list_names(root) == []
    storage.write_bytes(target, b"old")
    with pytest.raises(RuntimeError), io.atomic_open(target, "wb") as handle:
        handle.write(b"new, half written")
        raise RuntimeError("killed")
    assert storage.read_bytes(target) == b"old"
    if not storage.is_remote(root):  # no temporary left behind either
        assert sorted(p.name for p in Path(root).iterdir()) == ["out.bin"]


def test_list_names_sorted_files_only_without_temporaries(root: str) -> None:
    for name in ["b.parquet", "a.parquet", "c.json"]:
        storage.write_bytes(storage.join(root, name), b"x")
    put_raw(storage.join(root, ".tmp-a.parquet.123"), b"partial")
    storage.write_bytes(storage.join(root, "sub", "d.parquet"), b"x")
    assert storage.list_names(root) == ["a.parquet", "b.parquet", "c.json"]
    assert storage.list_names(root, ".parquet") == ["a.parquet", "b.parquet"]
    assert storage.list_files(root, ".json") == [storage.join(root, "c.json")]
    assert storage.list_names(storage.join(root, "missing")) == []
    assert io.parquet_files(root) == storage.list_files(root, ".parquet")


def test_listing_sees_new_and_removed_files(root: str) -> None:
    assert storage.list_names(root) == []
    storage.write_bytes(storage.join(root, "one"), b"1")
    assert storage.list_names(root) == ["one"]
    put_raw(storage.join(root, "two"), b"2")  # written by someone else
    assert storage.list_names(root) == ["one", "two"]
    storage.remove(storage.join(root, "one"))
    assert storage.list_names(root) == ["two"]
    assert not storage.exists(storage.join(root, "one"))


def test_exists_is_file_is_dir(root: str) -> None:
    folder = storage.join(root, "folder")
    file = storage.join(folder, "file.txt")
    missing = storage.join(root, "missing")
    storage.write_bytes(file, b"x")
    assert storage.exists(file) and storage.is_file(file) and not storage.is_dir(file)
    assert storage.exists(folder) and storage.is_dir(folder) and not storage.is_file(folder)
    assert not storage.exists(missing)
    assert not storage.is_file(missing) and not storage.is_dir(missing)


def test_remove_and_remove_tree(root: str) -> None:
    file = storage.join(root, "keep", "a.txt")
    tree = storage.join(root, "tree")
    storage.write_bytes(file, b"x")
    for name in ["x", "y/z", "y/w/v"]:
        storage.write_bytes(storage.join(tree, *name.split("/")), b"x")
    storage.remove(file)
    storage.remove(file)  # already gone: no error
    assert not storage.exists(file)
    storage.remove_tree(tree)
    storage.remove_tree(tree)
    assert not storage.exists(tree) and not storage.is_dir(tree)
    assert storage.list_names(tree) == []


def test_write_table_and_read_parquet(root: str) -> None:
    table = pa.table({"uid": ["a", "b"], "width": pa.array([3, None], pa.int32())})
    target = storage.join(root, "parts", "part-0.parquet")
    io.write_table(target, table)
    assert io.read_parquet(target).equals(table)
    assert io.read_parquet(target, columns=["width"]).column("width").to_pylist() == [3, None]
    assert io.parquet_files(target) == [target]
    assert storage.read_bytes(target)[:4] == b"PAR1"
    with pytest.raises(FileNotFoundError):
        io.parquet_files(storage.join(root, "nothing"))


def test_markers(root: str) -> None:
    assert not io.is_done(root, "part-0")
    io.mark_done(root, "part-0", {"rows": 12})
    assert io.is_done(root, "part-0")
    assert io.done_info(root, "part-0") == {"rows": 12}
    assert storage.list_names(root) == ["part-0.done"]
    io.clear_done(root, "part-0")
    assert not io.is_done(root, "part-0")


def test_names_and_paths() -> None:
    assert (
        storage.join("s3://bucket/run/", "crawl", "a.parquet") == "s3://bucket/run/crawl/a.parquet"
    )
    assert storage.parent("s3://bucket/run/crawl/") == "s3://bucket/run"
    assert storage.basename("s3://bucket/run/crawl/") == "crawl"
    assert storage.arrow_path("s3://bucket/key") == "bucket/key"
    assert storage.is_remote("s3://b/k") and not storage.is_remote("file:///tmp/x")
    assert storage.local("file:///tmp/x") == "/tmp/x"


def test_a_child_process_reaches_the_same_bucket(s3_bucket: str) -> None:
    target = f"{s3_bucket}/from-parent.json"
    io.write_json(target, {"hello": "child"})
    code = "import sys; from core import io; print(io.read_json(sys.argv[1])['hello'])"
    done = subprocess.run(
        [sys.executable, "-c", code, target],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "child"
