"""The crawl stage's other sources: img2dataset-style URL lists instead of pages, as parts."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.config import PipelineConfig, load_config
from core.errors import PipelineError
from core.io import clear_done, is_done, read_pairs, read_table
from core.layout import RunLayout
from core.parts import finished_parts
from pipeline.stages.crawl import read_seeds, run_crawl


def url_list_config(workdir: Path, url_list: Path | str, *extra: str) -> PipelineConfig:
    return load_config(None, [f"workdir='{workdir}'", f"crawl.url_list='{url_list}'", *extra])


def test_url_list_rows_become_candidates(tmp_path: Path) -> None:
    listing = tmp_path / "urls.csv"
    listing.write_text(
        "url,caption\nhttp://a.test/1.jpg,a red circle\n,no url here\nhttp://b.test/2.png,\n"
    )
    config = url_list_config(tmp_path / "run", listing)
    stats = run_crawl(config)
    pairs = list(read_pairs(RunLayout(tmp_path / "run").candidates))
    assert [(p.url, p.caption, p.source) for p in pairs] == [
        ("http://a.test/1.jpg", "a red circle", "urllist"),
        ("http://b.test/2.png", "", "urllist"),
    ]
    assert (stats.seen, stats.kept, dict(stats.dropped)) == (3, 2, {"missing_url": 1})
    assert is_done(tmp_path / "run" / "crawl", "crawl")


def write_list(path: Path, start: int, rows: int) -> Path:
    urls = [f"http://img.test/{i}.jpg" for i in range(start, start + rows)]
    pq.write_table(
        pa.table({"url": urls, "caption": [f"a photo number {i}" for i in range(rows)]}), path
    )
    return path


def test_parts_are_bounded_one_task_per_file_and_resume_per_part(tmp_path: Path) -> None:
    lists = tmp_path / "lists"
    lists.mkdir()
    write_list(lists / "a.parquet", 0, 25)
    write_list(lists / "b.parquet", 100, 7)
    config = url_list_config(tmp_path / "run", lists, "part_rows=10", "executor.workers=2")
    layout = RunLayout(config.root)
    run_crawl(config)
    names = [Path(p).name for p in finished_parts(layout.candidates)]
    assert names == [
        "part-00000-00000.parquet", "part-00000-00001.parquet", "part-00000-00002.parquet",
        "part-00001-00000.parquet",
    ]  # fmt: skip
    rows = [pq.read_metadata(p).num_rows for p in finished_parts(layout.candidates)]
    assert rows == [10, 10, 5, 7]
    before = {p: Path(p).stat().st_mtime_ns for p in finished_parts(layout.candidates)}
    # As after a kill: file 0's last part and the stage marker gone.
    last = layout.candidates + "/part-00000-00002"
    Path(last + ".parquet").unlink()
    clear_done(layout.candidates, "part-00000-00002")
    clear_done(layout.candidates, "list-00000")
    clear_done(layout.crawl_dir, "crawl")
    run_crawl(config)
    after = {p: Path(p).stat().st_mtime_ns for p in finished_parts(layout.candidates)}
    assert set(after) == set(before)
    assert [p for p in before if before[p] != after[p]] == [last + ".parquet"]
    table = read_table(layout.candidates)
    assert table.num_rows == 32 and len(set(table.column("uid").to_pylist())) == 32


def test_a_glob_of_lists(tmp_path: Path) -> None:
    write_list(tmp_path / "x1.parquet", 0, 3)
    write_list(tmp_path / "x2.parquet", 10, 4)
    stats = run_crawl(url_list_config(tmp_path / "run", tmp_path / "x*.parquet"))
    assert stats.kept == 7


def test_real_url_list_with_its_own_column_names(tmp_path: Path, shared_data: Path) -> None:
    listing = shared_data / "alt_text" / "img2dataset-test_10000.parquet"
    config = url_list_config(
        tmp_path / "run", listing, "crawl.url_col='URL'", "crawl.caption_col='TEXT'"
    )
    stats = run_crawl(config)
    assert stats.kept == 10_000
    assert not (tmp_path / "run" / "sandbox").exists()  # no sandbox was served


def test_missing_url_list_is_a_clear_error(tmp_path: Path) -> None:
    config = url_list_config(tmp_path / "run", tmp_path / "nope.parquet")
    with pytest.raises(PipelineError, match="URL list not found"):
        run_crawl(config)


def test_seed_file_skips_comments_and_blank_lines(tmp_path: Path) -> None:
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("# sites\n\nhttps://example.org/\n  http://127.0.0.1:8080/a  \n")
    assert read_seeds(seeds) == ["https://example.org/", "http://127.0.0.1:8080/a"]
    seeds.write_text("# nothing\n")
    with pytest.raises(PipelineError, match="has no URLs"):
        read_seeds(seeds)
