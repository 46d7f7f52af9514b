"""Browse a shard set in a web browser: `python -m shards browse PATH`.

Serves any folder of webdataset tars (local or object storage) on 127.0.0.1: pages of
samples (thumbnail, alt text, matched entries), a filter by matched entry or by text, and
each sample's JSON. The tars are read in place (headers once, then one member at a time
by offset); nothing is extracted to disk. Captions and entries come from each shard's
parquet beside its tar when there is one, else from the tar's JSON members.

    GET /?page=0&q=star&entry=green       a page of samples matching both filters
    GET /sample/N                         sample N: image, text and JSON
    GET /sample/N.json, /image/N          its JSON member, its image member
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from html import escape
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import groupby
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pyarrow.parquet as pq

from core import storage
from core.progress import track
from shards.tars import ShardIndex, TarSample, index_shards

log = logging.getLogger("shards.browse")

PAGE_SIZE = 24
PARQUET_COLUMNS = ["key", "caption", "matched", "url"]
IMAGE_TYPES = {"jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:20px}.grid{display:flex;flex-wrap:wrap;gap:12px}
.sample{width:190px;font-size:12px}.sample img{max-width:160px;max-height:160px;display:block}
.matched a{color:#3b6ea8;white-space:nowrap}pre{background:#f6f6f6;padding:8px;overflow:auto}
"""


@dataclass(frozen=True)
class SampleText:
    caption: str
    matched: tuple[str, ...]
    url: str


class ShardBrowser:
    """The samples of a shard set, their texts for filtering, and their members."""

    def __init__(self, path: str, quiet: bool = False) -> None:
        self.index: ShardIndex = index_shards(path, quiet)
        self.texts: list[SampleText] = []
        by_tar = {
            tar: list(group) for tar, group in groupby(self.index.samples, key=lambda s: s.tar)
        }
        for tar in track(list(by_tar), "shards", "read captions", quiet):
            self.texts += self._tar_texts(tar, by_tar[tar])
        log.info("%d samples in %d tars at %s", len(self.texts), len(self.index.tars), path)

    def _tar_texts(self, tar: str, samples: list[TarSample]) -> list[SampleText]:
        """The texts of one tar's samples: from its parquet by key, else its JSON members."""
        by_key = {
            r["key"]: r for r in _parquet_rows(tar[: -len(".tar")] + ".parquet") if r.get("key")
        }
        texts = []
        for sample in samples:
            meta = by_key.get(sample.key.rpartition("/")[2]) or self.index.read_json(sample)
            texts.append(
                SampleText(
                    str(meta.get("caption") or ""),
                    tuple(meta.get("matched") or ()),
                    str(meta.get("url") or ""),
                )
            )
        return texts

    def matching(self, text: str = "", entry: str = "") -> list[int]:
        """Positions of the samples whose caption contains `text` (any case) and whose
        matched entries include `entry`."""
        needle = text.casefold()
        return [
            i
            for i, t in enumerate(self.texts)
            if (not needle or needle in t.caption.casefold()) and (not entry or entry in t.matched)
        ]

    def member(self, position: int, exts: tuple[str, ...]) -> tuple[str, bytes] | None:
        sample = self.index.samples[position]
        ext = next((e for e in exts if e in sample.members), None)
        return (ext, self.index.read(sample, ext)) if ext else None


def _parquet_rows(location: str) -> list[dict[str, Any]]:
    """The rows of a shard's parquet ([] when it is absent or unreadable)."""
    if not storage.exists(location):
        return []
    try:
        with storage.open_input(location, "rb") as handle:
            table = pq.ParquetFile(handle)
            present = [c for c in PARQUET_COLUMNS if c in table.schema_arrow.names]
            rows: list[dict[str, Any]] = table.read(columns=present).to_pylist()
    except (OSError, ValueError) as exc:  # pyarrow's errors are both
        log.warning("%s is unreadable, reading the texts from the tar: %s", location, exc)
        return []
    return rows


# ---------------------------------------------------------------- pages


def list_page(browser: ShardBrowser, query: dict[str, str]) -> str:
    text, entry = query.get("q", ""), query.get("entry", "")
    found = browser.matching(text, entry)
    pages = max(1, -(-len(found) // PAGE_SIZE))
    page = min(max(0, _int(query.get("page", "0"))), pages - 1)
    shown = found[page * PAGE_SIZE : (page + 1) * PAGE_SIZE]
    cards = "".join(_card(browser, i) for i in shown)
    return _html(
        "OpenWIT shards",
        _filter_form(text, entry) + f'<p id="summary"><span id="found">{len(found):,}</span>'
        f" of {len(browser.texts):,} samples; page"
        f' <span id="page">{page + 1}</span> of <span id="pages">{pages}</span></p>'
        + _pager(text, entry, page, pages)
        + f'<div class="grid">{cards}</div>',
    )


def _int(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        return 0


def _filter_form(text: str, entry: str) -> str:
    return (
        '<form id="filter" method="get" action="/">'
        f'<label>text <input name="q" value="{escape(text)}"></label> '
        f'<label>matched entry <input name="entry" value="{escape(entry)}"></label> '
        '<button type="submit">filter</button> <a href="/">clear</a></form>'
    )


def _pager(text: str, entry: str, page: int, pages: int) -> str:
    def link(target: int, label: str, cls: str) -> str:
        params = {k: v for k, v in (("q", text), ("entry", entry)) if v} | {"page": str(target)}
        return f'<a class="{cls}" href="/?{escape(urlencode(params))}">{label}</a>'

    links = []
    if page > 0:
        links.append(link(page - 1, "&larr; previous", "prev"))
    if page + 1 < pages:
        links.append(link(page + 1, "next &rarr;", "next"))
    return f'<p class="pager">{" ".join(links)}</p>'


def _card(browser: ShardBrowser, position: int) -> str:
    t = browser.texts[position]
    entries = ", ".join(
        f'<a href="/?{escape(urlencode({"entry": e}))}">{escape(e)}</a>' for e in t.matched
    )
    return (
        f'<div class="sample" data-position="{position}">'
        f'<a href="/sample/{position}"><img alt="" src="/image/{position}"></a>'
        f'<div class="caption">{escape(t.caption)}</div><div class="matched">{entries}</div>'
        f'<a class="json" href="/sample/{position}.json">json</a></div>'
    )


def sample_page(browser: ShardBrowser, position: int) -> str:
    sample = browser.index.samples[position]
    meta = browser.index.read_json(sample)
    return _html(
        f"sample {sample.key}",
        f'<p><a href="/">all samples</a></p><h1>{escape(sample.key)}</h1>'
        f'<img alt="" src="/image/{position}">'
        f'<p class="caption">{escape(browser.texts[position].caption)}</p>'
        f'<pre id="json">{escape(json.dumps(meta, indent=2, ensure_ascii=False))}</pre>'
        f"<p>from {escape(storage.basename(sample.tar))}</p>",
    )


def _html(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>{body}</body></html>"
    )


# ---------------------------------------------------------------- the server


class BrowseHandler(BaseHTTPRequestHandler):
    browser: ShardBrowser  # set on the subclass `make_server` builds

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        route = url.path.strip("/").split("/")
        if url.path == "/":
            self._send(list_page(self.browser, query).encode(), "text/html; charset=utf-8")
        elif url.path == "/favicon.ico":  # asked for by pages without a <link rel=icon>
            self._send(b"", "image/x-icon", HTTPStatus.NO_CONTENT)
        elif len(route) == 2 and route[0] in ("sample", "image"):
            self._send_sample(route[0], route[1])
        else:
            self._send(b"not found", "text/plain", HTTPStatus.NOT_FOUND)

    def _send_sample(self, kind: str, name: str) -> None:
        stem, _, ext = name.partition(".")
        if not stem.isdigit() or int(stem) >= len(self.browser.texts) or ext not in ("", "json"):
            self._send(b"no such sample", "text/plain", HTTPStatus.NOT_FOUND)
            return
        position = int(stem)
        if kind == "image":
            found = self.browser.member(position, tuple(IMAGE_TYPES))
            if found is None:
                self._send(b"no image", "text/plain", HTTPStatus.NOT_FOUND)
            else:
                self._send(found[1], IMAGE_TYPES[found[0]])
        elif ext == "json":
            member = self.browser.member(position, ("json",))
            self._send(member[1] if member else b"{}", "application/json")
        else:
            self._send(sample_page(self.browser, position).encode(), "text/html; charset=utf-8")

    def _send(self, body: bytes, content_type: str, status: HTTPStatus = HTTPStatus.OK) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # the base class's name
        log.debug("%s %s", self.address_string(), format % args)


def browse_handler(browser: ShardBrowser) -> type[BrowseHandler]:
    """The request handler class that serves `browser`."""
    return type("Handler", (BrowseHandler,), {"browser": browser})


def make_server(
    browser: ShardBrowser, port: int = 0, host: str = "127.0.0.1"
) -> ThreadingHTTPServer:
    return ThreadingHTTPServer((host, port), browse_handler(browser))
