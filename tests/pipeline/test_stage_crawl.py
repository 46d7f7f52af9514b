"""The crawl stage's other sources: an img2dataset-style URL list instead of pages."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import PipelineConfig, load_config
from pipeline.errors import PipelineError
from pipeline.io import is_done, read_pairs
from pipeline.stages.crawl import read_seeds, run_crawl


def url_list_config(workdir: Path, url_list: Path, *extra: str) -> PipelineConfig:
    return load_config(None, [f"workdir='{workdir}'", f"crawl.url_list='{url_list}'", *extra])


def test_url_list_rows_become_candidates(tmp_path: Path) -> None:
    listing = tmp_path / "urls.csv"
    listing.write_text(
        "url,caption\nhttp://a.test/1.jpg,a red circle\n,no url here\nhttp://b.test/2.png,\n"
    )
    config = url_list_config(tmp_path / "run", listing)
    stats = run_crawl(config)
    pairs = list(read_pairs(tmp_path / "run" / "crawl" / "candidates.parquet"))
    assert [(p.url, p.caption, p.source) for p in pairs] == [
        ("http://a.test/1.jpg", "a red circle", "urllist"),
        ("http://b.test/2.png", "", "urllist"),
    ]
    assert (stats.seen, stats.kept, dict(stats.dropped)) == (3, 2, {"missing_url": 1})
    assert is_done(tmp_path / "run" / "crawl", "crawl")


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
