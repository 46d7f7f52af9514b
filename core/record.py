"""The one record that carries an (image URL, alt text) pair from the crawler to the shard.

A `Pair` is created by a crawler with the candidate fields filled in; each later stage
returns it with its own fields added (language, matched entries, image hashes, sizes...).
On disk every stage writes the same pyarrow schema, `PAIR_SCHEMA`, so any stage's output
is any other stage's input and a row never changes shape between files.

Statuses follow img2dataset: a pair that failed is a row with `status` and
`error_message`, never a silent drop. Curation drops are rows with `drop_reason` set.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

T = TypeVar("T")

# Where a candidate came from.
SOURCES = ("crawl", "warc", "wat", "urllist")

# Status of a pair as it moves on. `candidate` until an image fetch is tried.
STATUS_CANDIDATE = "candidate"
STATUS_SUCCESS = "success"
STATUS_FAILED_DOWNLOAD = "failed_to_download"
STATUS_FAILED_DECODE = "failed_to_decode"
STATUS_FAILED_RESIZE = "failed_to_resize"
STATUS_OPTED_OUT = "opted_out"
STATUSES = (
    STATUS_CANDIDATE,
    STATUS_SUCCESS,
    STATUS_FAILED_DOWNLOAD,
    STATUS_FAILED_DECODE,
    STATUS_FAILED_RESIZE,
    STATUS_OPTED_OUT,
)


def pair_uid(caption: str, url: str) -> str:
    """cc2dataset's uid: md5 of alt text followed by the image URL, as hex."""
    return hashlib.md5((caption + url).encode("utf-8")).hexdigest()


@dataclass
class Pair:
    """An (image URL, alt text) pair and everything the stages learn about it."""

    # --- candidate: set by the crawler that found it
    url: str
    caption: str
    page_url: str | None = None
    source: str = "crawl"
    uid: str = ""
    page_lang: str | None = None  # <html lang=...> of the page, if declared
    # --- curation
    drop_reason: str | None = None  # "<stage>:<reason>" once a filter drops it
    language: str | None = None
    language_score: float | None = None
    matched: list[str] = field(default_factory=list)  # matched query entries
    # --- image fetch and processing
    status: str = STATUS_CANDIDATE
    error_message: str | None = None
    http_status: int | None = None
    content_type: str | None = None
    image_bytes: int | None = None  # size of the downloaded body
    original_width: int | None = None
    original_height: int | None = None
    width: int | None = None  # size of the image as written to the shard
    height: int | None = None
    sha256: str | None = None  # of the downloaded bytes
    phash: int | None = None  # 64-bit perceptual hash, unsigned
    # --- shard placement
    key: str | None = None  # webdataset sample key, `{shard:05d}{index:04d}`
    shard: int | None = None
    # --- optional text of the <img>, where the source records it (MetaCLIP keeps both)
    title: str | None = None  # the `title` attribute
    image_title: str | None = None  # the `data-image-title` attribute
    # --- declared size of the <img> (`width`/`height` attributes), where the source reads it
    declared_width: int | None = None
    declared_height: int | None = None

    def __post_init__(self) -> None:
        if not self.uid:
            self.uid = pair_uid(self.caption, self.url)

    @property
    def kept(self) -> bool:
        return self.drop_reason is None and self.status in (STATUS_CANDIDATE, STATUS_SUCCESS)

    def dropped(self, reason: str) -> Pair:
        """The same pair, marked as dropped for `reason` ("stage:why")."""
        return dataclasses.replace(self, drop_reason=reason)

    def to_dict(self) -> dict[str, Any]:
        """The fields by name (shallow: `dataclasses.asdict` deep-copies, 10x slower)."""
        return {name: getattr(self, name) for name in PAIR_FIELDS}

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> Pair:
        values = {name: row[name] for name in PAIR_FIELDS if name in row}
        if values.get("matched") is None:
            values["matched"] = []
        return cls(**values)


PAIR_FIELDS = tuple(f.name for f in dataclasses.fields(Pair))  # in declaration order

PAIR_SCHEMA = pa.schema(
    [
        pa.field("url", pa.string(), nullable=False),
        pa.field("caption", pa.string(), nullable=False),
        pa.field("page_url", pa.string()),
        pa.field("source", pa.string(), nullable=False),
        pa.field("uid", pa.string(), nullable=False),
        pa.field("page_lang", pa.string()),
        pa.field("drop_reason", pa.string()),
        pa.field("language", pa.string()),
        pa.field("language_score", pa.float32()),
        pa.field("matched", pa.list_(pa.string())),
        pa.field("status", pa.string(), nullable=False),
        pa.field("error_message", pa.string()),
        pa.field("http_status", pa.int32()),
        pa.field("content_type", pa.string()),
        pa.field("image_bytes", pa.int64()),
        pa.field("original_width", pa.int32()),
        pa.field("original_height", pa.int32()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("sha256", pa.string()),
        pa.field("phash", pa.uint64()),
        pa.field("key", pa.string()),
        pa.field("shard", pa.int32()),
        pa.field("title", pa.string()),
        pa.field("image_title", pa.string()),
        pa.field("declared_width", pa.int32()),
        pa.field("declared_height", pa.int32()),
    ]
)

assert [f.name for f in PAIR_SCHEMA] == [f.name for f in dataclasses.fields(Pair)], (
    "PAIR_SCHEMA and Pair must list the same fields in the same order"
)


def pairs_to_table(pairs: Iterable[Pair]) -> pa.Table:
    """Pairs as one pyarrow table in `PAIR_SCHEMA`."""
    rows = [p.to_dict() for p in pairs]
    return pa.Table.from_pylist(rows, schema=PAIR_SCHEMA)


def table_to_pairs(table: pa.Table) -> Iterator[Pair]:
    """Rows of a table (any superset or subset of `PAIR_SCHEMA`) as pairs."""
    for row in table.to_pylist():
        yield Pair.from_dict(row)


_HEX_VALUES = np.full(256, -1, dtype=np.int64)
for _digit, _char in enumerate(b"0123456789abcdef"):
    _HEX_VALUES[_char] = _digit


def uid_prefix32(uids: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """The first 8 hex digits of each uid as an integer in [0, 2**32), vectorised.

    uids are md5 hex digests, so the prefix orders them as string comparison does and is
    spread evenly over its range: `uid_range` cuts that range into equal slices.
    """
    values = uids.combine_chunks() if isinstance(uids, pa.ChunkedArray) else uids
    heads = pc.utf8_slice_codeunits(values, 0, 8).cast(pa.binary())
    prefixes = np.zeros(len(heads), dtype=np.uint64)
    if not len(heads):
        return prefixes
    offsets = np.frombuffer(heads.buffers()[1], dtype=np.int32)[
        heads.offset : heads.offset + len(heads) + 1
    ]
    if not np.all(np.diff(offsets) == 8):
        raise ValueError("uids must be md5 hex digests (32 lower-case hex digits)")
    raw = np.frombuffer(heads.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
    digits = _HEX_VALUES[raw].reshape(-1, 8)
    if (digits < 0).any():
        raise ValueError("uids must be md5 hex digests (32 lower-case hex digits)")
    for column in range(8):
        prefixes = (prefixes << np.uint64(4)) | digits[:, column].astype(np.uint64)
    return prefixes


def uid_range(uids: pa.Array | pa.ChunkedArray, ranges: int) -> np.ndarray:
    """Which of `ranges` equal slices of uid space each uid falls in (monotone in uid).

    Concatenating the ranges in order, each sorted by uid, gives the global uid order for
    any number of ranges: the order shards are cut from.
    """
    return ((uid_prefix32(uids) * np.uint64(ranges)) >> np.uint64(32)).astype(np.int64)


def map_kept_in_batches(
    pairs: Iterable[Pair],
    size: int,
    decide: Callable[[list[Pair]], Iterable[T]],
    apply: Callable[[Pair, T], Pair],
) -> Iterator[Pair]:
    """Every pair, in order: the kept ones of each batch of `size` are decided together by
    `decide` (one value per kept pair, in their order) and rewritten by `apply`; dropped
    pairs pass untouched. How a Pair-level filter runs on its columnar implementation."""
    stream = iter(pairs)
    while batch := list(itertools.islice(stream, size)):
        values = iter(decide([pair for pair in batch if pair.kept]))
        for pair in batch:
            yield apply(pair, next(values)) if pair.kept else pair
