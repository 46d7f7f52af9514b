"""A disk that fills up while the shards are written: one clear line, nothing half-written
visible, and once there is space again the same command finishes with the very bytes of a
run that never ran out.

The run folder lives on a small tmpfs (mounted here: needs root; the test skips where
mounting is refused), sized from a reference run so that curation's output and the staged
images fit but the shards do not.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.common import run_stage
from tests.faults.conftest import FaultLine
from tests.faults.hostile import HostileSite

PHOTOS = 40
STAGE_CAP_S = 120.0  # a safety cap per stage, not a speed target


class SmallDisk:
    """A tmpfs mounted at `path`, resizable, unmounted at the end."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def mount(self, size: int) -> bool:
        self.path.mkdir(parents=True, exist_ok=True)
        try:
            done = subprocess.run(
                ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(self.path)],
                capture_output=True, check=False,
            )  # fmt: skip
        except OSError:  # no mount command
            return False
        return done.returncode == 0

    def resize(self, size: int) -> None:
        subprocess.run(
            ["mount", "-o", f"remount,size={size}", str(self.path)], check=True,
            capture_output=True,
        )  # fmt: skip

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], capture_output=True, check=False)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    disk = SmallDisk(tmp_path / "small")
    if not disk.mount(64 * 1024 * 1024):
        pytest.skip("cannot mount a tmpfs here (needs root and mount rights)")
    try:
        yield disk
    finally:
        disk.unmount()


def settings(site: HostileSite, queries: Path) -> list[str]:
    return [
        f'net.allow_private=["127.0.0.1:{site.port}"]',
        'curate.language_engine="none"',
        f'curate.queries="{queries}"',
        "shards.min_image_side=0",
        "shards.min_image_bytes=0",
        "shards.samples_per_shard=8",
        "shards.image_size=256",
        "executor.workers=1",
    ]


def run_chain(workdir: Path, urls: Path, sets: list[str], stages: tuple[str, ...]) -> None:
    for stage in stages:
        extra = ("--url-list", str(urls)) if stage == "crawl" else ()
        run = run_stage(stage, workdir, sets, STAGE_CAP_S, extra)
        assert run.rc == 0, run.stderr[-3000:]


def used_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def shard_files(folder: Path) -> dict[str, bytes]:
    return {
        p.name: p.read_bytes() for p in sorted(folder.glob("*")) if p.suffix in (".tar", ".parquet")
    }


def url_list(site: HostileSite, folder: Path) -> tuple[Path, Path]:
    urls, queries = folder / "urls.csv", folder / "queries.txt"
    rows = [
        f"{site.url(f'/photo/{n}.jpg')},a photo of the harbour number {n}" for n in range(PHOTOS)
    ]
    urls.write_text("url,caption\n" + "\n".join(rows) + "\n")
    queries.write_text("harbour\n")
    return urls, queries


def assert_nothing_partial(workdir: Path, expected: dict[str, bytes]) -> None:
    """Every shard file a reader can see is whole (the reference's bytes); no temporary."""
    for name, data in shard_files(workdir / "shards").items():
        assert data == expected[name], f"{name} is visible but not whole"
    assert not (workdir / "shards" / "shards.done").exists()
    assert not [p for p in workdir.rglob("*") if ".tmp" in p.name]


def test_a_full_disk_while_writing_shards(
    tmp_path: Path, small_disk: SmallDisk, fault_report: list[FaultLine]
):
    with HostileSite(bombs=False) as site:
        urls, queries = url_list(site, tmp_path)
        sets = settings(site, queries)
        workdir = small_disk.path / "run"
        run_chain(workdir, urls, sets, ("crawl", "curate"))
        # the reference: the same curated run, sharded where space is plenty
        reference = tmp_path / "reference"
        shutil.copytree(workdir, reference)
        run_chain(reference, urls, sets, ("shards",))
        expected = shard_files(reference / "shards")
        tars = sum(len(v) for k, v in expected.items() if k.endswith(".tar"))
        # room for what is there, the staged images (about the tars' size) and half the tars
        small_disk.resize(used_bytes(small_disk.path) + tars + tars // 2 + 256 * 1024)
        full = run_stage("shards", workdir, sets, STAGE_CAP_S)
        assert full.rc == 2, full.stderr[-3000:]
        visible = len(shard_files(workdir / "shards"))
        assert_nothing_partial(workdir, expected)

        small_disk.resize(64 * 1024 * 1024)
        again = run_stage("shards", workdir, sets, STAGE_CAP_S)
    errors = [line for line in full.stderr.splitlines() if line.startswith("openwit: error:")]
    assert len(errors) == 1 and "No space left" in errors[0], full.stderr[-3000:]
    assert "Traceback" not in full.stderr
    assert again.rc == 0, again.stderr[-3000:]
    assert shard_files(workdir / "shards") == expected
    assert not [p for p in workdir.rglob("*") if ".tmp" in p.name]
    fault_report.append(
        FaultLine(
            "disk full writing shards",
            f"ENOSPC, {len(expected) - visible} files short",
            f"{len(expected)} shard files identical",
            "nothing",
            again.peak_rss_mib,
            full.seconds + again.seconds,
        )
    )
