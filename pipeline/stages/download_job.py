"""What a shard task of `python -m pipeline download` is given: the command's options
(img2dataset's flags that are not image settings) and the stage's image settings. Both the
command (`pipeline.stages.download`) and its task (`download_task`) import it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from core.config import ShardsConfig
from core.errors import PipelineError
from shards.formats import OUTPUT_FORMATS

INPUT_FORMATS = (
    "txt", "txt.gz", "csv", "csv.gz", "tsv", "tsv.gz", "json", "jsonl", "jsonl.gz", "parquet"
)  # fmt: skip
HASHES = ("md5", "sha256", "sha512")
INCREMENTAL_MODES = ("incremental", "overwrite", "extend")
# img2dataset's reserved names: save_additional_columns may not use them.
RESERVED = frozenset(
    {"key", "caption", "url", "width", "height", "original_width", "original_height",
     "status", "error_message", "exif", "md5", "sha256", "sha512"}
)  # fmt: skip


@dataclass(frozen=True)
class DownloadOptions:
    """img2dataset's flags that are not image settings (those go to `ShardsConfig`)."""

    url_list: str
    output_folder: str = "images"
    input_format: str = "txt"
    url_col: str = "url"
    caption_col: str | None = None
    save_additional_columns: tuple[str, ...] = ()
    output_format: str = "files"
    number_sample_per_shard: int = 10000
    compute_hash: str | None = "sha256"
    verify_hash: tuple[str, str] | None = None
    incremental_mode: str = "incremental"
    extract_exif: bool = True
    max_image_area: float = math.inf
    max_aspect_ratio: float = math.inf
    min_image_size: int = 0

    @property
    def columns(self) -> list[str]:
        """img2dataset's column list: additional columns, caption, hash, url."""
        names = list(self.save_additional_columns)
        if self.caption_col is not None:
            names.append("caption")
        if self.verify_hash is not None:
            names.append(self.verify_hash[1])
        return [*names, "url"]

    def check(self) -> None:
        problems = []
        if self.input_format not in INPUT_FORMATS:
            problems.append(f"--input_format must be one of {', '.join(INPUT_FORMATS)}")
        if self.output_format not in OUTPUT_FORMATS:
            problems.append(f"--output_format must be one of {', '.join(OUTPUT_FORMATS)}")
        if self.incremental_mode not in INCREMENTAL_MODES:
            problems.append(f"--incremental_mode must be one of {', '.join(INCREMENTAL_MODES)}")
        if self.compute_hash not in (None, *HASHES):
            problems.append(f"--compute_hash must be one of {', '.join(HASHES)} or None")
        if self.verify_hash is not None and self.verify_hash[1] != self.compute_hash:
            problems.append("--verify_hash's hash type must be the --compute_hash type")
        if self.number_sample_per_shard <= 0:
            problems.append("--number_sample_per_shard must be positive")
        reserved = sorted(RESERVED.intersection(self.save_additional_columns))
        if reserved:
            problems.append(f"--save_additional_columns cannot use {', '.join(reserved)}")
        if problems:
            raise PipelineError("download: " + "; ".join(problems))


@dataclass(frozen=True)
class DownloadJob:
    """What a shard task needs, pickled to whichever worker runs it."""

    options: DownloadOptions
    config: ShardsConfig
