"""`python -m pipeline download` at scale: `--distributor ray` on a real two-node Ray cluster
and object storage (a moto S3 server) for the URL list and the output folder, both on
loopback, each checked against the same run on local processes and a local folder."""

from __future__ import annotations

import json
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import run_cli
from tests.pipeline.test_download_support import download
from tests.services import http_server, reply
from tests.shards.conftest import photo_jpeg

pytestmark = pytest.mark.slow

GOOD = 28
BODIES: dict[str, bytes] = {f"/{i}.jpg": photo_jpeg(96, 72, seed=i) for i in range(GOOD)}
BODIES["/bad.jpg"] = b"not an image"
# 30 rows, 10 a shard: shard 1 holds a row that fails to download, shard 2 one that fails
# to decode; the rest succeed.
PATHS = [f"/{i}.jpg" for i in range(GOOD)]
PATHS.insert(15, "/missing.jpg")
PATHS.insert(25, "/bad.jpg")
PER_SHARD = 10
SHARDS = 3
FLAGS = [
    "--input_format", "parquet", "--caption_col", "caption", "--output_format", "webdataset",
    "--number_sample_per_shard", str(PER_SHARD), "--image_size", "64",
    "--save_additional_columns", '["extra"]',
]  # fmt: skip
TIMING = ("duration", "start_time", "end_time")  # the only fields of a run that vary
# Two one-row shards whose images are answered only once both are asked for (or after
# MEET_SECONDS): they meet only if the two shards run at the same time.
MEET = ("/meet/0.jpg", "/meet/1.jpg")
MEET_SECONDS = 5.0


class CountingHandler(BaseHTTPRequestHandler):
    """BODIES by path (404 otherwise); every request counted by path."""

    hits: ClassVar[dict[str, int]] = {}
    lock: ClassVar[threading.Lock] = threading.Lock()
    arrived: ClassVar[dict[str, threading.Event]] = {path: threading.Event() for path in MEET}
    met: ClassVar[dict[str, bool]] = {}

    def do_GET(self) -> None:
        with self.lock:
            self.hits[self.path] = self.hits.get(self.path, 0) + 1
        if self.path in MEET:
            self.arrived[self.path].set()
            other = MEET[1 - MEET.index(self.path)]
            self.met[self.path] = self.arrived[other].wait(MEET_SECONDS)
        body = BODIES.get(self.path.replace("/meet/", "/"), b"")
        reply(self, 200 if body else 404, body)

    def log_message(self, *args: object) -> None:
        pass


def reset_meeting() -> None:
    for event in CountingHandler.arrived.values():
        event.clear()
    CountingHandler.met.clear()


def take_hits() -> dict[str, int]:
    with CountingHandler.lock:
        hits = dict(CountingHandler.hits)
        CountingHandler.hits.clear()
    return hits


@pytest.fixture(scope="module")
def image_host() -> Iterator[str]:
    """The loopback image server for the module: "127.0.0.1:PORT"."""
    with http_server(CountingHandler) as base:
        yield base.removeprefix("http://")


@pytest.fixture(scope="module")
def url_list(image_host: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("download-scale") / "urls.parquet"
    table = pa.table(
        {
            "url": [f"http://{image_host}{p}" for p in PATHS],
            "caption": [f"caption {i}" for i in range(len(PATHS))],
            "extra": list(range(len(PATHS))),
        }
    )
    pq.write_table(table, path)
    return path


@pytest.fixture(scope="module")
def reference(image_host: str, url_list: Path) -> Path:
    """The run on local processes (`--distributor multiprocessing --processes_count 2`)
    into a local folder: what every other run must write."""
    out = url_list.parent / "local"
    download(image_host, url_list, out, *FLAGS, "--distributor", "multiprocessing",
             "--processes_count", "2")  # fmt: skip
    take_hits()
    return out


# ---------------------------------------------------------------- describing an output


def local_files(folder: Path) -> dict[str, bytes]:
    """Every file under `folder`, by path relative to it."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def bucket_files(prefix: str) -> dict[str, bytes]:
    """Every object under `prefix` (s3://bucket/folder), by path relative to it."""
    import fsspec

    fs = fsspec.filesystem("s3")
    fs.invalidate_cache()
    root = prefix.removeprefix("s3://").rstrip("/")
    return {name[len(root) + 1 :]: fs.cat_file(name) for name in fs.find(root)}


def comparable(files: dict[str, bytes]) -> dict[str, Any]:
    """An output's files as they must match across runs: tars and parquets byte for byte
    (checked member by member and row by row too, for a readable failure), `_stats.json`
    and the markers as JSON less the timing fields; `_run/` (this run's config and
    totals) by name only."""
    described: dict[str, Any] = {}
    for name, data in sorted(files.items()):
        if name.startswith("_run/"):
            described[name] = None
        elif name.endswith(".tar"):
            with tarfile.open(fileobj=pa.BufferReader(data), mode="r") as tar:
                members = [(m.name, tar.extractfile(m).read()) for m in tar]  # type: ignore[union-attr]
            described[name] = (members, data)
        elif name.endswith(".parquet"):
            described[name] = (pq.read_table(pa.BufferReader(data)).to_pylist(), data)
        elif name.endswith(".json"):
            described[name] = {k: v for k, v in json.loads(data).items() if k not in TIMING}
        else:
            described[name] = data
    return described


def rows_of(files: dict[str, bytes]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for name, data in sorted(files.items()):
        if name.endswith(".parquet") and "/" not in name:
            rows += pq.read_table(pa.BufferReader(data)).to_pylist()
    return rows


def check_complete(files: dict[str, bytes]) -> None:
    """Every input row is in a shard parquet, once, in order, with its status; every shard
    has its tar, parquet and `_stats.json`."""
    rows = rows_of(files)
    assert [r["extra"] for r in rows] == list(range(len(PATHS)))
    # img2dataset's keys: 10 x shard + row (one index digit), padded to 5 + 1 digits
    assert [r["key"] for r in rows] == [f"{n:06d}" for n in range(len(PATHS))]
    statuses = {r["url"].rsplit("/", 1)[1]: r["status"] for r in rows}
    assert statuses.pop("missing.jpg") == "failed_to_download"
    assert statuses.pop("bad.jpg") == "failed_to_resize"
    assert set(statuses.values()) == {"success"} and len(statuses) == GOOD
    for shard in range(SHARDS):
        for suffix in (".tar", ".parquet", "_stats.json"):
            assert f"{shard:05d}{suffix}" in files, f"{shard:05d}{suffix}"
        stats = json.loads(files[f"{shard:05d}_stats.json"])
        assert stats["count"] == PER_SHARD
    assert not [n for n in files if n.startswith("_tmp/") or "/.tmp-" in n or n.startswith(".tmp-")]


def cli_download(image_host: str, url_list: str, out: str, *flags: str) -> None:
    result = run_cli(
        "download", "--url_list", url_list, "--output_folder", out, *FLAGS, *flags,
        "--set", f"net.allow_private=['{image_host}']", "-q", timeout=240,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]


def test_reference_run_is_complete(reference: Path) -> None:
    check_complete(local_files(reference))


# ---------------------------------------------------------------- Ray


def test_ray_distributor_writes_what_multiprocessing_writes(
    image_host: str, url_list: Path, reference: Path, ray_cluster: str, tmp_path: Path
) -> None:
    out = tmp_path / "ray"
    take_hits()
    address = f"executor.ray_address='{ray_cluster}'"
    cli_download(image_host, str(url_list), str(out), "--distributor", "ray",
                 "--processes_count", "2", "--set", address)  # fmt: skip
    hits = take_hits()
    assert hits == {p: 1 for p in PATHS}  # each row fetched once, by the cluster
    files = local_files(out)
    check_complete(files)
    assert comparable(files) == comparable(local_files(reference))
    config = (out / "_run" / "config.toml").read_text()
    assert 'kind = "ray"' in config and ray_cluster in config  # it did run on the cluster
    totals = json.loads((out / "_run" / "download_stats.json").read_text())
    assert totals["seen"] == len(PATHS) and totals["kept"] == GOOD


def test_ray_distributor_uses_the_cluster_without_processes_count(
    image_host: str, ray_cluster: str, tmp_path: Path
) -> None:
    """img2dataset's Ray distributor hands every shard to the cluster at once and lets Ray
    place them by its CPUs (two here, on two nodes): two one-row shards run together."""
    path = tmp_path / "meet.parquet"
    urls = [f"http://{image_host}{p}" for p in MEET]
    pq.write_table(pa.table({"url": urls, "caption": ["a", "b"], "extra": [0, 1]}), path)
    reset_meeting()
    out = tmp_path / "out"
    cli_download(image_host, str(path), str(out), "--distributor", "ray",
                 "--number_sample_per_shard", "1",
                 "--set", f"executor.ray_address='{ray_cluster}'")  # fmt: skip
    statuses = [pq.read_table(out / f"0000{i}.parquet").column("status")[0].as_py()
                for i in range(2)]  # fmt: skip
    assert statuses == ["success", "success"]
    assert CountingHandler.met == {MEET[0]: True, MEET[1]: True}  # the shards overlapped


# ---------------------------------------------------------------- object storage


def test_a_bucket_holds_the_url_list_and_the_output(
    image_host: str, url_list: Path, reference: Path, s3_bucket: str
) -> None:
    import fsspec

    fs = fsspec.filesystem("s3")
    remote_list = f"{s3_bucket}/urls.parquet"
    fs.put_file(str(url_list), remote_list)
    out = f"{s3_bucket}/out"
    take_hits()
    cli_download(image_host, remote_list, out, "--processes_count", "2")
    assert take_hits() == {p: 1 for p in PATHS}
    files = bucket_files(out)
    check_complete(files)
    expected = comparable(local_files(reference))
    assert comparable(files) == expected

    # incremental (the default, given here as a flag): every shard is done, nothing to do
    cli_download(image_host, remote_list, out, "--processes_count", "2",
                 "--incremental_mode", "incremental")  # fmt: skip
    assert take_hits() == {}
    again = bucket_files(out)
    assert {k: v for k, v in again.items() if not k.startswith("_run/")} == {
        k: v for k, v in files.items() if not k.startswith("_run/")
    }  # not even rewritten with new timings

    # a shard without its `_stats.json` is not done: it alone is downloaded again
    fs.rm_file(f"{out}/00001_stats.json")
    fs.invalidate_cache()
    cli_download(image_host, remote_list, out, "--processes_count", "2",
                 "--incremental_mode", "incremental")  # fmt: skip
    assert take_hits() == {p: 1 for p in PATHS[PER_SHARD : 2 * PER_SHARD]}
    redone = bucket_files(out)
    check_complete(redone)
    assert comparable(redone) == expected
    unchanged = [n for n in files if not n.startswith("_run/") and not n.startswith("00001")]
    assert all(redone[n] == files[n] for n in unchanged)
