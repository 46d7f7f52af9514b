"""img2dataset-style URL lists as candidate pairs: csv, tsv, jsonl, parquet (and txt).

The format comes from the file suffix. A row gives `Pair(url, caption, source="urllist")`;
a null caption is "". Rows with an empty URL are skipped and, when `stats` is given,
counted as dropped `missing_url`. A missing column is one `UrlListError` naming it and
the columns that exist. Files are streamed: parquet batch by batch, text line by line.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from pipeline.record import Pair
from pipeline.stats import StageStats

FORMATS = ("csv", "tsv", "jsonl", "parquet", "txt")
PARQUET_BATCH_ROWS = 8192


class UrlListError(ValueError):
    """A URL list that cannot be read: unknown format, missing column, malformed row."""


def url_list_format(path: Path) -> str:
    """The format named by the suffix (`.json` is read as JSON lines)."""
    suffix = path.suffix.lower().lstrip(".")
    suffix = "jsonl" if suffix == "json" else suffix
    if suffix not in FORMATS:
        raise UrlListError(f"{path}: unknown URL list format {suffix!r} (expected {FORMATS})")
    return suffix


def read_url_list(
    path: str | Path,
    url_col: str = "url",
    caption_col: str | None = "caption",
    stats: StageStats | None = None,
) -> Iterator[Pair]:
    """Candidate pairs from a URL list; `caption_col=None` reads URLs only."""
    target = Path(path)
    kind = url_list_format(target)
    if kind == "txt":
        rows: Iterator[dict[str, Any]] = _txt_rows(target, url_col)
        caption_col = None
    elif kind == "parquet":
        rows = _parquet_rows(target, url_col, caption_col)
    elif kind == "jsonl":
        rows = _jsonl_rows(target, url_col, caption_col)
    else:
        rows = _delimited_rows(target, url_col, caption_col, "\t" if kind == "tsv" else ",")
    for row in rows:
        pair = _row_pair(row, url_col, caption_col)
        if stats is not None:
            stats.seen += 1
            if pair is None:
                stats.drop("missing_url")
            else:
                stats.kept += 1
        if pair is not None:
            yield pair


def _row_pair(row: dict[str, Any], url_col: str, caption_col: str | None) -> Pair | None:
    url = row.get(url_col)
    url = "" if url is None else str(url).strip()
    if not url:
        return None
    caption = row.get(caption_col) if caption_col else None
    return Pair(url=url, caption="" if caption is None else str(caption), source="urllist")


def _check_columns(path: Path, present: list[str], *wanted: str | None) -> None:
    for column in wanted:
        if column is not None and column not in present:
            raise UrlListError(f"{path}: no column {column!r} (columns: {', '.join(present)})")


def _parquet_rows(path: Path, url_col: str, caption_col: str | None) -> Iterator[dict[str, Any]]:
    handle = pq.ParquetFile(path)
    _check_columns(path, handle.schema_arrow.names, url_col, caption_col)
    columns = [c for c in (url_col, caption_col) if c is not None]
    for batch in handle.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=columns):
        yield from batch.to_pylist()


def _delimited_rows(
    path: Path, url_col: str, caption_col: str | None, delimiter: str
) -> Iterator[dict[str, Any]]:
    with open(path, newline="", encoding="utf-8", errors="replace") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter)
        _check_columns(path, list(reader.fieldnames or []), url_col, caption_col)
        yield from reader


def _jsonl_rows(path: Path, url_col: str, caption_col: str | None) -> Iterator[dict[str, Any]]:
    checked = False
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UrlListError(f"{path}:{number}: not a JSON object: {exc}") from None
            if not isinstance(row, dict):
                raise UrlListError(f"{path}:{number}: not a JSON object")
            if not checked:  # the first row names the columns; later gaps are missing values
                _check_columns(path, list(row), url_col, caption_col)
                checked = True
            yield row


def _txt_rows(path: Path, url_col: str) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            yield {url_col: line.strip()}
