"""Common Crawl WAT ingest: `crawlers.wat` (FastWARC + orjson) against a plain warcio +
`json` loop doing cc2dataset's extraction on the same file.

The WAT is built here from real pages (the article-extraction-benchmark pages and the
HTML responses of the shared WARCs) the way Common Crawl builds one: per page a request,
a response and a metadata WARC record, each turned into a gzip-member WAT metadata record
of JSON (`Envelope`, `Payload-Metadata`, `HTTP-Response-Metadata`, `HTML-Metadata` with
`Head` and `Links` as ia-web-commons writes them). The pages repeat under distinct target
URIs up to `PAGES`, so every pair has its own uid.

The peer runs in `.venv-bench` (warcio installed there on first use; it is no project
dependency). Both sides: one process, CPU seconds (records/s and pairs/s per core), best
of `BEST_OF` runs; both must find the same uids.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastwarc.warc import ArchiveIterator, WarcRecordType
from selectolax.lexbor import LexborHTMLParser

from bench.common import BENCH_DIR, REPO, BenchResult, shared_data
from core.stats import StageStats
from crawlers.wat import read_wat_batches

PAGES = 6_000
BEST_OF = 3
BENCH_VENV = REPO / ".venv-bench"
WARC_DATE = "2024-05-18T01:58:10Z"
MAX_TEXT = 100  # ia-web-commons cuts anchor texts and titles here
_SPACES = re.compile(r"\s+")

# cc2dataset's loop over a WAT, with warcio and the standard json module.
PEER_LOOP = r"""
import hashlib, json, sys, time
from urllib.parse import urljoin
from warcio.archiveiterator import ArchiveIterator

def pairs_of(path):
    rows, records = [], 0
    with open(path, "rb") as stream:
        for record in ArchiveIterator(stream):
            if record.rec_type != "metadata":
                continue
            records += 1
            try:
                data = json.loads(record.content_stream().read())
            except ValueError:
                continue
            envelope = data["Envelope"]
            payload = envelope["Payload-Metadata"]
            if "HTTP-Response-Metadata" not in payload:
                continue
            response = payload["HTTP-Response-Metadata"]
            if "HTML-Metadata" not in response:
                continue
            html = response["HTML-Metadata"]
            target = envelope["WARC-Header-Metadata"]["WARC-Target-URI"]
            base = target
            head = html.get("Head", {})
            if "Base" in head:
                try:
                    base = urljoin(target, head["Base"])
                except ValueError:
                    pass
            for link in html.get("Links", []):
                if link.get("path") != "IMG@/src" or not link.get("alt"):
                    continue
                url = link["url"].strip()
                if not url:
                    continue
                if not url.startswith(("http://", "https://")):
                    try:
                        url = urljoin(base, url)
                    except ValueError:
                        continue
                if url.startswith(("http://", "https://")):
                    uid = hashlib.md5((link["alt"] + url).encode("utf-8")).hexdigest()
                    rows.append({"uid": uid, "url": url, "caption": link["alt"],
                                 "page_url": target})
    return rows, records

started = time.process_time()
rows, records = pairs_of(sys.argv[1])
seconds = time.process_time() - started
digest = hashlib.md5("".join(sorted(r["uid"] for r in rows)).encode()).hexdigest()
print(json.dumps({"seconds": seconds, "records": records, "pairs": len(rows), "uids": digest}))
"""


# ---------------------------------------------------------------- writing WARC and WAT


def warc_record(kind: str, uri: str, block: bytes, content_type: str) -> bytes:
    """One WARC/1.0 record as its own gzip member, as Common Crawl writes them."""
    record_id = uuid.uuid5(uuid.NAMESPACE_URL, f"{kind} {uri} {len(block)}")
    lines = [
        "WARC/1.0",
        f"WARC-Type: {kind}",
        f"WARC-Date: {WARC_DATE}",
        f"WARC-Record-ID: <urn:uuid:{record_id}>",
        *([f"WARC-Target-URI: {uri}"] if uri else []),
        f"Content-Type: {content_type}",
        f"Content-Length: {len(block)}",
    ]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")
    return gzip.compress(head + block + b"\r\n\r\n", compresslevel=6, mtime=0)


def http_response(body: bytes, content_type: str = "text/html; charset=utf-8") -> bytes:
    """The block of a WARC response record: HTTP/1.1 200 headers, then the body."""
    head = f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
    return head.encode("ascii") + b"\r\n" + body


def html_metadata(html: bytes) -> dict[str, Any]:
    """`HTML-Metadata` of a page the way ia-web-commons records it: `Head` (Title, Base,
    Metas, Link) and `Links` (A@/href with text, IMG@/src with alt and title) in page order."""
    tree = LexborHTMLParser(html.decode("utf-8", errors="replace"))
    head: dict[str, Any] = {}
    title = tree.css_first("title")
    if title is not None:
        head["Title"] = _short(title.text())
    base = tree.css_first("base[href]")
    if base is not None:
        head["Base"] = base.attributes.get("href") or ""
    metas = [
        _present(n.attributes, "name", "http-equiv", "property", "content")
        for n in tree.css("meta")
    ]
    head["Metas"] = [m for m in metas if m]
    head["Link"] = [
        {
            "path": "LINK@/href",
            "url": n.attributes.get("href") or "",
            **_present(n.attributes, "rel", "type"),
        }
        for n in tree.css("link[href]")
    ]
    return {"Head": head, "Links": list(page_links(tree))}


def page_links(tree: LexborHTMLParser) -> Iterator[dict[str, Any]]:
    for node in tree.css("a[href], img[src]"):
        attrs = node.attributes
        if node.tag == "img":
            yield {
                "path": "IMG@/src",
                "url": attrs.get("src") or "",
                **_present(attrs, "alt", "title"),
            }
        else:
            link = {
                "path": "A@/href",
                "url": attrs.get("href") or "",
                **_present(attrs, "title", "rel"),
            }
            text = _short(node.text())
            yield {**link, "text": text} if text else link


def _present(attrs: dict[str, str | None], *names: str) -> dict[str, str]:
    return {name: attrs[name] or "" for name in names if name in attrs}


def _short(text: str) -> str:
    return _SPACES.sub(" ", text).strip()[:MAX_TEXT]


def wat_record(uri: str, kind: str, payload: dict[str, Any]) -> bytes:
    """A WAT metadata record describing a WARC record of `kind` at `uri`."""
    envelope = {
        "Format": "WARC",
        "WARC-Header-Length": "400",
        "WARC-Header-Metadata": {"WARC-Type": kind, "WARC-Date": WARC_DATE, "WARC-Target-URI": uri},
        "Payload-Metadata": payload,
    }
    data = {"Container": {"Filename": "bench.warc.gz", "Compressed": True}, "Envelope": envelope}
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return warc_record("metadata", uri, body, "application/json")


def wat_page_records(uri: str, html: dict[str, Any], body_length: int) -> bytes:
    """The three WAT records Common Crawl writes for one fetched page."""
    request = {
        "Actual-Content-Type": "application/http; msgtype=request",
        "HTTP-Request-Metadata": {
            "Request-Message": {"Method": "GET", "Path": "/", "Version": "HTTP/1.1"},
            "Headers": {"User-Agent": "CCBot/2.0 (https://commoncrawl.org/faq/)"},
        },
    }
    response = {
        "Actual-Content-Type": "application/http; msgtype=response",
        "HTTP-Response-Metadata": {
            "Response-Message": {"Version": "HTTP/1.1", "Status": "200", "Reason": "OK"},
            "Headers": {
                "Content-Type": "text/html; charset=UTF-8",
                "Content-Length": str(body_length),
            },
            "Entity-Length": str(body_length),
            "HTML-Metadata": html,
        },
    }
    metadata = {
        "Actual-Content-Type": "application/warc-fields",
        "WARC-Metadata-Metadata": {"Metadata-Records": [{"Name": "fetchTimeMs", "Value": "120"}]},
    }
    return b"".join(
        [wat_record(uri, "request", request), wat_record(uri, "response", response),
         wat_record(uri, "metadata", metadata)]
    )  # fmt: skip


# ---------------------------------------------------------------- the bench input


def real_pages(data: Path) -> list[tuple[str, bytes]]:
    """(URL, HTML bytes) of the shared real pages: the benchmark articles, the WARCs' pages."""
    articles = data / "html" / "article-extraction-benchmark"
    truth = json.loads((articles / "ground-truth.json").read_text())
    pages = [
        (truth[path.name.split(".")[0]]["url"], gzip.decompress(path.read_bytes()))
        for path in sorted((articles / "html").glob("*.html.gz"))
    ]
    for warc in sorted((data / "warc").glob("*.warc.gz")):
        for record in ArchiveIterator(str(warc), record_types=WarcRecordType.response):
            uri = record.headers.get("WARC-Target-URI") or ""
            if uri.startswith("http") and "html" in (record.http_content_type or ""):
                pages.append((uri, record.reader.read()))
    return pages


def build_wat(path: Path, pages: list[tuple[str, bytes]], count: int) -> None:
    """A WAT of `count` pages: the real pages in turn, each copy under its own URI."""
    described = [(uri, html_metadata(html), len(html)) for uri, html in pages]
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as out:
        out.write(
            warc_record("warcinfo", "", b"software: openwit bench\r\n", "application/warc-fields")
        )
        for index in range(count):
            uri, html, length = described[index % len(described)]
            copy = f"{uri}{'&' if '?' in uri else '?'}copy={index // len(described)}"
            out.write(wat_page_records(copy, html, length))
    tmp.rename(path)


def ensure_warcio() -> Path:
    python = BENCH_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run(["python3", "-m", "venv", str(BENCH_VENV)], check=True)
    check = subprocess.run([str(python), "-c", "import warcio"], capture_output=True)
    if check.returncode != 0:
        subprocess.run([str(BENCH_VENV / "bin" / "pip"), "install", "-q", "warcio"], check=True)
    return python


def run_peer(python: Path, wat: Path) -> dict[str, Any]:
    done = subprocess.run(
        [str(python), "-c", PEER_LOOP, str(wat)], check=True, capture_output=True, text=True
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def run_ours(wat: Path) -> dict[str, Any]:
    stats = StageStats("crawl")
    started = time.process_time()
    uids: list[str] = []
    for table in read_wat_batches(str(wat), stats):
        uids += table.column("uid").to_pylist()
    seconds = time.process_time() - started
    digest = hashlib.md5("".join(sorted(uids)).encode()).hexdigest()
    records = stats.seen + stats.counts["records_skipped"]
    return {"seconds": seconds, "records": records, "pairs": len(uids), "uids": digest}


def best_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return min(runs, key=lambda r: float(r["seconds"]))


def run() -> BenchResult:
    data = shared_data()
    if data is None:
        raise FileNotFoundError("the shared real pages are needed: set OPENWIT_SHARED_DATA")
    wat = BENCH_DIR / "warc" / f"bench-{PAGES}.warc.wat.gz"
    if not wat.exists():
        wat.parent.mkdir(parents=True, exist_ok=True)
        build_wat(wat, real_pages(data), PAGES)
    python = ensure_warcio()
    peer = best_of([run_peer(python, wat) for _ in range(BEST_OF)])
    ours = best_of([run_ours(wat) for _ in range(BEST_OF)])
    if (peer["records"], peer["pairs"], peer["uids"]) != (
        ours["records"],
        ours["pairs"],
        ours["uids"],
    ):
        raise AssertionError(f"the loops disagree: peer {peer}, ours {ours}")
    mib = wat.stat().st_size / 2**20
    return BenchResult(
        name="WAT ingest (records)",
        unit="WAT records",
        items=int(ours["records"]),
        peer="warcio + json loop",
        peer_seconds=float(peer["seconds"]),
        ours_seconds=float(ours["seconds"]),
        note=(
            f"{PAGES:,} real pages as {ours['records']:,} WAT records ({mib:.0f} MiB gzip), "
            f"{ours['pairs']:,} pairs: {ours['pairs'] / ours['seconds']:,.0f} pairs/s per core "
            f"ours, {peer['pairs'] / peer['seconds']:,.0f} peer; CPU seconds, best of {BEST_OF}"
        ),
    )
