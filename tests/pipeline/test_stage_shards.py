"""The shards stage's fetch pass: one stream over the parts, staged parts, markers, resume."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pyarrow.parquet as pq
import pytest

from pipeline.config import ShardsConfig
from pipeline.io import is_done
from pipeline.layout import RunLayout
from pipeline.record import STATUS_FAILED_DECODE, STATUS_FAILED_DOWNLOAD, STATUS_SUCCESS, Pair
from pipeline.stages.shards import IMAGE_COLUMN, fetch_parts, part_name, worker_pool
from pipeline.stats import StageStats
from tests.shards.conftest import photo_jpeg

PHOTOS = [f"/img/{i}.jpg" for i in range(5)]
BODIES = {path: photo_jpeg(320, 240, seed=i) for i, path in enumerate(PHOTOS)}
BODIES["/img/garbage.jpg"] = b"\xff\xd8\xff\xe0 not a jpeg"


class ImageHandler(BaseHTTPRequestHandler):
    """Serves BODIES (404 for anything else) and counts the requests per path."""

    hits: ClassVar[dict[str, int]] = {}

    def do_GET(self) -> None:
        self.hits[self.path] = self.hits.get(self.path, 0) + 1
        body = BODIES.get(self.path)
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    ImageHandler.hits = {}
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), ImageHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def make_plan(base: str) -> list[list[Pair]]:
    paths = [*sorted(BODIES), "/img/missing.jpg"]
    pairs = sorted(
        (Pair(url=base + path, caption=f"picture {path}") for path in paths),
        key=lambda p: p.uid,
    )
    return [pairs[:4], pairs[4:]]


def staged(layout: RunLayout, part: int) -> list[dict[str, Any]]:
    return pq.read_table(layout.images_dir / f"{part_name(part)}.parquet").to_pylist()


def test_parts_are_staged_in_uid_order_with_failures_as_rows(tmp_path: Path, server: str):
    config = ShardsConfig(image_size=64, min_image_side=0, allow_private_addresses=True)
    layout, plan = RunLayout(tmp_path), make_plan(server)
    with worker_pool(2) as pool:
        fetch_parts(plan, config, layout, StageStats("fetch"), pool)
    for part, pairs in enumerate(plan):
        assert is_done(layout.images_dir, part_name(part))
        rows = staged(layout, part)
        assert [row["uid"] for row in rows] == [pair.uid for pair in pairs]
    by_path = {
        str(row["url"]).removeprefix(server): row for part in (0, 1) for row in staged(layout, part)
    }
    assert by_path["/img/missing.jpg"]["status"] == STATUS_FAILED_DOWNLOAD
    assert by_path["/img/garbage.jpg"]["status"] == STATUS_FAILED_DECODE
    assert by_path["/img/missing.jpg"][IMAGE_COLUMN] is None
    assert by_path["/img/garbage.jpg"][IMAGE_COLUMN] is None
    for path in PHOTOS:
        assert by_path[path]["status"] == STATUS_SUCCESS
        assert (by_path[path]["width"], by_path[path]["height"]) == (85, 64)
        assert bytes(by_path[path][IMAGE_COLUMN])[:2] == b"\xff\xd8"  # encoded JPEG


def test_images_are_stored_uncompressed(tmp_path: Path, server: str):
    config = ShardsConfig(image_size=64, min_image_side=0, allow_private_addresses=True)
    layout = RunLayout(tmp_path)
    with worker_pool(1) as pool:
        fetch_parts(make_plan(server), config, layout, StageStats("fetch"), pool)
    metadata = pq.ParquetFile(layout.images_dir / f"{part_name(0)}.parquet").metadata
    schema = metadata.schema.to_arrow_schema()
    codecs = {
        schema.field(i).name: metadata.row_group(0).column(i).compression
        for i in range(metadata.num_columns)
    }
    assert codecs[IMAGE_COLUMN] == "UNCOMPRESSED"
    assert codecs["url"] == "ZSTD"


def test_a_rerun_fetches_only_the_parts_without_a_marker(tmp_path: Path, server: str):
    config = ShardsConfig(image_size=64, min_image_side=0, allow_private_addresses=True)
    layout, plan = RunLayout(tmp_path), make_plan(server)
    with worker_pool(2) as pool:
        fetch_parts(plan, config, layout, StageStats("fetch"), pool)
        first = staged(layout, 1)
        (layout.images_dir / f"{part_name(1)}.done").unlink()
        ImageHandler.hits = {}
        fetch_parts(plan, config, layout, StageStats("fetch"), pool)
    assert sorted(server + path for path in ImageHandler.hits) == sorted(p.url for p in plan[1])
    assert staged(layout, 1) == first
