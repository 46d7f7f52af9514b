"""A hostile web site on loopback, and a second port that records every request it gets.

`HostileSite` serves, from its own event loop in a thread, the faults a crawler meets on
the open web: a tarpit that trickles a byte at a time, connection resets, a gzip bomb, a
PNG declaring 1.6 gigapixels, a page of 100,000 `<img>`, a Content-Length that lies,
invalid UTF-8, an endless calendar, and links, image URLs and redirects (robots.txt
included) that point at the `outside` port. Only the hostile port is meant to be allowed
(`net.allow_private=["127.0.0.1:<port>"]`), so the outside port must see no request.

`FAULTS` names each fault, the URL that injects it and what the pipeline must make of it.
"""

from __future__ import annotations

import asyncio
import io
import struct
import threading
import time
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass

import numpy as np
from aiohttp import web
from PIL import Image

GOOD_IMAGES = 6  # distinct, decodable images the index page shows
UTF8_IMAGE = GOOD_IMAGES  # good-6.png: the image of the invalid UTF-8 page
MANY_IMAGE = GOOD_IMAGES + 1  # /m.png: the one image of the 100,000 <img> page
BOMB_BYTES = 512 * 1024 * 1024  # what the gzip bomb decompresses to
GIGA_SIDE = 40_000  # the PNG declares 40,000 x 40,000 = 1.6 gigapixels
MANY_IMAGES = 100_000
TRICKLE_SECONDS = 0.2  # the tarpit's pace: one byte per this


@dataclass(frozen=True)
class Fault:
    """One injected fault: where, and what must become of it."""

    name: str
    path: str  # on the hostile port; "OUT" is replaced by the outside port
    stage: str  # crawl (a page) or shards (an image)
    expect: str  # the counted reason it must end as


FAULTS = [
    Fault("tarpit page", "/tarpit", "crawl", "timeout"),
    Fault("connection reset page", "/reset", "crawl", "connection_error"),
    Fault("gzip bomb page", "/gzip-bomb", "crawl", "too_large"),
    Fault("lying Content-Length page", "/lying", "crawl", "connection_error"),
    Fault("endless calendar", "/calendar/2020/1", "crawl", "max_depth"),
    Fault("link to the outside port", "http://127.0.0.1:OUT/admin", "crawl", "private_address"),
    Fault("localhost link outside", "http://localhost:OUT/", "crawl", "private_address"),
    Fault("hex-address link outside", "http://0x7f000001:OUT/", "crawl", "private_address"),
    Fault("IPv4-mapped link outside", "http://[::ffff:127.0.0.1]:OUT/", "crawl", "private_address"),
    Fault("redirect to the outside port", "/redirect-out", "crawl", "private_address"),
    Fault("robots.txt redirected outside", "/robots.txt", "crawl", "private_address"),
    Fault("invalid UTF-8 page", "/bad-utf8", "crawl", "kept"),
    Fault("page of 100,000 <img>", "/many", "curate", "dedup:url"),
    Fault("1.6-gigapixel PNG", "/img/giga.png", "shards", "failed_to_decode"),
    Fault("gzip bomb image", "/img/bomb.jpg", "shards", "too_large"),
    Fault("tarpit image", "/img/tarpit.jpg", "shards", "timeout"),
    Fault("connection reset image", "/img/reset.jpg", "shards", "connection_error"),
    Fault("lying Content-Length image", "/img/lying.jpg", "shards", "connection_error"),
    Fault("image redirected outside", "/img/redirect-out.jpg", "shards", "private_address"),
    Fault(
        "image on the outside port", "http://127.0.0.1:OUT/leak.jpg", "shards", "private_address"
    ),
    Fault("a page served as an image", "/img/page.jpg", "shards", "not_image"),
]


def good_image(n: int) -> bytes:
    """Distinct 64x64 PNG n: seeded noise blocks, so pHashes are far apart."""
    rng = np.random.default_rng(1000 + n)
    blocks = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    image = Image.fromarray(np.kron(blocks, np.ones((8, 8, 1), dtype=np.uint8)), mode="RGB")
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def photo_jpeg(n: int) -> bytes:
    """A 640x480 JPEG of smooth colour and sensor-like noise: compresses like a photo."""
    rng = np.random.default_rng(2000 + n)
    ys, xs = np.mgrid[0:480, 0:640].astype(np.float32)
    channels = []
    for _ in range(3):
        fx, fy, phase = rng.uniform(1, 5), rng.uniform(1, 5), rng.uniform(0, 6.3)
        wave = np.sin(xs / 640 * fx * 6.28 + phase) * np.cos(ys / 480 * fy * 6.28)
        channels.append(128 + 90 * wave)
    pixels = np.stack(channels, axis=-1) + rng.normal(0, 8, size=(480, 640, 3))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="RGB")
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def gzip_bomb(size: int) -> bytes:
    """`size` zero bytes, gzip-compressed (about 1,000x smaller), built a chunk at a time."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: a gzip stream
    chunk = b"\x00" * (1 << 24)
    parts = [compressor.compress(chunk) for _ in range(size // len(chunk))]
    return b"".join([*parts, compressor.flush()])


def giga_png() -> bytes:
    """A valid PNG header declaring GIGA_SIDE squared pixels, then a tiny IDAT."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", GIGA_SIDE, GIGA_SIDE, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 4096)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat)


class RecordingServer:
    """The outside port: answers everything with a page and records every request."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()

    async def handle(self, request: web.Request) -> web.Response:
        self.hits[request.path_qs] += 1
        return web.Response(
            text="<html><img src='/secret.jpg' alt='an internal photo of the admin'></html>",
            content_type="text/html",
        )

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app


class HostileSite:
    """The hostile port and the outside port, served from a thread until `stop`."""

    def __init__(self, bombs: bool = True) -> None:
        """`bombs=False` leaves the gzip bombs empty (building one takes a second or two),
        for tests that only need the site's good images."""
        self.outside = RecordingServer()
        self.hits: Counter[str] = Counter()
        self.port = 0
        self.outside_port = 0
        self.bomb = gzip_bomb(BOMB_BYTES if bombs else 0)
        self.giga = giga_png()
        self.images = [good_image(n) for n in range(GOOD_IMAGES + 2)]
        self._photos: dict[int, bytes] = {}
        # (start, end) of every tarpit request by path: how long the client held on
        self.tarpit_spans: defaultdict[str, list[tuple[float, float]]] = defaultdict(list)
        self._loop = asyncio.new_event_loop()
        self._runners: list[web.AppRunner] = []
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    # ---------------------------------------------------------- lifecycle

    def __enter__(self) -> HostileSite:
        self._thread.start()
        self.outside_port = self._run(self._serve(self.outside.app()))
        self.port = self._run(self._serve(self.app()))
        return self

    def __exit__(self, *exc: object) -> None:
        for runner in self._runners:
            self._run(runner.cleanup())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def _run(self, coro: object) -> int:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)  # type: ignore[arg-type]

    async def _serve(self, app: web.Application) -> int:
        runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._runners.append(runner)
        return int(runner.addresses[0][1])

    # ---------------------------------------------------------- URLs

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        """A fault's URL: a path on the hostile port, or an outside URL as written."""
        path = path.replace("OUT", str(self.outside_port))
        return path if "://" in path else self.base + path

    def seeds(self) -> list[str]:
        return [self.base + "/"]

    # ---------------------------------------------------------- routes

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._count])
        routes = [
            ("/", self.index),
            ("/robots.txt", self.redirect_out),
            ("/redirect-out", self.redirect_out),
            ("/tarpit", self.tarpit),
            ("/reset", self.reset),
            ("/gzip-bomb", self.gzip_bomb),
            ("/lying", self.lying),
            ("/bad-utf8", self.bad_utf8),
            ("/many", self.many),
            ("/calendar/{year}/{month}", self.calendar),
            ("/img/good-{n}.png", self.good),
            ("/m.png", self.many_image),
            ("/photo/{n}.jpg", self.photo),
            ("/img/giga.png", self.giga_image),
            ("/img/bomb.jpg", self.gzip_bomb),
            ("/img/tarpit.jpg", self.tarpit),
            ("/img/reset.jpg", self.reset),
            ("/img/lying.jpg", self.lying),
            ("/img/redirect-out.jpg", self.redirect_out),
            ("/img/page.jpg", self.bad_utf8),
        ]
        for path, handler in routes:
            app.router.add_get(path, handler)
        return app

    @web.middleware
    async def _count(self, request: web.Request, handler: object) -> web.StreamResponse:
        self.hits[request.path] += 1
        return await handler(request)  # type: ignore[operator,no-any-return]

    async def index(self, request: web.Request) -> web.Response:
        pages = [
            f.path for f in FAULTS if f.stage in ("crawl", "curate") and f.path != "/robots.txt"
        ]
        links = "".join(f"<a href='{self.url(p)}'>page</a>" for p in pages)
        images = [f"/img/good-{n}.png" for n in range(GOOD_IMAGES)]
        images += [f.path for f in FAULTS if f.stage == "shards"]
        imgs = "".join(
            f"<img src='{self.url(src)}' alt='a photo of the harbour number {k}'>"
            for k, src in enumerate(images)
        )
        return html(f"<html lang='en'><body><h1>Welcome</h1>{imgs}{links}</body></html>")

    async def redirect_out(self, request: web.Request) -> web.Response:
        raise web.HTTPFound(f"http://127.0.0.1:{self.outside_port}{request.path}")

    async def tarpit(self, request: web.Request) -> web.StreamResponse:
        """Headers at once, then one byte every TRICKLE_SECONDS, for ever."""
        started = time.monotonic()
        response = web.StreamResponse(headers={"Content-Type": "text/html"})
        await response.prepare(request)
        try:
            while True:
                await response.write(b" ")
                await asyncio.sleep(TRICKLE_SECONDS)
        except (ConnectionResetError, RuntimeError, asyncio.CancelledError):
            pass
        finally:
            self.tarpit_spans[request.path].append((started, time.monotonic()))
        return response

    async def reset(self, request: web.Request) -> web.StreamResponse:
        """The connection dropped before any response."""
        assert request.transport is not None
        request.transport.abort()
        return web.Response()

    async def gzip_bomb(self, request: web.Request) -> web.Response:
        return web.Response(
            body=self.bomb, headers={"Content-Encoding": "gzip", "Content-Type": "text/html"}
        )

    async def lying(self, request: web.Request) -> web.StreamResponse:
        """Content-Length says 100,000 bytes; 20 come, then the connection closes."""
        response = web.StreamResponse(
            headers={"Content-Type": "text/html", "Content-Length": "100000"}
        )
        await response.prepare(request)
        await response.write(b"<html><img src='/x'>")
        assert request.transport is not None
        request.transport.close()
        return response

    async def bad_utf8(self, request: web.Request) -> web.Response:
        """Declared UTF-8; the alt text holds bytes that are not (0xFF 0xFE, and 0xC3 0x28)."""
        body = (
            b"<html lang='en'><head><meta charset='utf-8'></head><body>"
            + f"<img src='/img/good-{UTF8_IMAGE}.png' ".encode()
            + b"alt='a photo of the \xff\xfe harbour \xc3\x28 at dusk'></body></html>"
        )
        return web.Response(body=body, headers={"Content-Type": "text/html; charset=utf-8"})

    async def many(self, request: web.Request) -> web.Response:
        """100,000 <img> of one URL, each with its own alt text."""
        # 43 bytes an <img>, so the page stays under the default 5 MB page cap
        imgs = "".join(f"<img src=/m.png alt='a harbour photo {k}'>" for k in range(MANY_IMAGES))
        return html(f"<html lang='en'><body>{imgs}</body></html>")

    async def calendar(self, request: web.Request) -> web.Response:
        """An endless calendar: each month links to the next and the previous one."""
        year, month = int(request.match_info["year"]), int(request.match_info["month"])
        nxt = (year + month // 12, month % 12 + 1)
        prv = (year - (month == 1), (month - 2) % 12 + 1)
        return html(
            f"<html><a href='/calendar/{nxt[0]}/{nxt[1]}'>next</a>"
            f"<a href='/calendar/{prv[0]}/{prv[1]}'>previous</a></html>"
        )

    async def good(self, request: web.Request) -> web.Response:
        return web.Response(
            body=self.images[int(request.match_info["n"])], content_type="image/png"
        )

    async def many_image(self, request: web.Request) -> web.Response:
        return web.Response(body=self.images[MANY_IMAGE], content_type="image/png")

    async def photo(self, request: web.Request) -> web.Response:
        """Photo-like JPEG n (640x480), for runs that need many distinct, real-sized images."""
        n = int(request.match_info["n"])
        if n not in self._photos:
            self._photos[n] = photo_jpeg(n)
        return web.Response(body=self._photos[n], content_type="image/jpeg")

    async def giga_image(self, request: web.Request) -> web.Response:
        return web.Response(body=self.giga, content_type="image/png")


def html(text: str) -> web.Response:
    return web.Response(text=text, content_type="text/html")
