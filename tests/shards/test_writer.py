"""ShardWriter: img2dataset layout, webdataset-readable tars, atomicity, determinism."""

from __future__ import annotations

import concurrent.futures
import io
import multiprocessing
import tarfile
from pathlib import Path

import imagehash
import pytest
import webdataset as wds
from PIL import Image

from core.config import ShardsConfig
from core.io import is_done, read_json, read_pairs
from core.record import (
    STATUS_CANDIDATE,
    STATUS_FAILED_DECODE,
    STATUS_FAILED_DOWNLOAD,
    STATUS_SUCCESS,
    Pair,
)
from shards import writer as shard_writer
from shards.images import ImageProcessError, ProcessedImage, process_image
from shards.writer import JSON_FIELDS, ShardWriter
from tests.shards.conftest import photo_jpeg

CONFIG = ShardsConfig(image_size=64)


def make_inputs(n: int = 6) -> list[tuple[Pair, bytes | None]]:
    """Pairs with downloaded bytes: photos, one broken body, one failed download."""
    inputs: list[tuple[Pair, bytes | None]] = []
    for i in range(n):
        pair = Pair(url=f"http://127.0.0.1/img/{i}.jpg", caption=f"a photo number {i} ✓")
        pair.page_url = "http://127.0.0.1/page.html"
        pair.language = "en"
        pair.matched = ["photo"]
        inputs.append((pair, photo_jpeg(120 + 10 * i, 90, seed=i)))
    broken = Pair(url="http://127.0.0.1/img/broken.jpg", caption="a broken image")
    inputs.insert(2, (broken, b"\xff\xd8\xff\xe0 not really a jpeg"))
    missing = Pair(
        url="http://127.0.0.1/img/missing.jpg",
        caption="a missing image",
        status=STATUS_FAILED_DOWNLOAD,
        error_message="HTTP 404",
        http_status=404,
    )
    inputs.insert(4, (missing, None))
    return inputs


def processed(inputs: list[tuple[Pair, bytes | None]]) -> list[tuple[Pair, ProcessedImage | None]]:
    """What the runner does: process the bytes, turning an error into the pair's status."""
    results: list[tuple[Pair, ProcessedImage | None]] = []
    for pair, data in inputs:
        if data is None:
            results.append((pair, None))
            continue
        try:
            results.append((pair, process_image(data, CONFIG)))
        except ImageProcessError as exc:
            pair.status, pair.error_message = exc.status, str(exc)
            results.append((pair, None))
    return results


def write_shard(folder: Path, shard_id: int, results: list) -> ShardWriter:  # type: ignore[type-arg]
    with ShardWriter(folder, shard_id) as writer:
        for pair, image in results:
            writer.write(pair, image)
    return writer


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_shard_files_and_stats(tmp_path: Path):
    write_shard(tmp_path, 7, processed(make_inputs()))
    names = leftovers(tmp_path)
    assert names == ["00007.done", "00007.parquet", "00007.tar", "00007_stats.json"]
    stats = read_json(tmp_path / "00007_stats.json")
    assert stats["count"] == 8
    assert stats["samples"] == stats["successes"] == 6
    assert stats["failed_to_download"] == 1
    assert stats["failed_to_resize"] == 1  # img2dataset counts decode failures here
    assert stats["status_dict"] == {
        STATUS_FAILED_DECODE: 1,
        STATUS_FAILED_DOWNLOAD: 1,
        STATUS_SUCCESS: 6,
    }
    assert stats["error_dict"]["HTTP 404"] == 1
    assert stats["end_time"] >= stats["start_time"]
    assert read_json(tmp_path / "00007.done") == {"count": 8, "samples": 6}


def test_shard_reads_with_webdataset(tmp_path: Path):
    inputs = processed(make_inputs())
    write_shard(tmp_path, 0, inputs)
    dataset = wds.WebDataset([str(tmp_path / "00000.tar")], shardshuffle=False).decode("pil")
    samples = list(dataset)
    successes = [pair for pair, image in inputs if image is not None]
    assert len(samples) == len(successes) == 6
    for sample, pair in zip(samples, successes, strict=True):
        assert sample["txt"] == pair.caption
        meta = sample["json"]
        assert set(meta) == set(JSON_FIELDS)
        assert meta["key"] == sample["__key__"]
        assert meta["url"] == pair.url and meta["status"] == STATUS_SUCCESS
        assert sample["jpg"].size == (meta["width"], meta["height"])
        assert meta["height"] == 64 and meta["original_height"] == 90
        assert len(meta["phash"]) == 16 and len(meta["sha256"]) == 64
        assert str(imagehash.hex_to_hash(meta["phash"])) == meta["phash"]
        assert int(meta["phash"], 16) == next(
            i.phash for p, i in inputs if p.url == meta["url"] and i
        )
        assert meta["matched"] == ["photo"] and meta["language"] == "en"


def test_parquet_holds_every_row_with_keys(tmp_path: Path):
    write_shard(tmp_path, 3, processed(make_inputs()))
    rows = list(read_pairs(tmp_path / "00003.parquet"))
    assert [r.key for r in rows] == [f"0000300{i:02d}" for i in range(8)]
    assert all(r.shard == 3 for r in rows)
    failed = {r.url.rsplit("/", 1)[1]: r for r in rows if r.status != STATUS_SUCCESS}
    assert failed["missing.jpg"].status == STATUS_FAILED_DOWNLOAD
    assert failed["missing.jpg"].error_message == "HTTP 404"
    assert failed["missing.jpg"].http_status == 404
    assert failed["broken.jpg"].status == STATUS_FAILED_DECODE
    assert failed["broken.jpg"].error_message
    good = [r for r in rows if r.status == STATUS_SUCCESS]
    assert all(r.phash is not None and r.width and r.sha256 for r in good)
    with tarfile.open(tmp_path / "00003.tar") as tar:
        tar_keys = {name.split(".")[0] for name in tar.getnames()}
    assert tar_keys == {r.key for r in good}


def test_dropped_pair_is_a_row_but_not_a_sample(tmp_path: Path):
    image = process_image(photo_jpeg(100, 100, seed=1), CONFIG)
    kept = Pair(url="http://127.0.0.1/a.jpg", caption="a kept image")
    dup = Pair(url="http://127.0.0.1/b.jpg", caption="a near duplicate").dropped("near_dup:phash")
    writer = write_shard(tmp_path, 0, [(kept, image), (dup, image)])
    assert writer.samples == 1
    rows = list(read_pairs(tmp_path / "00000.parquet"))
    assert rows[1].drop_reason == "near_dup:phash" and rows[1].phash == image.phash
    stats = read_json(tmp_path / "00000_stats.json")
    assert stats["dropped"] == 1 and stats["drop_dict"] == {"near_dup:phash": 1}
    stage = writer.stage_stats()
    assert (stage.seen, stage.kept, dict(stage.dropped)) == (2, 1, {"near_dup:phash": 1})


def test_tar_is_byte_identical_across_writes(tmp_path: Path):
    results = processed(make_inputs())
    write_shard(tmp_path / "a", 1, results)
    write_shard(tmp_path / "b", 1, processed(make_inputs()))
    first = (tmp_path / "a" / "00001.tar").read_bytes()
    assert first == (tmp_path / "b" / "00001.tar").read_bytes()
    with tarfile.open(fileobj=io.BytesIO(first)) as tar:
        members = tar.getmembers()
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, 0, "", "")}
    names = [m.name for m in members]
    assert names[:3] == ["000010000.jpg", "000010000.json", "000010000.txt"]


def test_exception_mid_shard_leaves_nothing(tmp_path: Path):
    results = processed(make_inputs())
    with pytest.raises(RuntimeError, match="worker died"), ShardWriter(tmp_path, 2) as writer:
        for pair, image in results[:4]:
            writer.write(pair, image)
        raise RuntimeError("worker died")
    assert leftovers(tmp_path) == []


def test_failed_rewrite_removes_the_old_shard(tmp_path: Path):
    results = processed(make_inputs())
    write_shard(tmp_path, 0, results)
    assert is_done(tmp_path, "00000")
    with pytest.raises(KeyboardInterrupt), ShardWriter(tmp_path, 0) as writer:
        writer.write(*results[0])
        raise KeyboardInterrupt
    assert leftovers(tmp_path) == []


def test_image_of_another_format_is_refused(tmp_path: Path):
    png = process_image(photo_jpeg(80, 80, seed=2), ShardsConfig(encode_format="png"))
    pair = Pair(url="http://127.0.0.1/p.png", caption="a png image")
    with pytest.raises(ValueError, match="png"), ShardWriter(tmp_path, 0, "jpg") as writer:
        writer.write(pair, png)
    assert leftovers(tmp_path) == []


def test_png_and_webp_shards(tmp_path: Path):
    for fmt in ("png", "webp"):
        image = process_image(photo_jpeg(80, 80, seed=3), ShardsConfig(encode_format=fmt))
        folder = tmp_path / fmt
        with ShardWriter(folder, 0, fmt) as writer:
            writer.write(Pair(url=f"http://127.0.0.1/x.{fmt}", caption="a picture"), image)
        sample = next(iter(wds.WebDataset([str(folder / "00000.tar")], shardshuffle=False)))
        assert Image.open(io.BytesIO(sample[fmt])).size == (256, 256)


def test_key_digits_bound_the_rows(tmp_path: Path):
    pair = Pair(url="http://127.0.0.1/gone.jpg", caption="gone", status=STATUS_FAILED_DOWNLOAD)
    with pytest.raises(ValueError, match="full"), ShardWriter(tmp_path, 0, index_digits=1) as w:
        for _ in range(10):
            w.write(pair, None)
        assert w.rows[-1].key == "000009"
        w.write(pair, None)
    assert leftovers(tmp_path) == []


def test_write_outside_with_is_refused(tmp_path: Path):
    writer = ShardWriter(tmp_path, 0)
    with pytest.raises(RuntimeError):
        writer.write(Pair(url="http://127.0.0.1/a.jpg", caption="x"), None)
    with pytest.raises(ValueError):
        ShardWriter(tmp_path, 0, "gif")


def test_write_shard_in_a_worker_process_matches_the_writer(tmp_path: Path):
    results = processed(make_inputs())
    write_shard(tmp_path / "here", 4, results)
    context = multiprocessing.get_context("forkserver")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        rows = pool.submit(shard_writer.write_shard, tmp_path / "pool", 4, results).result()
    assert leftovers(tmp_path / "pool") == leftovers(tmp_path / "here")
    for name in ("00004.tar", "00004.parquet"):
        assert (tmp_path / "pool" / name).read_bytes() == (tmp_path / "here" / name).read_bytes()
    assert rows == list(read_pairs(tmp_path / "pool" / "00004.parquet"))
    assert [row.key for row in rows] == [f"00004{i:04d}" for i in range(len(results))]


def test_big_shards_get_more_index_digits(tmp_path: Path) -> None:
    rows = [(Pair(url=f"http://a.test/{i}.jpg", caption="x"), None) for i in range(10_001)]
    written = shard_writer.write_shard(tmp_path, 3, rows, samples_per_shard=20_000)
    assert [r.key for r in written[:2]] == ["0000300000", "0000300001"]
    assert written[-1].key == "0000310000"
    assert all(r.status == STATUS_CANDIDATE for r in written)
