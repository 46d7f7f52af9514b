"""Where a run keeps its files: one folder per stage under the run's workdir.

The workdir is a local folder or a URL (`s3://bucket/run`); every location here is a
string built with `core.storage.join`.

<workdir>/config.toml             the resolved config of the last command
<workdir>/sandbox/                ports.json, queries.txt, heldout/ (sandbox runs only)
<workdir>/crawl/parts/            part-NNNNN-NNNNN.parquet candidates (+ .done markers)
<workdir>/crawl/                  crawl_stats.json, crawl.done
<workdir>/curate/selected/        range-NNNNN.parquet: the selected pairs, sorted by uid
                                  (range r holds the uids of the r-th slice of md5 space)
<workdir>/curate/dropped/         every other candidate, with its drop_reason
<workdir>/curate/                 entry_counts.json, curate_stats.json, curate.done;
                                  _work/ (exchanges and markers, removed when done)
<workdir>/images/                 part-NNNNN.parquet: fetched, processed images (one part
                                  per shard), markers; removed once the shard is written
<workdir>/shards/                 NNNNN.tar / .parquet / _stats.json / .done, sizes.json,
                                  manifest.json, shards_stats.json; _work/ while running
<workdir>/train/                  checkpoint.pt, log.jsonl, results.json
<workdir>/report.json, report.txt
"""

from __future__ import annotations

from dataclasses import dataclass

from core import storage
from core.storage import PathLike

WORK = "_work"


@dataclass(frozen=True)
class RunLayout:
    root: str

    def __init__(self, root: PathLike) -> None:
        object.__setattr__(self, "root", storage.name(root))

    def at(self, *parts: str) -> str:
        return storage.join(self.root, *parts)

    @property
    def config_file(self) -> str:
        return self.at("config.toml")

    @property
    def sandbox_dir(self) -> str:
        return self.at("sandbox")

    @property
    def ports_file(self) -> str:
        return self.at("sandbox", "ports.json")

    @property
    def sandbox_queries(self) -> str:
        return self.at("sandbox", "queries.txt")

    @property
    def heldout_dir(self) -> str:
        return self.at("sandbox", "heldout")

    @property
    def crawl_dir(self) -> str:
        return self.at("crawl")

    @property
    def candidates(self) -> str:
        return self.at("crawl", "parts")

    @property
    def curate_dir(self) -> str:
        return self.at("curate")

    @property
    def curate_work(self) -> str:
        return self.at("curate", WORK)

    @property
    def selected(self) -> str:
        return self.at("curate", "selected")

    @property
    def dropped(self) -> str:
        return self.at("curate", "dropped")

    @property
    def images_dir(self) -> str:
        return self.at("images")

    @property
    def shards_dir(self) -> str:
        return self.at("shards")

    @property
    def shards_work(self) -> str:
        return self.at("shards", WORK)

    @property
    def train_dir(self) -> str:
        return self.at("train")

    def stats_file(self, stage: str) -> str:
        if stage not in ("crawl", "curate", "shards", "train"):
            raise KeyError(stage)
        return self.at(stage, f"{stage}_stats.json")
