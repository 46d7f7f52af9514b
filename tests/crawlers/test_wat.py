"""WAT metadata records as candidates, with cc2dataset's semantics."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import pyarrow as pa

from bench.warc import build_wat, real_pages, warc_record, wat_record
from core.record import pair_uid
from core.stats import StageStats
from crawlers.warc import read_warc_batches
from crawlers.wat import UrlResolver, read_wat_batches


def page_record(
    target: str,
    links: list[dict[str, Any]],
    head: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> bytes:
    html = {"Head": head or {}, "Links": links}
    response = {"Headers": headers or {}, "HTML-Metadata": html}
    return wat_record(target, "response", {"HTTP-Response-Metadata": response})


def img(url: str, alt: str | None = None, **extra: str) -> dict[str, str]:
    return {"path": "IMG@/src", "url": url, **({"alt": alt} if alt is not None else {}), **extra}


def read_all(path: Path, respect_robots: bool = True) -> tuple[list[dict[str, Any]], StageStats]:
    stats = StageStats("crawl")
    tables = list(read_wat_batches(str(path), stats, respect_robots))
    assert stats.seen == stats.kept + sum(stats.dropped.values()), stats.to_dict()
    return (pa.concat_tables(tables).to_pylist() if tables else []), stats


def test_img_links_with_alt_resolved_against_base_then_target(tmp_path: Path) -> None:
    wat = tmp_path / "a.warc.wat.gz"
    wat.write_bytes(
        page_record(
            "https://a.test/dir/page.html",
            [
                img("/abs.jpg", "rooted path"),
                img("rel.jpg", "relative to the base", title="T", **{"data-image-title": "IT"}),
                img("//cdn.test/x.jpg", "scheme relative"),
                img("http://b.test/y.jpg", "already absolute"),
                img("data:image/png;base64,AAAA", "inline data"),
                img("z.jpg", ""),
                img("w.jpg"),
                {"path": "A@/href", "url": "/link", "alt": "not an image"},
            ],
            head={
                "Base": "../other/",
                "Metas": [{"http-equiv": "Content-Language", "content": "de"}],
            },
        )
        + page_record("http://c.test/p/q", [img("i.png", "no base here")])
    )
    rows, stats = read_all(wat)
    assert [(r["url"], r["caption"]) for r in rows] == [
        ("https://a.test/abs.jpg", "rooted path"),
        ("https://a.test/other/rel.jpg", "relative to the base"),
        ("https://cdn.test/x.jpg", "scheme relative"),
        ("http://b.test/y.jpg", "already absolute"),
        ("http://c.test/p/i.png", "no base here"),
    ]
    assert rows[1]["title"] == "T" and rows[1]["image_title"] == "IT"
    assert [r["page_lang"] for r in rows] == ["de"] * 4 + [None]
    assert {r["source"] for r in rows} == {"wat"}
    assert all(r["uid"] == pair_uid(r["caption"], r["url"]) for r in rows)  # cc2dataset's
    assert rows[0]["page_url"] == "https://a.test/dir/page.html"
    assert stats.counts["images_found"] == 8
    assert stats.counts["images_without_alt"] == 2
    assert stats.counts["images_not_http"] == 1


def test_records_that_are_not_pages(tmp_path: Path) -> None:
    request = wat_record("http://a.test/", "request", {"HTTP-Request-Metadata": {}})
    image = wat_record("http://a.test/i.png", "response", {"HTTP-Response-Metadata": {}})
    json = "application/json"
    bad = b'{"Envelope": {"Payload-Metadata": {"HTTP-Response-Metadata": {'
    bad_json = warc_record("metadata", "http://a.test/x", bad, json)
    no_envelope = warc_record("metadata", "http://a.test/y", b'["HTTP-Response-Metadata"]', json)
    wat = tmp_path / "b.wat.gz"
    wat.write_bytes(request + image + bad_json + no_envelope + page_record("http://a.test/", []))
    rows, stats = read_all(wat)
    assert rows == []
    assert stats.counts["records_skipped"] == 1
    assert (stats.seen, stats.kept) == (4, 1)
    assert dict(stats.dropped) == {"wat:not_html": 1, "wat:bad_json": 1, "wat:bad_record": 1}


def test_language_from_the_http_header_and_robots_opt_out(tmp_path: Path) -> None:
    wat = tmp_path / "c.wat.gz"
    wat.write_bytes(
        page_record("http://a.test/", [img("a.jpg", "one")], headers={"Content-Language": "fr"})
        + page_record(
            "http://b.test/",
            [img("b.jpg", "two")],
            head={"Metas": [{"name": "robots", "content": "index, noimageai"}]},
        )
    )
    rows, stats = read_all(wat)
    assert [(r["url"], r["page_lang"]) for r in rows] == [("http://a.test/a.jpg", "fr")]
    assert stats.counts["images_opted_out"] == 1
    rows, _ = read_all(wat, respect_robots=False)
    assert len(rows) == 2


def test_a_cut_wat_gives_the_records_before_the_cut(tmp_path: Path) -> None:
    records = [page_record(f"http://a.test/{i}", [img(f"{i}.jpg", f"image {i}")]) for i in range(5)]
    whole = b"".join(records)
    wat = tmp_path / "cut.wat.gz"
    wat.write_bytes(whole[: len(whole) - len(records[-1]) // 2])
    rows, stats = read_all(wat)
    assert [r["caption"] for r in rows] == [f"image {i}" for i in range(4)]
    assert sum(stats.dropped.values()) == 1


def test_the_real_wat_without_links(shared_data: Path) -> None:
    rows, stats = read_all(shared_data / "warc" / "commoncrawl-whirlwind.warc.wat.gz")
    assert rows == [] and stats.counts["records_skipped"] == 1


def test_a_wat_of_real_pages_holds_their_img_alt_pairs(shared_data: Path, tmp_path: Path) -> None:
    pages = [p for p in real_pages(shared_data) if "resiliparse-warcfile" not in p[0]][:40]
    wat = tmp_path / "real.warc.wat.gz"
    build_wat(wat, pages, len(pages))
    rows, stats = read_all(wat)
    assert stats.kept == len(pages) and stats.counts["records_skipped"] == 2 * len(pages)
    assert len(rows) > 200
    warc = tmp_path / "real.warc.gz"
    kind = "application/http; msgtype=response"
    warc.write_bytes(
        b"".join(
            warc_record("response", uri, b"HTTP/1.1 200 OK\r\n\r\n" + html, kind)
            for uri, html in pages
        )
    )
    warc_captions = {
        c
        for t in read_warc_batches(str(warc), StageStats("crawl"))
        for c in t["caption"].to_pylist()
    }
    # The WAT keeps alt as written, the page parser collapses its whitespace.
    wat_captions = {" ".join(r["caption"].split()) for r in rows}
    assert len(wat_captions & warc_captions) > 0.9 * len(wat_captions)


def test_the_resolver_agrees_with_urljoin() -> None:
    bases = [
        "http://h.test/a/b.html?q=1#f", "https://h.test", "http://u:p@h.test:8080/a/b/",
        "http://h.test/a/../b/c", "http://[::1]/x/y", "https://h.test/a/b;p?x",
    ]  # fmt: skip
    urls = [
        "/x.png", "//cdn.test/x.png", "x.png", "img/x.png?a=1#z", "./x.png", "../x.png",
        "/a/../x", "//[bad/x", "data:image/png;base64,AA", "javascript:void(0)",
        "HTTP://X.test/y", "x.png:large", "localhost:80/x", "?q=2", "#frag", " /sp.png ",
        "/a\nb.png", "a\tb.png", "é.png", "\x01x.png", "//", "///x", "/", "x/..", "1x.png",
        "_x.png", "%20x.png", "http:x", "https:/x", "", "  ",
    ]  # fmt: skip
    for base, url in itertools.product(bases, urls):
        try:
            expected: str | None = urljoin(base, url.strip()) if url.strip() else None
        except ValueError:
            expected = None
        if expected is not None and not expected.startswith(("http://", "https://")):
            expected = None
        if url.strip().startswith(("http://", "https://")):
            expected = url.strip()
        assert UrlResolver(base)(url) == expected, (base, url)
