"""A whole sandbox run on object storage: a real S3 API server (moto) on loopback holds the
run folder; every stage reads and writes it there, and the trainer streams its shards."""

from __future__ import annotations

import pytest

from core import storage
from core.io import read_json
from tests.conftest import run_cli

pytestmark = pytest.mark.slow

OVERRIDES = [
    "sandbox.base_port=0", "sandbox.pages_per_host=20", "train.samples=640",
    "sandbox.heldout_per_class=2",
]  # fmt: skip


def cli_args(command: str, workdir: str) -> list[str]:
    args = [command, "--config", "configs/demo.toml", "--workdir", workdir]
    for item in OVERRIDES:
        args += ["--set", item]
    return args


def test_a_sandbox_run_lives_in_a_bucket(s3_bucket: str) -> None:
    workdir = f"{s3_bucket}/runs/demo"
    result = run_cli(*cli_args("demo", workdir), timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    for stage in ("crawl", "curate", "shards", "train"):
        assert storage.exists(f"{workdir}/{stage}/{stage}_stats.json" if stage != "train"
                              else f"{workdir}/train/results.json"), stage  # fmt: skip
    tars = storage.list_names(f"{workdir}/shards", ".tar")
    sizes = read_json(f"{workdir}/shards/sizes.json")
    assert tars and sorted(sizes) == tars and sum(sizes.values()) > 100
    results = read_json(f"{workdir}/train/results.json")
    assert results["steps"] > 0 and results["zero_shot"]["n"] == 96
    assert storage.exists(f"{workdir}/train/checkpoint.pt")
    assert not storage.list_names(f"{workdir}/curate/_work")  # work files cleaned up
    assert "candidates" in storage.read_text(f"{workdir}/report.txt")
    # The run folder's saved config is found there: a rerun resumes without --config.
    again = run_cli("report", "--workdir", workdir, timeout=120)
    assert again.returncode == 0 and "written to shards" in again.stdout
