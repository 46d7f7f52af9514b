"""One webdataset shard in img2dataset's layout, written atomically and marked when done.

    with ShardWriter(folder, shard_id=3) as writer:
        for pair, image in results:       # image is None for failed or dropped pairs
            writer.write(pair, image)

Every pair becomes a row of `00003.parquet` (in `PAIR_SCHEMA`, with `key` and `shard`
set); a pair that has an image and no drop reason also becomes a sample of `00003.tar`:
`{key}.jpg` (or png/webp), `{key}.txt` (the caption) and `{key}.json` (its metadata). Keys
are img2dataset's: the shard then the row's index in it (every row counts), the index
with ceil(log10(samples_per_shard)) digits (`00003042` at 1,000 samples per shard).

On a clean exit the tar and the parquet are renamed into place, then `00003_stats.json` is
written, then the marker `00003.done` last. On an exception nothing final is left: the
temporary files are removed and so are any outputs already renamed. Opening a writer on a
shard that exists first removes its marker and outputs, so a rewrite that fails leaves the
shard incomplete rather than stale. The tar is deterministic: members in write order (per
sample, sorted by extension), fixed mtime, owner and mode, so the same input gives the
same bytes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sys
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

from core import storage
from core.io import atomic_path, clear_done, mark_done, write_json, write_pairs
from core.record import (
    STATUS_FAILED_DECODE,
    STATUS_FAILED_DOWNLOAD,
    STATUS_FAILED_RESIZE,
    STATUS_OPTED_OUT,
    Pair,
)
from core.stats import StageStats, tally
from shards.images import SAVE_FORMATS, ProcessedImage
from shards.layout import (
    INDEX_DIGITS,
    TarWriter,
    index_digits,
    parquet_path,
    sample_key,
    shard_name,
    stats_path,
    tar_path,
)

# The sample's .json: img2dataset's fields, then ours.
JSON_FIELDS = (
    "url",
    "caption",
    "key",
    "status",
    "error_message",
    "width",
    "height",
    "original_width",
    "original_height",
    "sha256",
    "uid",
    "page_url",
    "source",
    "language",
    "matched",
    "phash",
)


def sample_json(pair: Pair) -> str:
    """The `.json` member of a sample: JSON_FIELDS of the pair, pHash as 16 hex digits
    (`str` of an `imagehash.ImageHash`, read back by `imagehash.hex_to_hash`)."""
    meta = {name: getattr(pair, name) for name in JSON_FIELDS}
    meta["phash"] = phash_hex(pair.phash)
    return json.dumps(meta, indent=4, ensure_ascii=False)


def phash_hex(phash: int | None) -> str | None:
    """A 64-bit pHash as imagehash writes it: 16 hex digits, first bit most significant."""
    return None if phash is None else f"{phash:016x}"


class ShardWriter:
    """Writes one shard: a tar of samples, a parquet of every row, stats, then a marker."""

    def __init__(
        self,
        folder: str | Path,
        shard_id: int,
        encode_format: str = "jpg",
        *,
        index_digits: int = INDEX_DIGITS,
    ) -> None:
        if encode_format not in SAVE_FORMATS:
            raise ValueError(f"encode_format must be one of {sorted(SAVE_FORMATS)}")
        self.folder = storage.name(folder)
        self.shard_id = shard_id
        self.name = shard_name(shard_id)
        self.encode_format = encode_format
        self.index_digits = index_digits
        self.rows: list[Pair] = []
        self.samples = 0
        self.start_time = 0.0
        self._stack = contextlib.ExitStack()
        self._tar: TarWriter | None = None

    # ------------------------------------------------------------ lifecycle

    def __enter__(self) -> ShardWriter:
        storage.makedirs(self.folder)
        clear_done(self.folder, self.name)
        self._remove_outputs()
        self.start_time = time.time()
        tmp = self._stack.enter_context(atomic_path(tar_path(self.folder, self.shard_id)))
        self._tar = TarWriter(tmp)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.close()
        else:
            self._abort(exc_type, exc, tb)

    def close(self) -> None:
        """Finish the shard: tar and parquet into place, then stats, then the marker."""
        if self._tar is None:
            raise RuntimeError(f"shard {self.name} is not open")
        tar, self._tar = self._tar, None
        try:
            tar.close()
            self._stack.close()  # renames the tar into place
            write_pairs(parquet_path(self.folder, self.shard_id), self.rows)
            stats = self.stats()
            write_json(stats_path(self.folder, self.shard_id), stats)
            mark_done(self.folder, self.name, {"count": stats["count"], "samples": self.samples})
        except BaseException:
            self._abort(*sys.exc_info())  # the temporary tar too, if it was not renamed
            raise

    def _abort(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._tar is not None:
            self._tar.close()
            self._tar = None
        self._stack.__exit__(exc_type, exc, tb)  # removes the temporary tar
        self._remove_outputs()

    def _remove_outputs(self) -> None:
        clear_done(self.folder, self.name)
        for path in (
            tar_path(self.folder, self.shard_id),
            parquet_path(self.folder, self.shard_id),
            stats_path(self.folder, self.shard_id),
        ):
            storage.remove(path)

    # ------------------------------------------------------------ writing

    def write(self, pair: Pair, image: ProcessedImage | None) -> Pair:
        """Record `pair` (and its sample, if it has an image and no drop); return the row."""
        if self._tar is None:
            raise RuntimeError(f"shard {self.name} is not open: use it in a `with` block")
        row = image.annotate(pair) if image is not None else pair
        row = dataclasses.replace(row, key=self._next_key(), shard=self.shard_id)
        if image is not None and row.drop_reason is None:
            self._write_sample(row, image)
        self.rows.append(row)
        return row

    def _next_key(self) -> str:
        index = len(self.rows)
        if index >= 10**self.index_digits:
            raise ValueError(f"shard {self.name} is full: {index} rows need more key digits")
        return sample_key(self.shard_id, index, self.index_digits)

    def _write_sample(self, row: Pair, image: ProcessedImage) -> None:
        if image.format != self.encode_format:
            raise ValueError(
                f"image is {image.format}, shard {self.name} holds {self.encode_format}"
            )
        members = {
            image.format: image.data,
            "json": sample_json(row).encode("utf-8"),
            "txt": row.caption.encode("utf-8"),
        }
        for extension in sorted(members):
            self._add_member(f"{row.key}.{extension}", members[extension])
        self.samples += 1

    def _add_member(self, name: str, data: bytes) -> None:
        assert self._tar is not None
        self._tar.add(name, data)

    # ------------------------------------------------------------ counting

    def stats(self) -> dict[str, Any]:
        """img2dataset-like stats of the rows so far (`status_dict` counts by status)."""
        statuses = Counter(row.status for row in self.rows)
        end_time = time.time()
        return {
            "shard": self.shard_id,
            "count": len(self.rows),
            "samples": self.samples,
            "successes": self.samples,
            "failed_to_download": statuses[STATUS_FAILED_DOWNLOAD],
            "failed_to_resize": statuses[STATUS_FAILED_DECODE] + statuses[STATUS_FAILED_RESIZE],
            "opted_out": statuses[STATUS_OPTED_OUT],
            "dropped": sum(1 for row in self.rows if row.drop_reason is not None),
            "status_dict": dict(sorted(statuses.items())),
            "error_dict": _count(row.error_message for row in self.rows),
            "drop_dict": _count(row.drop_reason for row in self.rows),
            "encode_format": self.encode_format,
            "start_time": self.start_time,
            "end_time": end_time,
            "duration": end_time - self.start_time,
        }

    def stage_stats(self) -> StageStats:
        """The rows as a `StageStats` (kept: successes; dropped: by drop reason or status)."""
        stats = StageStats(stage="shards")
        for _ in tally(self.rows, stats):
            pass
        stats.count("samples", self.samples)
        return stats


def _count(values: Iterable[str | None]) -> dict[str, int]:
    counts = Counter(value for value in values if value is not None)
    return dict(sorted(counts.items()))


def write_shard(
    folder: str | Path,
    shard_id: int,
    samples: Iterable[tuple[Pair, ProcessedImage | None]],
    encode_format: str = "jpg",
    samples_per_shard: int = 10**INDEX_DIGITS,
) -> list[Pair]:
    """Write a whole shard in one call (a unit of work for a process pool); returns its rows.

    Keys get as many index digits as `samples_per_shard` needs (img2dataset's rule)."""
    digits = index_digits(samples_per_shard)
    with ShardWriter(folder, shard_id, encode_format, index_digits=digits) as writer:
        return [writer.write(pair, image) for pair, image in samples]
