"""img2dataset-style URL lists as candidate pairs: csv, tsv, jsonl, parquet (and txt).

The format comes from the file suffix; the file may be local or on object storage. Rows
come out as Arrow tables of candidates (`read_url_batches`: url, caption, source
"urllist", uid, status "candidate"), a batch at a time, so a list of any length streams
through bounded memory; `read_url_list` gives the same rows as `Pair`s. A null caption is
"". Rows with an empty URL are skipped and, when `stats` is given, counted as dropped
`missing_url`. A missing column is one `UrlListError` naming it and the columns that
exist; so is a url or caption column that is not text (a parquet column of numbers, a JSON
number in a row), and a parquet file that is not one (corrupt, empty). Parquet is read
batch by batch, csv/tsv by pyarrow's streaming reader, jsonl and txt line by line.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from core import storage
from core.record import STATUS_CANDIDATE, Pair, table_to_pairs
from core.stats import StageStats

FORMATS = ("csv", "tsv", "jsonl", "parquet", "txt")
BATCH_ROWS = 65_536
CSV_BLOCK_BYTES = 16 << 20


class UrlListError(ValueError):
    """A URL list that cannot be read: unknown format, missing column, malformed row."""


def url_list_format(path: str | Path) -> str:
    """The format named by the suffix (`.json` is read as JSON lines)."""
    suffix = Path(storage.name(path)).suffix.lower().lstrip(".")
    suffix = "jsonl" if suffix == "json" else suffix
    if suffix not in FORMATS:
        raise UrlListError(f"{path}: unknown URL list format {suffix!r} (expected {FORMATS})")
    return suffix


def read_url_batches(
    path: str | Path,
    url_col: str = "url",
    caption_col: str | None = "caption",
    stats: StageStats | None = None,
) -> Iterator[pa.Table]:
    """Candidate tables from a URL list, in file order; `caption_col=None` reads URLs only."""
    location = storage.name(path)
    kind = url_list_format(location)
    if kind == "txt":
        columns: Iterator[tuple[pa.Array, pa.Array | None]] = _txt_columns(location)
    elif kind == "parquet":
        columns = _parquet_columns(location, url_col, caption_col)
    elif kind == "jsonl":
        columns = _jsonl_columns(location, url_col, caption_col)
    else:
        columns = _csv_columns(location, url_col, caption_col, "\t" if kind == "tsv" else ",")
    for urls, captions in columns:
        table = candidates(urls, captions if caption_col and kind != "txt" else None)
        if stats is not None:
            stats.seen += len(urls)
            stats.kept += table.num_rows
            if len(urls) - table.num_rows:
                stats.drop("missing_url", len(urls) - table.num_rows)
        if table.num_rows:
            yield table


def read_url_list(
    path: str | Path,
    url_col: str = "url",
    caption_col: str | None = "caption",
    stats: StageStats | None = None,
) -> Iterator[Pair]:
    """The rows of a URL list as candidate pairs (see `read_url_batches`)."""
    for table in read_url_batches(path, url_col, caption_col, stats):
        yield from table_to_pairs(table)


def candidates(urls: pa.Array, captions: pa.Array | None) -> pa.Table:
    """Candidate rows from a URL column and a caption column; empty URLs left out."""
    urls = pc.utf8_trim_whitespace(pc.fill_null(urls.cast(pa.string()), ""))
    if captions is None:
        captions = pa.array([""] * len(urls), type=pa.string())
    captions = pc.fill_null(captions.cast(pa.string()), "")
    present = pc.not_equal(urls, "")
    urls, captions = urls.filter(present), captions.filter(present)
    uids = [
        hashlib.md5((caption + url).encode("utf-8")).hexdigest()
        for caption, url in zip(captions.to_pylist(), urls.to_pylist(), strict=True)
    ]
    rows = len(urls)
    return pa.table(
        {
            "url": urls,
            "caption": captions,
            "source": pa.array(["urllist"] * rows, type=pa.string()),
            "uid": pa.array(uids, type=pa.string()),
            "status": pa.array([STATUS_CANDIDATE] * rows, type=pa.string()),
        }
    )


def _check_columns(path: str, present: list[str], *wanted: str | None) -> None:
    for column in wanted:
        if column is not None and column not in present:
            raise UrlListError(f"{path}: no column {column!r} (columns: {', '.join(present)})")


def _parquet_columns(
    path: str, url_col: str, caption_col: str | None
) -> Iterator[tuple[pa.Array, pa.Array | None]]:
    with storage.open_input(path) as handle:
        try:
            parquet = pq.ParquetFile(handle)
            _check_columns(path, parquet.schema_arrow.names, url_col, caption_col)
            _check_text_types(path, parquet.schema_arrow, url_col, caption_col)
            columns = [c for c in (url_col, caption_col) if c is not None]
            for batch in parquet.iter_batches(batch_size=BATCH_ROWS, columns=columns):
                urls = _text_array(batch.column(url_col))
                yield urls, _text_array(batch.column(caption_col)) if caption_col else None
        except (pa.ArrowInvalid, OSError) as exc:
            raise UrlListError(f"{path}: not a readable parquet file: {exc}") from None


def _is_text_type(kind: pa.DataType) -> bool:
    """Text, bytes (read as UTF-8), all-null, or a dictionary of one of them."""
    if pa.types.is_dictionary(kind):
        return _is_text_type(kind.value_type)
    return bool(
        pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_binary(kind)
        or pa.types.is_large_binary(kind)
        or pa.types.is_null(kind)
    )


def _check_text_types(path: str, schema: pa.Schema, *wanted: str | None) -> None:
    for column in wanted:
        if column is not None and not _is_text_type(schema.field(column).type):
            kind = schema.field(column).type
            raise UrlListError(
                f"{path}: column {column!r} is {kind}, not text: "
                "write it as strings, or name another column"
            )


def _text_array(values: pa.Array) -> pa.Array:
    """A text-like parquet column as strings (bytes decoded as UTF-8, bad bytes replaced)."""
    if pa.types.is_dictionary(values.type):
        values = values.cast(values.type.value_type)
    if pa.types.is_binary(values.type) or pa.types.is_large_binary(values.type):
        return _utf8(values)
    return values


def _csv_header(path: str, delimiter: str) -> list[str]:
    with storage.open_input(path) as handle:
        text = io.TextIOWrapper(handle, encoding="utf-8", errors="replace", newline="")
        return next(csv.reader(text, delimiter=delimiter), [])


def _csv_columns(
    path: str, url_col: str, caption_col: str | None, delimiter: str
) -> Iterator[tuple[pa.Array, pa.Array | None]]:
    _check_columns(path, _csv_header(path, delimiter), url_col, caption_col)
    wanted = [c for c in (url_col, caption_col) if c is not None]
    options = pacsv.ConvertOptions(
        column_types={c: pa.binary() for c in wanted},
        include_columns=wanted,
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
    )
    parse = pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True)
    read = pacsv.ReadOptions(block_size=CSV_BLOCK_BYTES)
    with storage.open_input(path) as handle:
        reader = pacsv.open_csv(
            handle, read_options=read, parse_options=parse, convert_options=options
        )
        for batch in reader:
            urls = _utf8(batch.column(url_col))
            yield urls, _utf8(batch.column(caption_col)) if caption_col else None


def _utf8(values: pa.Array) -> pa.Array:
    """Binary values as UTF-8 text; invalid bytes replaced (U+FFFD), as a text reader would."""
    try:
        return values.cast(pa.string())
    except pa.ArrowInvalid:
        decode = codecs.getdecoder("utf-8")
        texts = [None if v is None else decode(v, "replace")[0] for v in values.to_pylist()]
        return pa.array(texts, type=pa.string())


def _jsonl_columns(
    path: str, url_col: str, caption_col: str | None
) -> Iterator[tuple[pa.Array, pa.Array | None]]:
    checked = False
    urls: list[object] = []
    captions: list[object] = []
    with storage.open_input(path) as raw:
        handle = io.TextIOWrapper(raw, encoding="utf-8", errors="replace")
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
            urls.append(_text(row.get(url_col), f"{path}:{number}", url_col))
            captions.append(
                _text(row.get(caption_col), f"{path}:{number}", caption_col)
                if caption_col
                else None
            )
            if len(urls) == BATCH_ROWS:
                yield pa.array(urls, pa.string()), pa.array(captions, pa.string())
                urls, captions = [], []
    if urls:
        yield pa.array(urls, pa.string()), pa.array(captions, pa.string())


def _text(value: object, where: str, column: str) -> str | None:
    """A JSON field as text; a number, list or object where text belongs is an error."""
    if value is None or isinstance(value, str):
        return value
    raise UrlListError(f"{where}: {column!r} is a JSON {_json_type(value)}, not a string")


def _json_type(value: object) -> str:
    names = {bool: "boolean", int: "number", float: "number", list: "array", dict: "object"}
    return names.get(type(value), type(value).__name__)


def _txt_columns(path: str) -> Iterator[tuple[pa.Array, pa.Array | None]]:
    lines: list[str] = []
    with storage.open_input(path) as raw:
        for line in io.TextIOWrapper(raw, encoding="utf-8", errors="replace"):
            lines.append(line.strip())
            if len(lines) == BATCH_ROWS:
                yield pa.array(lines, pa.string()), None
                lines = []
    if lines:
        yield pa.array(lines, pa.string()), None
