"""Common Crawl WARC files: response records as candidate pairs, read with FastWARC.

`archive_records` is the one place an archive is read: the records of the wanted types in
file order, from a local path or any fsspec URL (`s3://`, `https://`: streamed), the
compression told by the bytes (gzip, zstd, lz4 or none), whatever the file is called. What
a broken file still holds is read; the failure that ends it (a bad WARC header, as in ARC
or non-WARC files; a corrupt gzip member) is counted as one dropped item under its reason,
never raised. An error of the underlying remote stream (a dropped connection) is raised,
so the task fails and a rerun reads the file again.

`read_warc_batches` turns each HTTP response record into candidates the way the page
crawler does (`crawlers.html.extract`): one pair per `<img>` with a non-empty alt, its URL
resolved against `<base href>` or the record's target URI and normalised, `page_lang` from
`<html lang>` or `<meta http-equiv>`, source "warc". The bytes are decoded by the HTTP
charset, then a `<meta>` charset, then a sniffed one (charset-normalizer) for undeclared
bytes that are not UTF-8. Images of pages that opt out (`noai`, `noimageai`,
`noimageindex`) are counted, not kept, unless robots are not respected.

What is true of the stats: every response record is counted once in `seen` and ends either
kept (an HTML page, parsed) or dropped with one reason: `warc:truncated` (the body is
shorter than its Content-Length), `warc:bad_http`, `warc:http_<status>` (not 2xx),
`warc:not_html`, `warc:bad_encoding`, `warc:no_target_uri`. A file-level failure adds one
to `seen` and one to `warc:bad_header`, `warc:bad_compression` or `warc:unreadable`.
Counts: images_found, images_without_alt, images_opted_out.
"""

from __future__ import annotations

import codecs
import contextlib
import hashlib
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any, BinaryIO, cast

import pyarrow as pa
from fastwarc.warc import ArchiveIterator, WarcRecord, WarcRecordType

from core import storage
from core.record import STATUS_CANDIDATE
from core.stats import StageStats
from crawlers.html import IMAGE_OPT_OUT, ImageRef, charset_from_content_type, extract, is_html

BATCH_ROWS = 65_536
DROP_TRUNCATED = "warc:truncated"
DROP_BAD_HEADER = "warc:bad_header"
DROP_BAD_COMPRESSION = "warc:bad_compression"
DROP_UNREADABLE = "warc:unreadable"
DROP_BAD_HTTP = "warc:bad_http"
DROP_NOT_HTML = "warc:not_html"
DROP_BAD_ENCODING = "warc:bad_encoding"
DROP_NO_TARGET = "warc:no_target_uri"
SNIFF_BYTES = 65_536  # how much of an undeclared page charset-normalizer looks at
_META_CHARSET = re.compile(rb"<meta[^>]+charset\s*=", re.I)
_BOMS = (codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


# ---------------------------------------------------------------- reading records


class GuardedStream:
    """A remote file that remembers the error its own reads raised (FastWARC may wrap it)."""

    def __init__(self, handle: IO[bytes]) -> None:
        self.handle = handle
        self.error: BaseException | None = None
        self.position = 0

    def read(self, size: int = -1) -> bytes:
        try:
            data = self.handle.read(size)
        except Exception as exc:
            self.error = exc
            raise
        self.position += len(data)
        return data

    def tell(self) -> int:
        return self.position

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        self.handle.close()


@contextlib.contextmanager
def open_archive(location: str) -> Iterator[IO[bytes] | GuardedStream]:
    """What FastWARC reads: a local file, or a remote one as a guarded stream. A stream, not
    a path, so the compression is told by the bytes rather than by the file name."""
    if not storage.is_remote(location):
        with open(storage.local(location), "rb") as handle:
            yield handle
        return
    fs = storage.filesystem(location)
    if location.startswith(("http://", "https://")):
        remote = fs.open(location, "rb", block_size=0)  # a stream: no range requests
    else:
        remote = fs.open(location, "rb")
    stream = GuardedStream(remote)
    try:
        yield stream
    finally:
        stream.close()


def failure_reason(exc: Exception) -> str:
    """The drop reason of an error FastWARC raised on the bytes of a file."""
    message = str(exc).lower()
    if "warc header" in message:
        return DROP_BAD_HEADER
    if any(word in message for word in ("gzip", "decompress", "zstd", "lz4", "deflate")):
        return DROP_BAD_COMPRESSION
    return DROP_UNREADABLE


def archive_records(
    location: str, kinds: WarcRecordType, stats: StageStats
) -> Iterator[WarcRecord]:
    """The records of `kinds` in file order; the failure that ends a broken file is counted."""
    with open_archive(location) as source:
        stream = cast(BinaryIO, source)
        try:
            yield from ArchiveIterator(
                stream, record_types=kinds, parse_http=False, fsspec_args=False
            )
        except (OSError, ValueError) as exc:
            if isinstance(source, GuardedStream) and source.error is not None:
                raise source.error from exc
            stats.seen += 1
            stats.drop(failure_reason(exc))
        except BaseException as exc:  # a panic of the Rust reader is no Exception
            if type(exc).__name__ != "PanicException":
                raise
            if isinstance(source, GuardedStream) and source.error is not None:
                raise source.error from exc
            stats.seen += 1
            stats.drop(DROP_UNREADABLE)


def read_block(record: WarcRecord) -> tuple[bytes, bool]:
    """The record's (remaining) bytes, and whether all its Content-Length was there."""
    try:
        block: bytes = record.reader.read()
    except (OSError, ValueError):  # a corrupt member inside the record
        return b"", False
    return block, len(block) >= record.content_length


# ---------------------------------------------------------------- candidate rows


class CandidateColumns:
    """Candidate rows gathered column by column, taken out as Arrow tables."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.clear()

    def clear(self) -> None:
        self.urls: list[str] = []
        self.captions: list[str] = []
        self.page_urls: list[str] = []
        self.page_langs: list[str | None] = []
        self.titles: list[str | None] = []
        self.image_titles: list[str | None] = []
        self.widths: list[int | None] = []
        self.heights: list[int | None] = []

    def __len__(self) -> int:
        return len(self.urls)

    def add(
        self,
        url: str,
        caption: str,
        page_url: str,
        page_lang: str | None,
        title: str | None = None,
        image_title: str | None = None,
    ) -> None:
        self.urls.append(url)
        self.captions.append(caption)
        self.page_urls.append(page_url)
        self.page_langs.append(page_lang)
        self.titles.append(title)
        self.image_titles.append(image_title)
        self.widths.append(None)
        self.heights.append(None)

    def add_image(self, image: ImageRef, page_url: str, page_lang: str | None) -> None:
        """A row for an `<img>` of a parsed page, its declared width and height included."""
        self.add(image.url, image.alt, page_url, page_lang, image.title, image.image_title)
        self.widths[-1], self.heights[-1] = image.width, image.height

    def take(self) -> pa.Table:
        """The rows gathered so far (uid = md5(caption + url)), leaving the columns empty."""
        uids = [
            hashlib.md5((caption + url).encode("utf-8")).hexdigest()
            for caption, url in zip(self.captions, self.urls, strict=True)
        ]
        rows = len(uids)
        table = pa.table(
            {
                "url": pa.array(self.urls, pa.string()),
                "caption": pa.array(self.captions, pa.string()),
                "page_url": pa.array(self.page_urls, pa.string()),
                "source": pa.array([self.source] * rows, pa.string()),
                "uid": pa.array(uids, pa.string()),
                "page_lang": pa.array(self.page_langs, pa.string()),
                "status": pa.array([STATUS_CANDIDATE] * rows, pa.string()),
                "title": _strings(self.titles),
                "image_title": _strings(self.image_titles),
                "declared_width": _ints(self.widths),
                "declared_height": _ints(self.heights),
            }
        )
        self.clear()
        return table


def _strings(values: list[str | None]) -> pa.Array:
    """A string column; one of nulls only is made without looking at each value."""
    if values.count(None) == len(values):
        return pa.nulls(len(values), pa.string())
    return pa.array(values, pa.string())


def _ints(values: list[int | None]) -> pa.Array:
    """A declared-size column (int32, as in `PAIR_SCHEMA`); nulls only made without looking."""
    if values.count(None) == len(values):
        return pa.nulls(len(values), pa.int32())
    return pa.array(values, pa.int32())


# ---------------------------------------------------------------- WARC responses


@dataclass
class HttpPage:
    """An HTTP response as a WARC records it: target URI, headers and decoded body."""

    url: str
    content_type: str | None
    body: bytes
    complete: bool  # False for a truncated record: the body is what could be read


def read_warc_batches(
    location: str,
    stats: StageStats,
    respect_robots: bool = True,
    batch_rows: int = BATCH_ROWS,
) -> Iterator[pa.Table]:
    """Candidate tables from the HTML responses of a WARC file, in file order."""
    columns = CandidateColumns("warc")
    for record in archive_records(location, WarcRecordType.response, stats):
        stats.seen += 1
        page = http_page(record)
        if isinstance(page, str):
            stats.drop(page)
            continue
        if page.complete:
            stats.kept += 1
        else:  # what was read of it still gives its images
            stats.drop(DROP_TRUNCATED)
        add_page_images(page, columns, stats, respect_robots)
        if len(columns) >= batch_rows:
            yield columns.take()
    if len(columns):
        yield columns.take()


def http_page(record: WarcRecord) -> HttpPage | str:
    """The HTML page a response record holds, or the reason it holds none."""
    url = (record.headers.get("WARC-Target-URI") or "").strip().strip("<>")
    if not url.lower().startswith(("http://", "https://")):
        return DROP_NO_TARGET
    try:
        record.parse_http(auto_decode="none", quirks_mode=True)  # LF-only headers too
    except (OSError, ValueError):
        return DROP_BAD_HTTP
    headers = record.http_headers
    if headers is None:  # not an HTTP record: parse_http left it alone
        return DROP_BAD_HTTP
    body, complete = read_block(record)
    if not 200 <= (headers.status_code or 0) < 300:
        return f"warc:http_{headers.status_code or 'none'}"
    content_type = headers.get("Content-Type")
    try:
        body = decoded_body(body, headers.get("Transfer-Encoding"), headers.get("Content-Encoding"))
    except (OSError, ValueError, zlib.error):
        if body[:1024].lstrip()[:1] != b"<":
            return DROP_BAD_ENCODING
        # Stored decoded under a Content-Encoding header that says otherwise: read as it is.
    if not is_html(content_type, body):
        return DROP_NOT_HTML
    return HttpPage(url, sniffed_content_type(content_type, body), body, complete)


def add_page_images(
    page: HttpPage, columns: CandidateColumns, stats: StageStats, respect_robots: bool
) -> None:
    """Parse a page like the crawler does; its images with a non-empty alt become rows."""
    content = extract(page.body, page.url, page.content_type, links=False)
    stats.count("images_found", len(content.images) + content.images_skipped)
    with_alt = [image for image in content.images if image.alt]
    stats.count("images_without_alt", len(content.images) - len(with_alt))
    if respect_robots and content.robots & IMAGE_OPT_OUT:
        stats.count("images_opted_out", len(with_alt))
        return
    for image in with_alt:
        columns.add_image(image, page.url, content.lang)


def decoded_body(body: bytes, transfer_encoding: str | None, content_encoding: str | None) -> bytes:
    """The body with chunked transfer coding and gzip/deflate/br content coding removed.

    Common Crawl stores bodies decoded (the original header renamed); other crawlers may not.
    """
    if transfer_encoding and "chunked" in transfer_encoding.lower():
        body = dechunked(body)
    coding = (content_encoding or "").strip().lower()
    if coding in ("gzip", "x-gzip"):
        return zlib.decompressobj(wbits=47).decompress(body)  # gzip or zlib header
    if coding == "deflate":
        try:
            return zlib.decompress(body)
        except zlib.error:
            return zlib.decompress(body, wbits=-15)  # raw deflate, as some servers send
    if coding == "br":
        import brotli  # FastWARC's own dependency

        result: bytes = brotli.decompress(body)
        return result
    return body


def dechunked(body: bytes) -> bytes:
    """A chunked body joined; a body that is not validly chunked is returned as it is."""
    parts: list[bytes] = []
    pos = 0
    while True:
        end = body.find(b"\r\n", pos)
        if end < 0:
            return body
        try:
            size = int(body[pos:end].split(b";", 1)[0].strip() or b"x", 16)
        except ValueError:
            return body
        if size == 0:
            return b"".join(parts)
        parts.append(body[end + 2 : end + 2 + size])
        pos = end + 2 + size + 2


def sniffed_content_type(content_type: str | None, body: bytes) -> str | None:
    """The Content-Type to decode by: as sent when the bytes carry or declare a charset (or
    are UTF-8), else with the charset charset-normalizer sniffs from them added."""
    if body.startswith(_BOMS) or charset_from_content_type(content_type):
        return content_type
    if _META_CHARSET.search(body[:4096]):
        return content_type  # a <meta> declaration: `decode_html` reads it
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        guess = sniff_charset(body[:SNIFF_BYTES])
        if guess is not None:
            return f"{(content_type or 'text/html').split(';')[0]}; charset={guess}"
    return content_type


def sniff_charset(sample: bytes) -> str | None:
    from charset_normalizer import from_bytes

    best: Any = from_bytes(sample).best()
    return None if best is None else str(best.encoding)
