"""A fault-injecting web server on 127.0.0.1 (Scrapy's mock-server style).

The server runs its own event loop in a thread, so the code under test talks to it over
real loopback TCP from another loop, and the server can measure what arrives: every
request is logged with its path and start/end times, and the peak number of requests in
flight is kept.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from PIL import Image

ROBOTS_TXT = "User-agent: *\nDisallow: /private/\n"


def jpeg_bytes(size: int = 32, seed: int = 0) -> bytes:
    """A small real JPEG whose pixels depend on `seed`."""
    image = Image.new("RGB", (size, size), ((seed * 37) % 256, (seed * 91) % 256, 128))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=80)
    return buffer.getvalue()


def site_page(n: int, fanout: int, pages: int, images: int) -> str:
    """Page n of a tree-shaped site: `images` images with alt text, links to children."""
    imgs = "".join(
        f'<img src="/img/{n}-{k}.jpg" alt="picture {k} of page {n}">' for k in range(images)
    )
    kids = range(fanout * n + 1, min(fanout * n + fanout + 1, pages))
    links = "".join(f'<a href="/site/{c}">page {c}</a>' for c in kids)
    return f'<html lang="en"><body><h1>Page {n}</h1>{imgs}{links}</body></html>'


@dataclass
class RequestLog:
    """What the server saw; read by tests after the client is done."""

    paths: list[str] = field(default_factory=list)
    starts: list[tuple[str, float]] = field(default_factory=list)
    hits: Counter[str] = field(default_factory=Counter)
    user_agents: set[str] = field(default_factory=set)
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, prefix: str) -> int:
        return sum(1 for p in self.paths if p.startswith(prefix))


class FaultServer:
    """An aiohttp app with fault routes, served from a background thread."""

    def __init__(self) -> None:
        self.log = RequestLog()
        self.robots_txt: str | None = ROBOTS_TXT
        self.robots_status = 200
        self.robots_redirect: str | None = None
        self.site_pages = 15
        self.site_fanout = 2
        self.site_images = 3
        self.page_delay = 0.0  # seconds each /site page takes
        self.jpeg = jpeg_bytes()
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base + path

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _start(self) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @web.middleware
    async def track(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        with self.log.lock:
            self.log.paths.append(request.path_qs)
            self.log.starts.append((request.path, time.monotonic()))
            self.log.hits[request.path] += 1
            self.log.user_agents.add(request.headers.get("User-Agent", ""))
            if not request.path.startswith("/robots.txt"):
                self.log.in_flight += 1
                self.log.max_in_flight = max(self.log.max_in_flight, self.log.in_flight)
        try:
            return await handler(request)
        finally:
            if not request.path.startswith("/robots.txt"):
                with self.log.lock:
                    self.log.in_flight -= 1

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.track])
        routes = [
            ("/robots.txt", self.robots),
            ("/site/{n}", self.site),
            ("/img/{name}", self.image),
            ("/status/{code}", self.status),
            ("/flaky/{key}", self.flaky),
            ("/slow", self.slow),
            ("/tarpit", self.tarpit),
            ("/redirect/{n}", self.redirect),
            ("/loop/{side}", self.loop),
            ("/to", self.redirect_to),
            ("/huge", self.huge),
            ("/gzip", self.gzip_body),
            ("/typed", self.typed),
            ("/calendar/{year}/{month}", self.calendar),
            ("/items/{n}", self.items),
            ("/events", self.events),
            ("/session", self.session),
            ("/private/{name}", self.private),
            ("/html", self.html),
            ("/links", self.links),
            ("/gallery", self.gallery),
        ]
        for path, handler in routes:
            app.router.add_get(path, handler)
        return app

    # ------------------------------------------------------------ routes

    async def robots(self, request: web.Request) -> web.Response:
        if self.robots_redirect is not None:
            raise web.HTTPMovedPermanently(self.robots_redirect)
        if self.robots_txt is None:
            return web.Response(status=404, text="no robots here")
        return web.Response(status=self.robots_status, text=self.robots_txt)

    async def site(self, request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        if n >= self.site_pages:
            return web.Response(status=404, text="no such page")
        if self.page_delay:
            await asyncio.sleep(self.page_delay)
        body = site_page(n, self.site_fanout, self.site_pages, self.site_images)
        return web.Response(text=body, content_type="text/html")

    async def image(self, request: web.Request) -> web.Response:
        response = web.Response(body=self.jpeg, content_type="image/jpeg")
        for value in request.query.getall("xrobots", []):
            response.headers.add("X-Robots-Tag", value)
        if "delay" in request.query:
            await asyncio.sleep(float(request.query["delay"]))
        return response

    async def status(self, request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]), text="status page")

    async def flaky(self, request: web.Request) -> web.Response:
        """503 (or ?code=) for the first ?fail= requests to this key, then a page (or the
        JPEG with ?image=1)."""
        key = request.match_info["key"]
        if self.log.hits[request.path] <= int(request.query.get("fail", "1")):
            code = int(request.query.get("code", "503"))
            headers = {"Retry-After": request.query["after"]} if "after" in request.query else {}
            return web.Response(status=code, text="try again", headers=headers)
        if "image" in request.query:
            return web.Response(body=self.jpeg, content_type="image/jpeg")
        return web.Response(
            text=f"<html><img src='/img/{key}.jpg' alt='{key}'></html>", content_type="text/html"
        )

    async def slow(self, request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query.get("seconds", "1")))
        return web.Response(text="<html>late</html>", content_type="text/html")

    async def tarpit(self, request: web.Request) -> web.StreamResponse:
        """A page that does not end: one byte every ?every= seconds (default 0.05), until
        the client goes (or, so the server can stop, 10 s have passed)."""
        every = float(request.query.get("every", "0.05"))
        response = web.StreamResponse(headers={"Content-Type": "text/html"})
        await response.prepare(request)
        until = time.monotonic() + 10
        try:
            await response.write(b"<html><img src='/img/t.jpg' alt='tarpit'>")
            while time.monotonic() < until and request.transport is not None:
                await asyncio.sleep(every)
                await response.write(b" ")
        except (ConnectionResetError, RuntimeError):
            pass
        return response

    async def redirect(self, request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        target = "/html" if n <= 0 else f"/redirect/{n - 1}"
        raise web.HTTPFound(target)

    async def loop(self, request: web.Request) -> web.Response:
        raise web.HTTPFound("/loop/b" if request.match_info["side"] == "a" else "/loop/a")

    async def redirect_to(self, request: web.Request) -> web.Response:
        raise web.HTTPMovedPermanently(request.query["url"])

    async def huge(self, request: web.Request) -> web.StreamResponse:
        size = int(request.query.get("bytes", "10000000"))
        response = web.StreamResponse(headers={"Content-Type": "image/jpeg"})
        if "length" in request.query:
            response.content_length = size
        await response.prepare(request)
        chunk = b"\xff" * 65536
        sent = 0
        try:
            while sent < size:
                await response.write(chunk[: size - sent])
                sent += min(len(chunk), size - sent)
        except (ConnectionResetError, RuntimeError):
            pass
        return response

    async def gzip_body(self, request: web.Request) -> web.Response:
        """A gzip-encoded HTML body: ?bytes= decompressed bytes of padding after the page."""
        padding = int(request.query.get("bytes", "0"))
        page = (
            b"<html><body><img src='/img/z.jpg' alt='zipped'>" + b" " * padding + b"</body></html>"
        )
        return web.Response(
            body=gzip.compress(page),
            headers={"Content-Encoding": "gzip", "Content-Type": "text/html"},
        )

    async def typed(self, request: web.Request) -> web.Response:
        """The JPEG (or ?body=) served with whatever ?type= says."""
        body = request.query.get("body", "").encode() or self.jpeg
        return web.Response(body=body, headers={"Content-Type": request.query["type"]})

    async def calendar(self, request: web.Request) -> web.Response:
        """An endless calendar: every month links to the next one and the previous one."""
        year, month = int(request.match_info["year"]), int(request.match_info["month"])
        nxt = (year + month // 12, month % 12 + 1)
        prv = (year - (month == 1), (month - 2) % 12 + 1)
        body = (
            f"<html><img src='/img/cal-{year}-{month}.jpg' alt='calendar {year}-{month}'>"
            f"<a href='/calendar/{nxt[0]}/{nxt[1]}'>next</a>"
            f"<a href='/calendar/{prv[0]}/{prv[1]}'>previous</a></html>"
        )
        return web.Response(text=body, content_type="text/html")

    async def items(self, request: web.Request) -> web.Response:
        """Endless generated pages: item n links to items 2n+1 and 2n+2."""
        n = int(request.match_info["n"])
        body = (
            f"<html><img src='/img/item-{n}.jpg' alt='item {n}'>"
            f"<a href='/items/{2 * n + 1}'>a</a><a href='/items/{2 * n + 2}'>b</a></html>"
        )
        return web.Response(text=body, content_type="text/html")

    async def events(self, request: web.Request) -> web.Response:
        """A query-string calendar: ?day=N links to the next and previous day, each also
        in a list view."""
        day = int(request.query.get("day", "0"))
        links = "".join(
            f"<a href='/events?day={d}{view}'>d</a>"
            for d in (day - 1, day + 1)
            for view in ("", "&view=list")
        )
        body = f"<html><img src='/img/day-{day}.jpg' alt='day {day}'>{links}</html>"
        return web.Response(text=body, content_type="text/html")

    async def session(self, request: web.Request) -> web.Response:
        """Pages 1-3 whose links carry a new session id each time they are served."""
        page = int(request.query.get("page", "1"))
        fresh = self.log.hits[request.path]
        links = f"<a href='/session?page={page}&sid=s{fresh}'>same page</a>"
        links += f"<a href='/session?PHPSESSID=p{fresh}&page={page}'>again</a>"
        if page < 3:
            links += f"<a href='/session;jsessionid=j{fresh}?page={page + 1}'>next</a>"
        body = f"<html><img src='/img/session-{page}.jpg' alt='page {page}'>{links}</html>"
        return web.Response(text=body, content_type="text/html")

    async def private(self, request: web.Request) -> web.Response:
        return web.Response(
            text="<html><img src='/img/secret.jpg' alt='secret'></html>", content_type="text/html"
        )

    async def links(self, request: web.Request) -> web.Response:
        """A page linking to every `to` query value."""
        anchors = "".join(f"<a href='{url}'>x</a>" for url in request.query.getall("to", []))
        return web.Response(text=f"<html>{anchors}</html>", content_type="text/html")

    async def gallery(self, request: web.Request) -> web.Response:
        """A page with an <img> (alt text "picture N") for every `src` query value."""
        images = "".join(
            f"<img src='{src}' alt='picture {n}'>"
            for n, src in enumerate(request.query.getall("src", []))
        )
        return web.Response(text=f"<html>{images}</html>", content_type="text/html")

    async def html(self, request: web.Request) -> web.Response:
        return web.Response(
            text="<html><img src='/img/h.jpg' alt='landing'></html>", content_type="text/html"
        )


def serve_faults() -> Iterator[FaultServer]:
    server = FaultServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fault_server() -> Iterator[FaultServer]:
    yield from serve_faults()


@pytest.fixture
def second_server() -> Iterator[FaultServer]:
    """Another host (a different port is a different politeness unit)."""
    yield from serve_faults()
