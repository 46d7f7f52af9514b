"""Nothing gets in, nothing is lost: bad URL lists and unwritable run folders are one line
on stderr and exit status 2 (no traceback, no partial file), and names from the web never
become paths."""

from __future__ import annotations

import errno
import json
import os
import re
import subprocess
import tarfile
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import run_cli
from tests.pipeline.test_cli import assert_one_line_error
from tests.services import http_server, reply
from tests.shards.conftest import photo_jpeg

GOOD_ROWS: list[dict[str, object]] = [
    {"url": "http://127.0.0.1:9/a.jpg", "caption": "a red fox in the snow"}
]


def crawl(workdir: Path, url_list: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_cli("crawl", "--workdir", str(workdir), "--url-list", str(url_list), *extra)


# ---------------------------------------------------------------- unreadable parquet lists


@pytest.mark.parametrize(
    ("body", "what"),
    [(b"", "0 bytes"), (b"PAR1 this is not parquet at all PAR1", "not a readable parquet")],
    ids=["empty", "corrupt"],
)
def test_unreadable_parquet_url_list(tmp_path: Path, body: bytes, what: str) -> None:
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(body)
    result = crawl(tmp_path / "run", bad)
    assert_one_line_error(result, f"{bad}: not a readable parquet file")
    assert what in result.stderr
    assert not (tmp_path / "run" / "crawl" / "crawl.done").exists()


# ---------------------------------------------------------------- empty URL lists


def write_list(path: Path, rows: list[dict[str, object]]) -> Path:
    if path.suffix == ".parquet":
        schema = pa.schema([("url", pa.string()), ("caption", pa.string())])
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    else:
        lines = ["url,caption", *(f"{row['url']},{row['caption']}" for row in rows)]
        path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    ("name", "rows"),
    [
        ("list.csv", []),
        ("list.parquet", []),
        ("list.jsonl", [{"url": "", "caption": "no url here"}, {"url": None, "caption": "x"}]),
    ],
    ids=["csv-no-rows", "parquet-no-rows", "jsonl-no-url"],
)
def test_empty_url_list_is_an_error_like_empty_seeds(
    tmp_path: Path, name: str, rows: list[dict[str, object]]
) -> None:
    url_list = write_list(tmp_path / name, rows)
    workdir = tmp_path / "run"
    result = crawl(workdir, url_list)
    assert_one_line_error(result, f"the URL list {url_list} has no rows with a URL in column 'url'")
    assert "--set crawl.url_col" in result.stderr
    assert not (workdir / "crawl" / "crawl.done").exists()
    # Fixed, the same command reads the list again (no marker of the empty read is left).
    write_list(url_list, GOOD_ROWS)
    again = crawl(workdir, url_list)
    assert again.returncode == 0, again.stderr
    stats = json.loads((workdir / "crawl" / "crawl_stats.json").read_text())
    assert stats["kept"] == 1


# ---------------------------------------------------------------- columns that are not text


@pytest.mark.parametrize("column", ["url", "caption"])
def test_parquet_column_that_is_not_text(tmp_path: Path, column: str) -> None:
    table = pa.table({"url": ["http://a.example/1.jpg"], "caption": ["a red fox"]})
    table = table.set_column(table.schema.get_field_index(column), column, pa.array([1]))
    url_list = tmp_path / "ints.parquet"
    pq.write_table(table, url_list)
    result = crawl(tmp_path / "run", url_list)
    assert_one_line_error(result, f"{url_list}: column {column!r} is int64, not text")


def test_jsonl_url_that_is_not_a_string(tmp_path: Path) -> None:
    url_list = tmp_path / "list.jsonl"
    url_list.write_text('{"url": "http://a.example/1.jpg", "caption": "a fox"}\n{"url": 2}\n')
    result = crawl(tmp_path / "run", url_list)
    assert_one_line_error(result, f"{url_list}:2: 'url' is a JSON number, not a string")


# ---------------------------------------------------------------- run folders that take no file


@pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0,
    reason="root ignores file permissions, so a 0o555 folder stays writable",
)
def test_read_only_workdir(tmp_path: Path) -> None:
    workdir = tmp_path / "run"
    workdir.mkdir()
    workdir.chmod(0o555)
    try:
        result = crawl(workdir, write_list(tmp_path / "list.csv", GOOD_ROWS))
    finally:
        workdir.chmod(0o755)
    assert_one_line_error(result, f"cannot write to the run folder {workdir}")
    assert list(workdir.iterdir()) == []


def test_workdir_that_is_a_file(tmp_path: Path) -> None:
    workdir = tmp_path / "run"
    workdir.write_text("my notes\n")
    result = crawl(workdir, write_list(tmp_path / "list.csv", GOOD_ROWS))
    assert_one_line_error(result, f"cannot write to the run folder {workdir}: ")
    assert workdir.read_text() == "my notes\n"


def test_full_disk_is_one_line_and_leaves_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipeline.cli import main

    def disk_full(table: pa.Table, where: object, **kwargs: object) -> None:
        Path(str(where)).write_bytes(b"PAR1 half a part")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(pq, "write_table", disk_full)
    workdir = tmp_path / "run"
    url_list = write_list(tmp_path / "list.csv", GOOD_ROWS)
    status = main(["crawl", "--workdir", str(workdir), "--url-list", str(url_list), "-q"])
    err = capsys.readouterr().err
    assert status == 2
    assert err.splitlines() == [
        f"openwit: error: cannot write to the run folder {workdir}: {os.strerror(errno.ENOSPC)}"
    ]
    files = [p.name for p in workdir.rglob("*") if p.is_file()]
    assert files == ["config.toml"]  # no part, no temporary, no marker


# ---------------------------------------------------------------- names from the web


class AnyJpeg(BaseHTTPRequestHandler):
    """A small JPEG for any path, a different one per path (so that none is a duplicate)."""

    def do_GET(self) -> None:
        body = photo_jpeg(96, 96, seed=zlib.crc32(self.path.encode()) % 10_000)
        reply(self, 200, body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def jpeg_server() -> Iterator[str]:
    with http_server(AnyJpeg) as base:
        yield base


HOSTILE = ["../../../../tmp/evil", "/etc/passwd", "..\\..\\windows", "nul\x00byte", "x" * 300]
# Every name the project writes under a run folder, and the folders it makes.
PROJECT_NAMES = re.compile(
    r"(config\.toml|report\.(json|txt|html)|[a-z_]+_stats\.json|[a-z]+\.done"
    r"|(part|list|range)(-\d{5})+\.(parquet|done)|\d{5}(\.tar|\.parquet|_stats\.json|\.done)"
    r"|sizes\.json|manifest\.json|entry_counts\.json)"
)
PROJECT_FOLDERS = {"crawl", "parts", "curate", "selected", "dropped", "images", "shards"}
MEMBER_NAMES = re.compile(r"\d+\.(jpg|txt|json)")


def hostile_rows(base: str) -> list[dict[str, str]]:
    rows = []
    for index, bad in enumerate(HOSTILE):
        caption = f"{bad} a red fox picture {index}"
        rows.append({"url": f"{base}/{bad}/{index}.jpg", "caption": caption})
        rows.append({"url": f"{base}/img.jpg?name={bad}&n={index}", "caption": caption + " q"})
    rows += [{"url": "/etc/passwd", "caption": "an absolute path fox"}]
    rows += [{"url": "file:///etc/passwd", "caption": "a file url fox"}]
    return rows


def test_names_from_the_web_never_become_paths(tmp_path: Path, jpeg_server: str) -> None:
    url_list = tmp_path / "hostile.parquet"
    pq.write_table(pa.Table.from_pylist(hostile_rows(jpeg_server)), url_list)
    queries = tmp_path / "queries.txt"
    queries.write_text("fox\n")
    workdir = tmp_path / "run"
    settings = [
        "net.allow_private=['127.0.0.1']", "curate.language_engine='none'",
        f"curate.queries='{queries}'", "shards.image_size=64", "shards.min_image_side=0",
        "shards.min_image_bytes=0", "shards.retries=0", "executor.workers=1",
    ]  # fmt: skip
    args = ["--workdir", str(workdir), *(f"--set={s}" for s in settings)]
    for command in ("crawl", "curate", "shards"):
        extra = ["--url-list", str(url_list)] if command == "crawl" else []
        result = run_cli(command, *args, *extra)
        assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hostile.parquet", "queries.txt", "run"]
    assert_project_names(workdir)
    stats = json.loads((workdir / "shards" / "shards_stats.json").read_text())
    assert stats["kept"] == 2 * len(HOSTILE), stats  # every http row, none under its name
    for tar in sorted((workdir / "shards").glob("*.tar")):
        with tarfile.open(tar) as archive:
            for member in archive.getnames():
                assert MEMBER_NAMES.fullmatch(member), member


def assert_project_names(workdir: Path) -> None:
    for folder, dirs, files in os.walk(workdir):
        for name in dirs:
            assert name in PROJECT_FOLDERS, os.path.join(folder, name)
        for name in files:
            assert PROJECT_NAMES.fullmatch(name), os.path.join(folder, name)
        assert Path(folder).resolve().is_relative_to(workdir.resolve())
