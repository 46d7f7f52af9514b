"""The report's gallery: a sample of kept pairs, read from the shard tars (thumbnail, alt
text, matched entries, source page), and a sample of dropped ones grouped by reason.

A pair dropped for its image bytes (an exact or near duplicate) is shown with the kept
image it duplicates, so a person can check that the rule matched what it should.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from core.layout import RunLayout
from pipeline.report_data import FileSample, iter_rows, saved_setting, spread
from shards.tars import ShardIndex, TarSample, index_tar

THUMBNAIL_SIDE = 128
KEPT_SHOWN = 24
DROPPED_PER_REASON = 4
DROPPED_COLUMNS = ["uid", "caption", "url", "page_url", "drop_reason", "status", "error_message"]
IMAGE_COLUMNS = ["key", "status", "drop_reason", "sha256", "phash"]
NEAR_DUP_RADIUS = 3  # the shards stage's default, for runs whose config is not saved


@dataclass
class GalleryItem:
    caption: str
    url: str
    page_url: str
    matched: list[str] = field(default_factory=list)
    key: str = ""
    thumbnail: str = ""  # a data: URI, or "" when the pair has no image to show
    note: str = ""  # for a drop: the error, or which kept image it duplicates


def thumbnail(jpeg: bytes, side: int = THUMBNAIL_SIDE) -> str:
    """A JPEG at most `side` pixels a side, as a data URI; "" if the bytes do not decode."""
    try:
        with Image.open(io.BytesIO(jpeg)) as image:
            small = image.convert("RGB")
            small.thumbnail((side, side))
    except (OSError, ValueError, Image.DecompressionBombError):
        return ""
    buffer = io.BytesIO()
    small.save(buffer, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def shard_index(layout: RunLayout, n_tars: int = KEPT_SHOWN) -> ShardIndex | None:
    """The samples of up to `n_tars` tars spread over the shard set."""
    sample = FileSample.of(layout.shards_dir, ".tar", n_tars)
    index = ShardIndex(sample.files, [s for tar in sample.files for s in index_tar(tar)])
    return index if index.samples else None


def kept_items(index: ShardIndex, n_shown: int = KEPT_SHOWN) -> list[GalleryItem]:
    return [sample_item(index, index.samples[i]) for i in spread(len(index.samples), n_shown)]


def sample_item(index: ShardIndex, sample: TarSample, note: str = "") -> GalleryItem:
    meta = index.read_json(sample)
    image = next((e for e in ("jpg", "jpeg", "png", "webp") if e in sample.members), None)
    return GalleryItem(
        caption=str(meta.get("caption", "")),
        url=str(meta.get("url", "")),
        page_url=str(meta.get("page_url") or ""),
        matched=list(meta.get("matched") or []),
        key=sample.key,
        thumbnail=thumbnail(index.read(sample, image)) if image else "",
        note=note,
    )


def dropped_items(
    layout: RunLayout, reasons: Iterable[str], index: ShardIndex | None
) -> dict[str, list[GalleryItem]]:
    """Up to `DROPPED_PER_REASON` dropped pairs per reason, from curate/dropped and the
    shards' parquet rows; reading stops once every reason in `reasons` has its share."""
    wanted = set(reasons)
    found: dict[str, list[dict[str, Any]]] = {}
    for row in _dropped_rows(layout):
        reason = row.get("drop_reason") or row.get("status") or "unknown"
        bucket = found.setdefault(reason, [])
        if len(bucket) < DROPPED_PER_REASON:
            bucket.append(row)
        if wanted and all(len(found.get(r, ())) >= DROPPED_PER_REASON for r in wanted):
            break
    twins = _TwinFinder(layout, index) if index else None
    return {r: [_dropped_item(row, twins) for row in rows] for r, rows in sorted(found.items())}


def _dropped_rows(layout: RunLayout) -> Iterator[dict[str, Any]]:
    yield from iter_rows(layout.dropped, [*DROPPED_COLUMNS, "matched"])
    for name in shard_parquets(layout):
        for row in iter_rows(name, [*DROPPED_COLUMNS, "matched", "sha256", "phash"]):
            if row.get("drop_reason") or row.get("status") != "success":
                yield row


def shard_parquets(layout: RunLayout) -> list[str]:
    """The shard parquet files the gallery reads: those beside the tars `shard_index` reads."""
    return FileSample.of(layout.shards_dir, ".parquet", KEPT_SHOWN).files


def _dropped_item(row: dict[str, Any], twins: _TwinFinder | None) -> GalleryItem:
    item = GalleryItem(
        caption=str(row.get("caption") or ""),
        url=str(row.get("url") or ""),
        page_url=str(row.get("page_url") or ""),
        matched=list(row.get("matched") or []),
        note=str(row.get("error_message") or ""),
    )
    twin = twins.twin(row) if twins else None
    if twin is not None and twins is not None:
        kept = sample_item(twins.index, twin)
        item.thumbnail, item.key = kept.thumbnail, kept.key
        item.note = f"duplicates kept sample {kept.key}: {kept.caption}"
    return item


class _TwinFinder:
    """The kept sample a dropped image duplicates: the same sha256, or the nearest pHash
    within the run's `shards.near_dup_radius` (among the shards the gallery read)."""

    def __init__(self, layout: RunLayout, index: ShardIndex) -> None:
        self.index = index
        self.radius = saved_setting(layout, "shards", "near_dup_radius", NEAR_DUP_RADIUS)
        by_key = {s.key.rpartition("/")[2]: s for s in index.samples}
        self.by_sha: dict[str, TarSample] = {}
        keys, hashes = [], []
        rows = (r for name in shard_parquets(layout) for r in iter_rows(name, IMAGE_COLUMNS))
        for row in rows:
            sample = by_key.get(row.get("key") or "")
            if row.get("status") != "success" or row.get("drop_reason") or sample is None:
                continue
            if row.get("sha256"):
                self.by_sha.setdefault(row["sha256"], sample)
            if row.get("phash") is not None:
                keys.append(sample)
                hashes.append(int(row["phash"]))
        self.samples = keys
        self.hashes = np.array(hashes, dtype=np.uint64)

    def twin(self, row: dict[str, Any]) -> TarSample | None:
        reason = row.get("drop_reason") or ""
        if reason.startswith("dedup:") and row.get("sha256"):
            return self.by_sha.get(row["sha256"])
        if reason.startswith("neardup:") and row.get("phash") is not None and len(self.hashes):
            distance = np.bitwise_count(self.hashes ^ np.uint64(int(row["phash"])))
            nearest = int(np.argmin(distance))
            return self.samples[nearest] if distance[nearest] <= self.radius else None
        return None
