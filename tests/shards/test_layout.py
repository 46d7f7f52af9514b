"""Shard planning, completion, sizes.json and the manifest."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest

from core.config import ShardsConfig
from core.io import read_json
from core.record import STATUS_FAILED_DOWNLOAD, Pair
from shards.images import process_image
from shards.layout import (
    completed_shards,
    index_digits,
    list_shards,
    plan_shards,
    shard_name,
    write_manifest,
    write_sizes_json,
)
from shards.writer import ShardWriter
from tests.shards.conftest import photo_jpeg


def uids(n: int) -> list[str]:
    return [hashlib.md5(str(i).encode()).hexdigest() for i in range(n)]


def test_plan_is_sorted_chunked_and_order_free():
    selection = uids(25)
    plan = plan_shards(selection, 10)
    assert [len(shard) for shard in plan] == [10, 10, 5]
    assert [uid for shard in plan for uid in shard] == sorted(selection)
    shuffled = list(selection)
    random.Random(1).shuffle(shuffled)
    assert plan_shards(iter(shuffled), 10) == plan
    assert plan_shards([], 10) == []
    with pytest.raises(ValueError):
        plan_shards(selection, 0)


def test_names_and_digits():
    assert shard_name(42) == "00042"
    assert shard_name(123456) == "123456"
    assert index_digits(1000) == 3 and index_digits(10_000) == 4 and index_digits(10_001) == 5
    assert index_digits(1) == 0 and index_digits(999) == 3 and index_digits(1001) == 4
    with pytest.raises(ValueError):
        shard_name(-1)


def _write(folder: Path, shard_id: int, n_good: int, n_failed: int) -> None:
    image = process_image(photo_jpeg(90, 70, seed=shard_id), ShardsConfig(image_size=64))
    with ShardWriter(folder, shard_id) as writer:
        for i in range(n_good):
            writer.write(Pair(url=f"http://127.0.0.1/{shard_id}/{i}.jpg", caption="a cat"), image)
        for i in range(n_failed):
            failed = Pair(
                url=f"http://127.0.0.1/{shard_id}/gone{i}.jpg",
                caption="a dog",
                status=STATUS_FAILED_DOWNLOAD,
                error_message="timeout",
            )
            writer.write(failed, None)


def test_only_completed_shards_are_listed_and_summarised(tmp_path: Path):
    _write(tmp_path, 0, 3, 1)
    _write(tmp_path, 2, 2, 2)
    with pytest.raises(RuntimeError), ShardWriter(tmp_path, 1) as writer:
        writer.write(Pair(url="http://127.0.0.1/x.jpg", caption="x"), None)
        raise RuntimeError("killed")
    (tmp_path / "00003.tar").write_bytes(b"half a tar from a killed run")  # no marker
    (tmp_path / ".tmp-00004.tar.abc").write_bytes(b"")

    assert completed_shards(tmp_path) == {0, 2}
    assert list_shards(tmp_path) == [str(tmp_path / "00000.tar"), str(tmp_path / "00002.tar")]
    assert completed_shards(tmp_path / "absent") == set()

    sizes = write_sizes_json(tmp_path)
    assert sizes == {"00000.tar": 3, "00002.tar": 2}
    assert read_json(tmp_path / "sizes.json") == sizes

    manifest = write_manifest(tmp_path)
    assert read_json(tmp_path / "manifest.json") == manifest
    assert [entry["shard"] for entry in manifest["shards"]] == [0, 2]
    totals = manifest["totals"]
    assert (totals["count"], totals["samples"], totals["failed_to_download"]) == (8, 5, 3)
    assert totals["shards"] == 2
    assert totals["status_dict"] == {"failed_to_download": 3, "success": 5}
    assert totals["tar_bytes"] == sum(Path(p).stat().st_size for p in list_shards(tmp_path))
