"""Where a run keeps its files: one folder per stage under the run's workdir.

<workdir>/config.toml             the resolved config of the last command
<workdir>/sandbox/                ports.json, queries.txt, heldout/ (sandbox runs only)
<workdir>/crawl/                  candidates.parquet, crawl_stats.json, crawl.done
<workdir>/curate/                 pairs.parquet (every candidate, drops with reasons),
                                  entry_counts.json, curate_stats.json, curate.done
<workdir>/images/                 part-NNNNN.parquet (fetched, processed images), markers
<workdir>/shards/                 NNNNN.tar / .parquet / _stats.json / .done, sizes.json,
                                  manifest.json, shards_stats.json
<workdir>/train/                  checkpoint.pt, log.jsonl, results.json
<workdir>/report.json, report.txt
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunLayout:
    root: Path

    @property
    def config_file(self) -> Path:
        return self.root / "config.toml"

    @property
    def sandbox_dir(self) -> Path:
        return self.root / "sandbox"

    @property
    def ports_file(self) -> Path:
        return self.sandbox_dir / "ports.json"

    @property
    def sandbox_queries(self) -> Path:
        return self.sandbox_dir / "queries.txt"

    @property
    def heldout_dir(self) -> Path:
        return self.sandbox_dir / "heldout"

    @property
    def crawl_dir(self) -> Path:
        return self.root / "crawl"

    @property
    def candidates(self) -> Path:
        return self.crawl_dir / "candidates.parquet"

    @property
    def curate_dir(self) -> Path:
        return self.root / "curate"

    @property
    def curated(self) -> Path:
        return self.curate_dir / "pairs.parquet"

    @property
    def images_dir(self) -> Path:
        return self.root / "images"

    @property
    def shards_dir(self) -> Path:
        return self.root / "shards"

    @property
    def train_dir(self) -> Path:
        return self.root / "train"

    def stats_file(self, stage: str) -> Path:
        folder = {
            "crawl": self.crawl_dir,
            "curate": self.curate_dir,
            "shards": self.shards_dir,
            "train": self.train_dir,
        }[stage]
        return folder / f"{stage}_stats.json"
