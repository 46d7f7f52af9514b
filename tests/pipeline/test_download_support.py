"""A loopback image server and helpers for the `download` tests (img2dataset's command)."""

from __future__ import annotations

import json
import tarfile
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, ClassVar

import pyarrow.parquet as pq
import pytest

from core.config import PipelineConfig
from core.stats import StageStats
from pipeline.stages.download import DownloadOptions, parse_flags, run_download
from tests.services import http_server, reply
from tests.shards.conftest import photo_jpeg

BODIES: dict[str, bytes] = {f"/{i}.jpg": photo_jpeg(320, 240, seed=i) for i in range(6)}
BODIES["/bad.jpg"] = b"nope"
BODIES["/wide.jpg"] = photo_jpeg(400, 100, seed=7)
BODIES["/small.jpg"] = photo_jpeg(40, 30, seed=8)
BODIES["/optout.jpg"] = photo_jpeg(320, 240, seed=9)
BODIES["/flaky.jpg"] = photo_jpeg(320, 240, seed=10)
BODIES["/slow.jpg"] = photo_jpeg(320, 240, seed=11)
BODIES["/copy.jpg"] = BODIES["/0.jpg"]  # an exact duplicate
# The rows of the recorded img2dataset run (tests/pipeline/img2dataset_layout.json).
LAYOUT_ROWS = [(f"/{i}.jpg", f"cap {i}", f"x{i}") for i in range(6)]
LAYOUT_ROWS += [("/bad.jpg", "bad", "y"), ("/missing.jpg", "missing", "z")]
LAYOUT_FLAGS = [
    "--input_format", "csv", "--caption_col", "caption", "--output_format", "webdataset",
    "--number_sample_per_shard", "5", "--processes_count", "2",
    "--save_additional_columns", '["extra"]',
]  # fmt: skip


class ImageHandler(BaseHTTPRequestHandler):
    """BODIES by path (404 otherwise); /flaky.jpg is a 500 on its first request, /slow.jpg
    answers after 2 s, /optout.jpg carries X-Robots-Tag: noai."""

    hits: ClassVar[dict[str, int]] = {}

    def do_GET(self) -> None:
        self.hits[self.path] = self.hits.get(self.path, 0) + 1
        body = BODIES.get(self.path)
        if self.path == "/slow.jpg":
            time.sleep(2)
        status = 200 if body is not None else 404
        if self.path == "/flaky.jpg" and self.hits[self.path] == 1:
            status, body = 500, b""
        headers = {"X-Robots-Tag": "noai"} if self.path == "/optout.jpg" else None
        reply(self, status, body or b"", headers=headers)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    ImageHandler.hits = {}
    with http_server(ImageHandler) as base:
        yield base.removeprefix("http://")


def write_csv(path: Path, host: str, rows: list[tuple[str, str, str]]) -> Path:
    lines = ["url,caption,extra"] + [f"http://{host}{p},{c},{e}" for p, c, e in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def download(
    host: str, url_list: Path, out: Path, *flags: str
) -> tuple[DownloadOptions, PipelineConfig, StageStats]:
    """Run `download` in this process with img2dataset's flags, the server allowed."""
    argv = ["--url_list", str(url_list), "--output_folder", str(out), *flags]
    options, config, _ = parse_flags([*argv, "--set", f"net.allow_private=['{host}']"])
    return options, config, run_download(options, config, quiet=True)


def parquet_rows(folder: Path) -> list[dict[str, Any]]:
    rows = []
    for path in sorted(folder.glob("*.parquet")):
        rows += pq.read_table(path).to_pylist()
    return sorted(rows, key=lambda row: row["key"])


def describe_layout(folder: Path, base: str) -> dict[str, Any]:
    """What downstream code sees of an img2dataset output folder, URLs without `base`:
    file names, parquet columns and types, each row's key and status, tar members,
    the `.json` fields, the `_stats.json` fields."""
    tars = sorted(folder.glob("*.tar"))
    members: list[str] = []
    json_fields: list[str] = []
    for path in tars:
        with tarfile.open(path) as tar:
            for member in tar:
                members.append(member.name)
                if member.name.endswith(".json") and not json_fields:
                    extracted = tar.extractfile(member)
                    assert extracted is not None
                    json_fields = list(json.loads(extracted.read()))
    first = sorted(folder.glob("*.parquet"))[0]
    schema = pq.read_schema(first)
    stats = json.loads(sorted(folder.glob("*_stats.json"))[0].read_text())
    rows = parquet_rows(folder)
    return {
        "files": sorted(p.name for p in folder.iterdir() if p.is_file()),
        "columns": [[field.name, str(field.type)] for field in schema],
        "rows": [
            [
                row["key"],
                str(row["url"]).removeprefix(base),
                row["status"],
                row["width"],
                row["height"],
                row["original_width"],
                row["original_height"],
            ]
            for row in rows
        ],
        "members": sorted(members),  # img2dataset writes them as downloads finish
        "json_fields": json_fields,
        "stats_fields": sorted(stats),
    }
