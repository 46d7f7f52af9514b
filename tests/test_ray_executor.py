"""The same chain on a real Ray cluster: URL list -> crawl -> curate -> shards, on two Ray
nodes on loopback, gives the local executor's selection and byte-identical shards, even
when a Ray worker is killed in the middle of a task."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.config import CrawlConfig, NetConfig, PipelineConfig, SandboxConfig, load_config
from core.io import read_pairs, read_table
from core.layout import RunLayout
from core.stats import StageStats
from crawlers.pages import crawl
from pipeline.stages.crawl import run_crawl
from pipeline.stages.curate import run_curate
from pipeline.stages.shards import run_shards
from sandbox.concepts import query_list
from sandbox.server import SandboxWeb, serve_in_thread

pytestmark = pytest.mark.slow

SANDBOX = SandboxConfig(pages_per_host=25)


@pytest.fixture(scope="module")
def sandbox_list(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[SandboxWeb, Path, Path]]:
    """The sandbox web, served for the module, and a URL list of its (image, alt) pairs."""
    root = tmp_path_factory.mktemp("sandbox-list")
    with serve_in_thread(SANDBOX) as web:
        net = NetConfig().allowing(web.base_urls)
        pairs = crawl(web.seed_urls, CrawlConfig(per_host_delay=0.0, net=net), StageStats("crawl"))
        url_list = root / "urls.parquet"
        pq.write_table(
            pa.table({"url": [p.url for p in pairs], "caption": [p.caption for p in pairs]}),
            url_list,
        )
        queries = root / "queries.txt"
        queries.write_text("\n".join(query_list(SANDBOX)) + "\n")
        yield web, url_list, queries


def chain_config(workdir: Path, url_list: Path, queries: Path, *extra: str) -> PipelineConfig:
    return load_config(
        "configs/demo.toml",
        [f"workdir='{workdir}'", f"crawl.url_list='{url_list}'", f"curate.queries='{queries}'",
         "net.allow_private=['127.0.0.1']", "part_rows=400", "shards.samples_per_shard=100",
         *extra],
    )  # fmt: skip


def ray_task_processes() -> list[int]:
    """Pids of the Ray workers fetching a shard now (Ray titles them ray::<task name>)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "cmdline").read_bytes().startswith(b"ray::fetch_part"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


class WorkerKiller(threading.Thread):
    """Kills (SIGKILL) the first Ray worker seen running a task once `armed` is set."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.armed = threading.Event()
        self.stop = threading.Event()
        self.killed: int | None = None

    def run(self) -> None:
        while not self.stop.is_set() and self.killed is None:
            if self.armed.is_set():
                for pid in ray_task_processes():
                    os.kill(pid, signal.SIGKILL)
                    self.killed = pid
                    break
            time.sleep(0.02)


def shard_files(layout: RunLayout) -> dict[str, bytes]:
    folder = Path(layout.shards_dir)
    return {
        p.name: p.read_bytes()
        for p in sorted(folder.glob("0*"))
        if p.suffix in (".tar", ".parquet")
    }


def test_ray_writes_what_local_writes_despite_a_killed_worker(
    sandbox_list: tuple[SandboxWeb, Path, Path], ray_cluster: str, tmp_path: Path
) -> None:
    web, url_list, queries = sandbox_list
    web.reset()
    local = chain_config(tmp_path / "local", url_list, queries, "executor.workers=2")
    for stage in (run_crawl, run_curate, run_shards):
        stage(local, quiet=True)
    web.reset()
    killer = WorkerKiller()
    killer.start()
    config = chain_config(
        tmp_path / "ray", url_list, queries,
        "executor.kind='ray'", f"executor.ray_address='{ray_cluster}'", "executor.workers=0",
    )  # fmt: skip
    run_crawl(config, quiet=True)
    run_curate(config, quiet=True)
    killer.armed.set()  # the fetch tasks of the shards stage take the longest
    run_shards(config, quiet=True)
    killer.stop.set()
    local_layout, remote = RunLayout(tmp_path / "local"), RunLayout(tmp_path / "ray")
    assert killer.killed is not None, "no Ray task was caught running"
    selected = read_table(local_layout.selected).column("uid").to_pylist()
    assert selected and read_table(remote.selected).column("uid").to_pylist() == selected
    dropped = sorted((p.uid, p.drop_reason or "") for p in read_pairs(local_layout.dropped))
    assert sorted((p.uid, p.drop_reason or "") for p in read_pairs(remote.dropped)) == dropped
    files = shard_files(local_layout)
    assert len(files) >= 6 and shard_files(remote) == files
