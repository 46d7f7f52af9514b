"""WARC response records as candidates: real WARCs, charsets, codings, broken files."""

from __future__ import annotations

import gzip
import random
import zlib
from pathlib import Path

import pyarrow as pa
import pytest

from bench.warc import http_response, warc_record
from core.record import pair_uid
from core.stats import StageStats
from crawlers.warc import dechunked, read_warc_batches

# README of the shared data: <img> tags with a non-empty alt in each real WARC.
REAL_WARCS = {
    "commoncrawl-whirlwind.warc.gz": 7,
    "resiliparse-clipped.warc.gz": 6,
    "resiliparse-clueweb-quirk.warc.gz": 556,
    "resiliparse-warcfile.warc.gz": 32,
}


def read_all(path: Path | str, **options: bool) -> tuple[pa.Table, StageStats]:
    stats = StageStats("crawl")
    tables = list(read_warc_batches(str(path), stats, **options))
    table = pa.concat_tables(tables) if tables else pa.table({"url": pa.array([], pa.string())})
    assert stats.seen == stats.kept + sum(stats.dropped.values()), stats.to_dict()
    return table, stats


def write_warc(path: Path, *records: bytes) -> Path:
    path.write_bytes(b"".join(records))
    return path


def page(uri: str, html: bytes, content_type: str = "text/html; charset=utf-8") -> bytes:
    return warc_record(
        "response", uri, http_response(html, content_type), "application/http; msgtype=response"
    )


@pytest.mark.parametrize("name", sorted(REAL_WARCS))
def test_real_warcs_give_all_their_img_alt_pairs(shared_data: Path, name: str) -> None:
    table, stats = read_all(shared_data / "warc" / name)
    assert table.num_rows == REAL_WARCS[name]
    rows = table.to_pylist()
    assert all(r["source"] == "warc" and r["caption"] for r in rows)
    assert all(r["url"].startswith(("http://", "https://")) for r in rows)
    assert all(r["uid"] == pair_uid(r["caption"], r["url"]) for r in rows)
    assert stats.counts["images_found"] >= table.num_rows


def test_the_clipped_record_gives_what_was_read_and_is_counted(shared_data: Path) -> None:
    table, stats = read_all(shared_data / "warc" / "resiliparse-clipped.warc.gz")
    assert table.num_rows == 6
    assert stats.dropped == {"warc:truncated": 1}


def test_japanese_pages_decode_by_their_declared_charset(shared_data: Path) -> None:
    # EUC-JP in the HTTP header, LF-only header lines, a Content-Encoding: gzip that lies.
    table, stats = read_all(shared_data / "warc" / "resiliparse-clueweb-quirk.warc.gz")
    captions = table.column("caption").to_pylist()
    assert stats.kept == 29
    assert not any("\ufffd" in c for c in captions)
    assert sum(any("\u3040" <= ch <= "\u30ff" for ch in c) for c in captions) > 100


def test_a_truncated_gzip_gives_the_records_before_the_cut(
    shared_data: Path, tmp_path: Path
) -> None:
    whole = (shared_data / "warc" / "resiliparse-warcfile.warc.gz").read_bytes()
    cut = tmp_path / "cut.warc.gz"
    cut.write_bytes(whole[: len(whole) // 2])
    table, stats = read_all(cut)
    assert 0 < table.num_rows < 32
    assert stats.dropped["warc:truncated"] == 1


def test_every_broken_file_is_counted_never_raised(shared_data: Path) -> None:
    reasons: set[str] = set()
    for path in sorted((shared_data / "bad_inputs" / "warcio-test-data").iterdir()):
        _, stats = read_all(path)
        reasons |= set(stats.dropped)
    assert {"warc:bad_header", "warc:not_html"} <= reasons  # ARC files, text; POST echoes


def test_corrupted_bytes_never_raise(shared_data: Path, tmp_path: Path) -> None:
    data = (shared_data / "warc" / "resiliparse-warcfile.warc.gz").read_bytes()
    rng = random.Random(7)
    for trial in range(12):
        broken = bytearray(data)
        for _ in range(trial + 1):
            broken[rng.randrange(len(broken))] = rng.randrange(256)
        if trial % 3 == 0:
            broken = broken[: rng.randrange(len(broken))]
        path = tmp_path / f"broken-{trial}.warc.gz"
        path.write_bytes(bytes(broken))
        read_all(path)  # the seen == kept + dropped check runs inside


def test_charset_from_header_then_meta_then_sniffed(tmp_path: Path) -> None:
    russian = "<html><body><img src='/a.jpg' alt='Красная площадь зимой в Москве'></body></html>"
    meta = "<html><head><meta charset='windows-1251'></head><body>" + russian[12:]
    warc = write_warc(
        tmp_path / "charsets.warc.gz",
        page("http://a.test/header", russian.encode("koi8-r"), "text/html; charset=koi8-r"),
        page("http://a.test/meta", meta.encode("cp1251"), "text/html"),
        page("http://a.test/sniffed", (russian * 20).encode("cp1251"), "text/html"),
    )
    table, _ = read_all(warc)
    assert set(table.column("caption").to_pylist()) == {"Красная площадь зимой в Москве"}
    assert table.column("url").to_pylist()[0] == "http://a.test/a.jpg"


def test_chunked_and_gzip_bodies_are_decoded(tmp_path: Path) -> None:
    html = b"<html><body><img src='x.png' alt='a small blue boat'></body></html>"
    chunked = b"10\r\n" + html[:16] + b"\r\n" + format(len(html) - 16, "x").encode() + b"\r\n"
    chunked += html[16:] + b"\r\n0\r\n\r\n"
    assert dechunked(chunked) == html
    gz = gzip.compress(html)
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n"
    blocks = [
        head + b"Transfer-Encoding: chunked\r\n\r\n" + chunked,
        head + b"Content-Encoding: gzip\r\n\r\n" + gz,
        head + b"Content-Encoding: deflate\r\n\r\n" + zlib.compress(html),
    ]
    kind = "application/http; msgtype=response"
    warc = write_warc(
        tmp_path / "codings.warc",
        *[warc_record("response", f"http://b.test/{i}/", b, kind) for i, b in enumerate(blocks)],
    )
    table, stats = read_all(warc)
    assert table.column("url").to_pylist() == [f"http://b.test/{i}/x.png" for i in range(3)]
    assert stats.kept == 3


def test_non_html_errors_and_opted_out_pages_are_counted(tmp_path: Path) -> None:
    html = b"<html><body><img src='/a.jpg' alt='a green door'></body></html>"
    opted = b"<html><head><meta name='robots' content='noai'></head>" + html[6:]
    kind = "application/http; msgtype=response"
    warc = write_warc(
        tmp_path / "mixed.warc.gz",
        page("http://c.test/png", b"\x89PNG....", "image/png"),
        warc_record("response", "http://c.test/404", b"HTTP/1.1 404 Not Found\r\n\r\n", kind),
        page("http://c.test/opted", opted),
        warc_record("request", "http://c.test/", b"GET / HTTP/1.1\r\n\r\n", kind),
        page("http://c.test/ok", html),
    )
    table, stats = read_all(warc)
    assert table.column("page_url").to_pylist() == ["http://c.test/ok"]
    assert dict(stats.dropped) == {"warc:not_html": 1, "warc:http_404": 1}
    assert stats.counts["images_opted_out"] == 1
    table, _ = read_all(warc, respect_robots=False)
    assert table.num_rows == 2


def test_rows_carry_titles_and_declared_sizes(tmp_path: Path) -> None:
    html = (
        b"<html><img src='/a.jpg' alt='a red kite' title=' The  kite ' data-image-title='Kite'"
        b" width='640' height='480'><img src='/b.jpg' alt='a pixel' width=1 height='1px'>"
        b"<img src='/c.jpg' alt='plain' title='  '></html>"
    )
    warc = write_warc(tmp_path / "t.warc", page("http://example.com/p", html))
    table, _ = read_all(warc)
    got = [
        (r["url"], r["title"], r["image_title"], r["declared_width"], r["declared_height"])
        for r in table.to_pylist()
    ]
    assert got == [
        ("http://example.com/a.jpg", "The kite", "Kite", 640, 480),
        ("http://example.com/b.jpg", None, None, 1, 1),
        ("http://example.com/c.jpg", None, None, None, None),
    ]
    assert table.schema.field("declared_width").type == pa.int32()
