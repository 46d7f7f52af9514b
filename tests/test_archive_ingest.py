"""Common Crawl ingest end to end: WARC and WAT files into candidates, curation and shards,
from local files, from a paths file served over HTTP on loopback, and from S3; a kill -9
mid-ingest and a rerun give the same candidates; broken files are counted, not fatal."""

from __future__ import annotations

import functools
import gzip
import http.server
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.warc import html_metadata, http_response, real_pages, warc_record, wat_page_records
from core import storage
from core.config import PipelineConfig, load_config
from core.io import is_done, read_table
from core.layout import RunLayout
from core.stats import StageStats
from crawlers.warc import read_warc_batches
from pipeline.stages.crawl import run_crawl
from pipeline.stages.curate import run_curate
from tests.conftest import REPO, run_cli
from tests.services import http_server

pytestmark = pytest.mark.slow

PAGES = 4
IMAGES_PER_PAGE = 5  # one of them without alt
THINGS = ["bicycle", "lighthouse", "teapot", "violin", "tractor"]
COLOURS = ["red", "blue", "green", "yellow"]
CURATE = [
    "curate.language_engine='none'", "net.allow_private=['127.0.0.1']",
    "shards.samples_per_shard=8", "executor.workers=1",
]  # fmt: skip


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """A folder served on 127.0.0.1: images, and pages whose <img> point at them."""
    root = tmp_path_factory.mktemp("site")
    with http_server(functools.partial(QuietHandler, directory=str(root))) as base:
        yield root, base + "/"


def photo(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(256, 256, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=90)


def page_html(index: int) -> bytes:
    tags = [
        f'<img src="/img/{index}-{k}.jpg" alt="a {COLOURS[index]} {THINGS[k]} on a sunny day">'
        for k in range(IMAGES_PER_PAGE - 1)
    ]
    tags.append(f'<img src="/img/{index}-{IMAGES_PER_PAGE - 1}.jpg">')
    return f"<html lang='en'><body>{''.join(tags)}</body></html>".encode()


@pytest.fixture(scope="module")
def archives(site: tuple[Path, str]) -> dict[str, Path]:
    """The site's pages as a WARC and as a WAT (in `crawl-data/`), plus a query list."""
    root, base = site
    (root / "img").mkdir()
    (root / "crawl-data").mkdir()
    for index in range(PAGES):
        for k in range(IMAGES_PER_PAGE):
            photo(root / "img" / f"{index}-{k}.jpg", index * 10 + k)
    pages = [(f"{base}page/{i}.html", page_html(i)) for i in range(PAGES)]
    kind = "application/http; msgtype=response"
    warc = root / "crawl-data" / "site.warc.gz"
    warc.write_bytes(b"".join(warc_record("response", u, http_response(h), kind) for u, h in pages))
    wat = root / "crawl-data" / "site.warc.wat.gz"
    wat.write_bytes(b"".join(wat_page_records(u, html_metadata(h), len(h)) for u, h in pages))
    queries = root / "queries.txt"
    queries.write_text("\n".join(THINGS + COLOURS) + "\n")
    return {"warc": warc, "wat": wat, "queries": queries}


def config(workdir: Path | str, *overrides: str) -> PipelineConfig:
    return load_config(None, [f"workdir='{workdir}'", *CURATE, *overrides])


def candidates(workdir: Path | str) -> Counter[tuple[str, str]]:
    table = read_table(RunLayout(workdir).candidates)
    return Counter(zip(table["url"].to_pylist(), table["caption"].to_pylist(), strict=True))


def expected_pairs(base: str) -> Counter[tuple[str, str]]:
    return Counter(
        (f"{base}img/{i}-{k}.jpg", f"a {COLOURS[i]} {THINGS[k]} on a sunny day")
        for i in range(PAGES)
        for k in range(IMAGES_PER_PAGE - 1)
    )


def test_make_shards_from_a_local_warc(
    archives: dict[str, Path], site: tuple[Path, str], tmp_path: Path
) -> None:
    workdir = tmp_path / "warc-run"
    sets = " ".join([*CURATE, f"curate.queries='{archives['queries']}'"])
    result = subprocess.run(
        ["make", "-C", str(REPO), "-o", ".venv/bin/.installed", "shards",
         f"WORKDIR={workdir}", f"WARC={archives['warc']}", f"SET={sets}"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert candidates(workdir) == expected_pairs(site[1])
    layout = RunLayout(workdir)
    stats = StageStats.load(layout.stats_file("crawl"))
    assert (stats.seen, stats.kept, stats.counts["images_without_alt"]) == (PAGES, PAGES, PAGES)
    shard_stats = StageStats.load(layout.stats_file("shards"))
    assert shard_stats.kept == PAGES * (IMAGES_PER_PAGE - 1)
    assert storage.list_names(layout.shards_dir, ".tar")


def test_a_wat_paths_file_over_http(
    archives: dict[str, Path], site: tuple[Path, str], tmp_path: Path
) -> None:
    root, base = site
    paths = root / "wat.paths.gz"
    paths.write_bytes(gzip.compress(b"crawl-data/site.warc.wat.gz\n"))
    workdir = tmp_path / "wat-run"
    cfg = config(
        workdir, f"crawl.wat='{base}wat.paths.gz'", f"crawl.archive_base='{base}'",
        f"curate.queries='{archives['queries']}'",
    )  # fmt: skip
    run_crawl(cfg, quiet=True)
    assert candidates(workdir) == expected_pairs(base)
    assert {r for r in read_table(RunLayout(workdir).candidates)["source"].to_pylist()} == {"wat"}
    assert run_curate(cfg, quiet=True).kept == PAGES * (IMAGES_PER_PAGE - 1)


def test_wat_and_warc_on_s3(
    archives: dict[str, Path], site: tuple[Path, str], s3_bucket: str, tmp_path: Path
) -> None:
    fs = storage.filesystem(s3_bucket)
    for kind in ("wat", "warc"):
        fs.put_file(str(archives[kind]), f"{s3_bucket}/cc/{archives[kind].name}")
    storage.write_bytes(f"{s3_bucket}/warc.paths", b"cc/site.warc.gz\n")
    for kind, spec, extra in [
        ("wat", f"{s3_bucket}/cc/*.wat.gz", []),
        ("warc", f"{s3_bucket}/warc.paths", [f"crawl.archive_base='{s3_bucket}/'"]),
    ]:
        workdir = tmp_path / kind
        cfg = config(workdir, f"crawl.{kind}='{spec}'", f"curate.queries='{archives['queries']}'",
                     *extra)  # fmt: skip
        run_crawl(cfg, quiet=True)
        assert candidates(workdir) == expected_pairs(site[1]), kind
        assert run_curate(cfg, quiet=True).kept == PAGES * (IMAGES_PER_PAGE - 1)


def test_broken_files_are_counted_not_fatal(shared_data: Path, tmp_path: Path) -> None:
    bad = shared_data / "bad_inputs" / "warcio-test-data"
    result = run_cli("crawl", "--workdir", str(tmp_path / "run"), "--warc", f"{bad}/*")
    assert result.returncode == 0, result.stderr[-3000:]
    stats = StageStats.load(RunLayout(tmp_path / "run").stats_file("crawl"))
    assert stats.dropped["warc:bad_header"] >= 4  # the ARC files, the licence text
    assert stats.seen == stats.kept + sum(stats.dropped.values())


def test_kill_mid_ingest_then_rerun_gives_the_same_candidates(
    shared_data: Path, tmp_path: Path
) -> None:
    pages = real_pages(shared_data)
    kind = "application/http; msgtype=response"
    warc = tmp_path / "big.warc.gz"
    with open(warc, "wb") as out:
        for copy in range(6):
            for uri, html in pages:
                out.write(warc_record("response", f"{uri}#{copy}", http_response(html), kind))
    reference = Counter(
        uid for t in read_warc_batches(str(warc), StageStats("c")) for uid in t["uid"].to_pylist()
    )
    workdir = tmp_path / "run"
    args = [sys.executable, "-m", "pipeline", "crawl", "--workdir", str(workdir),
            "--warc", str(warc), "--set", "part_rows=200", "--set", "executor.workers=1",
            "--quiet"]  # fmt: skip
    process = subprocess.Popen(args, cwd=REPO, start_new_session=True)
    parts = Path(RunLayout(workdir).candidates)
    deadline = time.monotonic() + 120
    while len(list(parts.glob("*.done"))) < 3 and process.poll() is None:
        assert time.monotonic() < deadline, "no part appeared"
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not is_done(RunLayout(workdir).crawl_dir, "crawl"), "the crawl ended before the kill"
    result = run_cli(*args[3:], timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    table = read_table(RunLayout(workdir).candidates)
    assert Counter(table["uid"].to_pylist()) == reference
