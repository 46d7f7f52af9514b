"""The Makefile as a user meets it: a stage target on a new folder runs the stages before
it, and list values in SET keep their quotes on the way through the shell."""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tests.conftest import REPO


def make(*args: str) -> subprocess.CompletedProcess[str]:
    # -o: the venv is taken as it is (no reinstall because pyproject.toml is newer).
    return subprocess.run(
        ["make", "-C", str(REPO), "-o", ".venv/bin/.installed", *args],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_curate_on_a_new_folder_crawls_first_and_set_keeps_lists(tmp_path: Path) -> None:
    urls = tmp_path / "urls.parquet"
    pq.write_table(
        pa.table({"url": ["http://img.test/1.jpg"], "caption": ["a red circle on a wall"]}), urls
    )
    queries = tmp_path / "queries.txt"
    queries.write_text("red\ncircle\n")
    workdir = tmp_path / "new"
    result = make(
        "curate", f"WORKDIR={workdir}", f"URLS={urls}",
        f"SET=curate.languages=[\"en\",\"de\"] curate.queries='{queries}' executor.workers=1",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert (workdir / "crawl" / "crawl.done").exists()
    assert (workdir / "curate" / "curate.done").exists()
    saved = tomllib.loads((workdir / "config.toml").read_text())
    assert saved["curate"]["languages"] == ["en", "de"]
