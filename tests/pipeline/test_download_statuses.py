"""Statuses that mean what they say in the shards stage too: `success` is a sample in a tar;
a row dropped after download (image rules, duplicates) is not; a run that fetched nothing
names the reason and the fix."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from core.errors import PipelineError
from core.failures import failure_summary
from core.io import is_done, read_pairs
from core.layout import RunLayout
from pipeline.stages.shards import run_shards
from tests.pipeline.test_download_support import server
from tests.pipeline.test_stage_shards import curated

__all__ = ["server"]  # the fixture
PATHS = ["/0.jpg", "/copy.jpg", "/1.jpg", "/small.jpg", "/missing.jpg"]


def test_success_means_in_a_tar(tmp_path: Path, server: str):
    config = curated(tmp_path, f"http://{server}", PATHS, "shards.min_image_side=100")
    run_shards(config, quiet=True)
    folder = RunLayout(config.root).shards_dir
    rows = {p.url.rsplit("/", 1)[1]: p for p in read_pairs(f"{folder}/00000.parquet")}
    with tarfile.open(f"{folder}/00000.tar") as tar:
        in_tar = {name.split(".")[0] for name in tar.getnames()}
    assert {
        key for key, p in ((p.key, p) for p in rows.values()) if p.status == "success"
    } == in_tar
    assert rows["small.jpg"].status == "failed_to_resize"
    assert rows["small.jpg"].error_message == "image too small"
    assert rows["small.jpg"].drop_reason == "image:too_small"
    copies = [rows["0.jpg"], rows["copy.jpg"]]
    assert sorted(p.status for p in copies) == ["duplicate", "success"]
    assert {p.drop_reason for p in copies} == {None, "dedup:sha256"}
    assert rows["missing.jpg"].status == "failed_to_download"
    assert len(in_tar) == 2


def test_a_run_that_fetched_nothing_fails_with_the_fix(tmp_path: Path, server: str):
    config = curated(tmp_path, f"http://{server}", PATHS[:3], "net.allow_private=[]")
    with pytest.raises(PipelineError, match=r"3 of 3 rows failed with private_address.*allow"):
        run_shards(config, quiet=True)
    layout = RunLayout(config.root)
    assert not is_done(layout.shards_dir, "shards")
    fixed = curated(tmp_path, f"http://{server}", PATHS[:3])
    assert run_shards(fixed, quiet=True).kept == 2  # refetched; the copy is a duplicate


def test_failure_summary_names_the_main_reason():
    assert failure_summary(10, 6, {"timeout": 4}) is None  # most rows made it
    mostly = failure_summary(10, 2, {"timeout": 7, "http_404": 1})
    assert mostly is not None and mostly.startswith("7 of 10 rows failed with timeout")
    assert "shards.timeout" in mostly
    assert failure_summary(10, 4, {"timeout": 3, "http_404": 3}) is None  # no main reason
    spread = failure_summary(4, 0, {"http_404": 2, "http_500": 1, "timeout": 1})
    assert spread is not None and spread.startswith("2 of 4 rows failed with http_404")
    none = failure_summary(4, 0, {"a": 1, "b": 1, "c": 1, "d": 1})
    assert none == "no reason dominates: 1 a, 1 b, 1 c"
