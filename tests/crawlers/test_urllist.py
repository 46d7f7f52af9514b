from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.stats import StageStats
from crawlers.urllist import UrlListError, read_url_list

ROWS: list[dict[str, str | None]] = [
    {"url": "http://a.example/1.jpg", "caption": "a red fox, in snow"},
    {"url": "http://a.example/2.jpg", "caption": 'quoted "tab\tand\nnewline"'},
    {"url": "", "caption": "no url"},
    {"url": "http://b.example/3.jpg", "caption": None},
]
EXPECTED = [
    ("http://a.example/1.jpg", "a red fox, in snow"),
    ("http://a.example/2.jpg", 'quoted "tab\tand\nnewline"'),
    ("http://b.example/3.jpg", ""),
]


def write_rows(path: Path) -> Path:
    kind = path.suffix.lstrip(".")
    if kind == "parquet":
        pq.write_table(pa.Table.from_pylist(ROWS), path)
    elif kind == "jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    else:
        with open(path, "w", newline="") as handle:
            writer = csv.DictWriter(
                handle, ["url", "caption"], delimiter="\t" if kind == "tsv" else ","
            )
            writer.writeheader()
            writer.writerows(ROWS)
    return path


@pytest.mark.parametrize("suffix", ["csv", "tsv", "jsonl", "parquet"])
def test_formats(tmp_path: Path, suffix: str) -> None:
    path = write_rows(tmp_path / f"list.{suffix}")
    stats = StageStats("urllist")
    pairs = list(read_url_list(path, stats=stats))
    assert [(p.url, p.caption) for p in pairs] == EXPECTED
    assert all(p.source == "urllist" and p.status == "candidate" and p.uid for p in pairs)
    assert stats.seen == 4 and stats.kept == 3 and stats.dropped == {"missing_url": 1}


def test_txt_is_urls_only(tmp_path: Path) -> None:
    path = tmp_path / "list.txt"
    path.write_text("http://a.example/1.jpg\n\nhttp://a.example/2.jpg\n")
    assert [(p.url, p.caption) for p in read_url_list(path)] == [
        ("http://a.example/1.jpg", ""),
        ("http://a.example/2.jpg", ""),
    ]


@pytest.mark.parametrize("suffix", ["csv", "tsv", "jsonl", "parquet"])
def test_missing_column_is_one_clear_error(tmp_path: Path, suffix: str) -> None:
    path = write_rows(tmp_path / f"list.{suffix}")
    with pytest.raises(UrlListError, match="no column 'TEXT'"):
        list(read_url_list(path, caption_col="TEXT"))
    with pytest.raises(UrlListError, match=r"no column 'link' \(columns: url, caption\)"):
        list(read_url_list(path, url_col="link"))
    assert len(list(read_url_list(path, caption_col=None))) == 3


def test_unknown_format_and_bad_json(tmp_path: Path) -> None:
    with pytest.raises(UrlListError, match="unknown URL list format"):
        list(read_url_list(tmp_path / "list.xlsx"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"url": "http://a/1", "caption": "x"}\n{not json\n')
    with pytest.raises(UrlListError, match=r"bad.jsonl:2"):
        list(read_url_list(bad))


def test_img2dataset_test_file(shared_data: Path) -> None:
    path = shared_data / "alt_text" / "img2dataset-test_10000.parquet"
    pairs = read_url_list(path, url_col="URL", caption_col="TEXT")
    first = next(pairs)
    assert first.url.startswith("http://direct.rhapsody.com/") and first.caption.startswith(
        "Classical Masterpieces"
    )
    rest = list(pairs)
    assert len(rest) + 1 == 10_000
    assert len({p.uid for p in rest}) > 9_000
    with pytest.raises(UrlListError, match="no column 'url'"):
        next(read_url_list(path))


@pytest.mark.parametrize(
    ("kind", "shown"),
    [(pa.int64(), "int64"), (pa.float64(), "double"), (pa.bool_(), "bool"),
     (pa.list_(pa.string()), "list<")],
)  # fmt: skip
def test_parquet_column_that_is_not_text_is_refused(
    tmp_path: Path, kind: pa.DataType, shown: str
) -> None:
    path = tmp_path / "typed.parquet"
    values = pa.array([None], type=kind)
    pq.write_table(pa.table({"url": ["http://a.example/1.jpg"], "caption": values}), path)
    with pytest.raises(UrlListError, match=f"column 'caption' is {re.escape(shown)}"):
        list(read_url_list(path))


def test_parquet_bytes_and_dictionary_columns_are_text(tmp_path: Path) -> None:
    path = tmp_path / "bytes.parquet"
    urls = pa.array([b"http://a.example/1.jpg", b"http://a.example/\xff.jpg"], pa.binary())
    captions = pa.array(["a fox", "a fox"]).dictionary_encode()
    pq.write_table(pa.table({"url": urls, "caption": captions}), path)
    pairs = [(p.url, p.caption) for p in read_url_list(path)]
    assert pairs == [("http://a.example/1.jpg", "a fox"), ("http://a.example/\ufffd.jpg", "a fox")]


@pytest.mark.parametrize("body", [b"", b"PAR1 broken PAR1"], ids=["empty", "corrupt"])
def test_unreadable_parquet_is_one_clear_error(tmp_path: Path, body: bytes) -> None:
    path = tmp_path / "bad.parquet"
    path.write_bytes(body)
    with pytest.raises(UrlListError, match=r"bad\.parquet: not a readable parquet file"):
        list(read_url_list(path))


@pytest.mark.parametrize(("value", "kind"), [(7, "number"), ([], "array"), (True, "boolean")])
def test_jsonl_field_that_is_not_a_string_names_its_line(
    tmp_path: Path, value: object, kind: str
) -> None:
    path = tmp_path / "list.jsonl"
    rows = [
        {"url": "http://a.example/1.jpg", "caption": "ok"},
        {"url": "http://b/", "caption": value},
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with pytest.raises(UrlListError, match=f"list.jsonl:2: 'caption' is a JSON {kind}, not"):
        list(read_url_list(path))
