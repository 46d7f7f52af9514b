"""Common Crawl WAT files: the `<img alt>` links of their metadata records as candidates.

cc2dataset's semantics: a metadata record is JSON; a page is one whose
`Envelope -> Payload-Metadata -> HTTP-Response-Metadata -> HTML-Metadata` exists; its
`Links` entries with `path == "IMG@/src"` and a non-empty `alt` are candidates. A URL that
is not already absolute http(s) is resolved against `Head.Base` (itself resolved against
`Envelope.WARC-Header-Metadata.WARC-Target-URI`), else the target URI, and kept only if it
is http(s) then. The alt and an absolute URL are kept as the WAT spells them, so uid =
md5(alt + url) is cc2dataset's. `page_url` is the target URI; `page_lang` the page's
declared language (`<meta http-equiv="content-language">`, else the HTTP
`Content-Language` header); `title` and `image_title` the link's `title` and
`data-image-title` attributes where recorded (MetaCLIP keeps both). Source "wat".
Images of pages whose `<meta name="robots">` opts out (`noai`, `noimageai`,
`noimageindex`) are counted, not kept, unless robots are not respected.

What is true of the stats: records that describe no HTTP response (requests, warcinfo,
metadata: no `HTTP-Response-Metadata` in their bytes, so their JSON is not parsed) are
counted in `records_skipped`, not in `seen`. Every other record is counted
once in `seen` and ends kept (an HTML page) or dropped with one reason: `warc:truncated`
(fewer bytes than its Content-Length), `wat:bad_json`, `wat:bad_record` (JSON without the
envelope), `wat:not_html` (a response without HTML-Metadata: images, PDFs, redirects). A
file-level failure counts as in `crawlers.warc.archive_records`. Counts: images_found
(IMG@/src links), images_without_alt, images_not_http, images_opted_out.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urljoin, urlsplit

import orjson
import pyarrow as pa
from fastwarc.warc import WarcRecordType

from core.stats import StageStats
from crawlers.html import IMAGE_OPT_OUT
from crawlers.warc import BATCH_ROWS, DROP_TRUNCATED, CandidateColumns, archive_records, read_block

DROP_BAD_JSON = "wat:bad_json"
DROP_BAD_RECORD = "wat:bad_record"
DROP_NOT_HTML = "wat:not_html"
IMAGE_PATH = "IMG@/src"
IMAGE_COUNTS = ("images_found", "images_without_alt", "images_not_http", "images_opted_out")
_ABSOLUTE = ("http://", "https://")
_LANGUAGE = "content-language"
_RESPONSE_KEY = b'"HTTP-Response-Metadata"'
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")  # as `urlsplit` tells a scheme
_FUSSY = re.compile(r"/\.|\.\.|[\t\n\r\[]")  # what `urljoin` would remove or check


def read_wat_batches(
    location: str,
    stats: StageStats,
    respect_robots: bool = True,
    batch_rows: int = BATCH_ROWS,
) -> Iterator[pa.Table]:
    """Candidate tables from the metadata records of a WAT file, in file order."""
    columns = CandidateColumns("wat")
    reader = WatPageReader(columns, stats, respect_robots)
    try:
        for record in archive_records(location, WarcRecordType.metadata, stats):
            body, complete = read_block(record)
            reader.add_record(body if complete else None)
            if len(columns) >= batch_rows:
                yield columns.take()
        if len(columns):
            yield columns.take()
    finally:
        reader.flush()


class WatPageReader:
    """Adds the candidates of WAT metadata records to `columns`, counting into `stats`
    (the image counts are kept here and added by `flush`)."""

    def __init__(self, columns: CandidateColumns, stats: StageStats, respect_robots: bool) -> None:
        self.columns = columns
        self.stats = stats
        self.respect_robots = respect_robots
        self.images = dict.fromkeys(IMAGE_COUNTS, 0)

    def flush(self) -> None:
        """Add the image counts gathered so far to the stats."""
        for name, n in self.images.items():
            if n:
                self.stats.count(name, n)
        self.images = dict.fromkeys(IMAGE_COUNTS, 0)

    def add_record(self, body: bytes | None) -> None:
        """One record's JSON (None: truncated): a page's images, or a counted reason."""
        if body is None:
            self.stats.seen += 1
            self.stats.drop(DROP_TRUNCATED)
            return
        if body and _RESPONSE_KEY not in body:  # a request, warcinfo, metadata: not parsed
            self.stats.count("records_skipped")
            return
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            self.stats.seen += 1
            self.stats.drop(DROP_BAD_JSON)
            return
        page = page_metadata(data)
        if page is None:
            self.stats.count("records_skipped")
            return
        self.stats.seen += 1
        if isinstance(page, str):
            self.stats.drop(page)
            return
        self.stats.kept += 1
        self.add_page(*page)

    def add_page(self, target: str, html: dict[str, Any], response: dict[str, Any]) -> None:
        """The images with alt of one page's `Links`."""
        head = html.get("Head")
        head = head if isinstance(head, dict) else {}
        lang, opted_out = meta_facts(head.get("Metas"))
        images = image_links(html)
        with_alt = [link for link in images if _text(link.get("alt"))]
        counts = self.images
        counts["images_found"] += len(images)
        counts["images_without_alt"] += len(images) - len(with_alt)
        if opted_out and self.respect_robots:
            counts["images_opted_out"] += len(with_alt)
            return
        if lang is None:
            lang = header_language(response.get("Headers"))
        resolve = UrlResolver(base_url(target, head.get("Base")))
        add = self.columns.add
        for link in with_alt:
            url = resolve(link.get("url"))
            if url is None:
                counts["images_not_http"] += 1
                continue
            title, image_title = link.get("title"), link.get("data-image-title")
            add(url, link["alt"], target, lang, _text(title), _text(image_title))


def page_metadata(data: Any) -> tuple[str, dict[str, Any], dict[str, Any]] | str | None:
    """(target URI, HTML-Metadata, HTTP-Response-Metadata) of a page record; a drop reason
    for a response that is no HTML page or a record without the envelope; None for a
    record that describes no response."""
    try:
        envelope = data["Envelope"]
        payload = envelope["Payload-Metadata"]
        response = payload.get("HTTP-Response-Metadata")
        if response is None:
            return None
        html = response.get("HTML-Metadata")
        if not isinstance(html, dict):
            return DROP_NOT_HTML
        target = envelope["WARC-Header-Metadata"]["WARC-Target-URI"]
    except (KeyError, TypeError, AttributeError):
        return DROP_BAD_RECORD
    if not isinstance(target, str):
        return DROP_BAD_RECORD
    return target, html, response


def image_links(html: dict[str, Any]) -> list[dict[str, Any]]:
    """The `IMG@/src` entries of a page's `Links`."""
    links = html.get("Links")
    if not isinstance(links, list):
        return []
    try:
        return [link for link in links if link.get("path") == IMAGE_PATH]
    except AttributeError:  # an entry that is no object: the slow way round
        return [link for link in links if isinstance(link, dict) and link.get("path") == IMAGE_PATH]


def base_url(target: str, base: Any) -> str:
    """`Head.Base` resolved against the target URI, else the target URI."""
    if isinstance(base, str) and base.strip():
        try:
            return urljoin(target, base.strip())
        except ValueError:
            return target
    return target


class UrlResolver:
    """Image URLs against one page's base: an absolute http(s) URL as written, else what
    `urljoin` makes of it, and None when that is not http(s) (or `urljoin` refuses it).

    The common forms (`/path`, `//host/path`, `dir/file`, another scheme) are answered
    without calling `urljoin`, with the same result: only where no dot segment, tab or
    newline is there for it to remove and no `[` for it to check.
    """

    def __init__(self, base: str) -> None:
        self.base = base
        self.scheme = self.origin = self.folder = ""
        if base.startswith(_ABSOLUTE) and not _FUSSY.search(base):
            with contextlib.suppress(ValueError):
                parts = urlsplit(base)
                self.scheme, self.origin = parts.scheme, f"{parts.scheme}://{parts.netloc}"
                self.folder = self.origin + (parts.path[: parts.path.rfind("/") + 1] or "/")

    def __call__(self, url: Any) -> str | None:
        if not isinstance(url, str):
            return None
        url = url.strip()
        if url.startswith(_ABSOLUTE):
            return url
        if not url:
            return None
        scheme = _SCHEME.match(url)
        if scheme is not None and scheme.group(1).lower() not in ("http", "https"):
            return None  # data:, javascript:, mailto:... stay what they are
        if self.origin and scheme is None and not _FUSSY.search(url):
            if url[0] == "/" and url[1:2] != "/":
                return self.origin + url
            if url[:2] == "//" and url[2:3].isalnum():
                return f"{self.scheme}:{url}"
            if url[0].isalnum():
                return self.folder + url
        try:
            url = urljoin(self.base, url)
        except ValueError:
            return None
        return url if url.startswith(_ABSOLUTE) else None


def meta_facts(metas: Any) -> tuple[str | None, bool]:
    """From a page's `<meta>` entries: the language `http-equiv="content-language"`
    declares, and whether `name="robots"` opts its images out."""
    lang, opted_out = None, False
    for meta in metas if isinstance(metas, list) else ():
        if meta.__class__ is not dict:
            continue
        name = meta.get("name")
        if name is not None:  # most are: og:*, twitter:*, viewport...
            if name.__class__ is str and len(name) < 16 and name.strip().lower() == "robots":
                directives = str(meta.get("content", "")).lower().replace(",", " ").split()
                opted_out = opted_out or not IMAGE_OPT_OUT.isdisjoint(directives)
            continue
        equiv = meta.get("http-equiv")
        if lang is None and equiv.__class__ is str and equiv.strip().lower() == _LANGUAGE:
            lang = str(meta.get("content", "")).split(",")[0].strip() or None
    return lang, opted_out


def header_language(headers: Any) -> str | None:
    """The HTTP Content-Language header of the response, if sent."""
    if isinstance(headers, dict):
        for name, value in headers.items():
            if name.lower() == "content-language" and isinstance(value, str):
                return value.split(",")[0].strip() or None
    return None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None
