"""The sandbox web served over HTTP on loopback: one aiohttp server (one port) per host.

Hosts are distinct origins because their ports differ, so robots.txt, Crawl-delay and
connection limits apply per host exactly as on the real web. Images are rendered on first
request (in a worker thread) and kept in an LRU cache, so startup is instant. The only
state a server keeps is which flaky places it has already failed once, and a log of the
requests it answered (for tests of politeness).

    with serve_in_thread(SandboxConfig()) as web:
        crawl(web.seed_urls)
        truth = web.truth()
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import functools
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

from aiohttp import web

from core.config import SandboxConfig
from sandbox.render import image_bytes
from sandbox.site import HostPath, Route, SandboxSite, SandboxTruth

START_TIMEOUT = 30.0  # seconds to wait for the servers to listen or to stop
REQUEST_LOG = 100_000  # requests kept in `SandboxWeb.requests`


class SandboxError(RuntimeError):
    """The sandbox cannot be served (for example a port already in use)."""


@dataclass(frozen=True)
class RequestRecord:
    """One request a sandbox server answered."""

    host: int
    path: str
    method: str
    status: int
    user_agent: str
    at: float  # time.monotonic() when the request arrived


class SandboxWeb:
    """The running sandbox: `await start()`, then `base_urls`, `seed_urls`, `truth()`."""

    def __init__(self, config: SandboxConfig, ports: list[int] | None = None) -> None:
        ports = list(ports) if ports is not None else [0] * config.hosts
        if len(ports) != config.hosts:
            raise SandboxError(f"{config.hosts} hosts need {config.hosts} ports, got {ports}")
        self.config = config
        self.site = SandboxSite(config)
        self.ports = ports
        self.base_urls: list[str] = []
        # The most recent requests, for tests of politeness; bounded for long `serve` runs.
        self.requests: collections.deque[RequestRecord] = collections.deque(maxlen=REQUEST_LOG)
        self._failed_once: set[HostPath] = set()
        self._runners: list[web.AppRunner] = []
        self._truth: SandboxTruth | None = None

    @property
    def seed_urls(self) -> list[str]:
        return [self.url(place) for place in self.site.seed_places()]

    def url(self, place: HostPath) -> str:
        return self.base_urls[place[0]] + place[1]

    def truth(self) -> SandboxTruth:
        """The ground truth, as URLs on this server's ports (computed once)."""
        if not self.base_urls:
            raise SandboxError("the sandbox is not started: its URLs are not known yet")
        if self._truth is None or self._truth.seed_urls != tuple(self.seed_urls):
            self._truth = self.site.truth(self.base_urls)
        return self._truth

    def reset(self) -> None:
        """Forget the request log and which flaky places already failed once."""
        self.requests.clear()
        self._failed_once.clear()

    async def start(self) -> None:
        """Listen on every host's port; raise `SandboxError` (and listen on none) on failure."""
        try:
            for host, port in enumerate(self.ports):
                self.base_urls.append(await self._start_host(host, port))
        except BaseException:
            await self.stop()
            self.base_urls = []
            raise

    async def _start_host(self, host: int, port: int) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", functools.partial(self._handle, host))
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        self._runners.append(runner)
        bind = self.config.bind
        try:
            await web.TCPSite(runner, bind, port).start()
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise SandboxError(f"port {port} on {bind} is already in use") from None
            raise SandboxError(f"cannot listen on {bind} port {port}: {exc}") from None
        bound = runner.addresses[0][1]
        name = f"[{bind}]" if ":" in bind else bind
        return f"http://{name}:{bound}"

    async def stop(self) -> None:
        """Close every server; safe to call twice or after a failed start.

        `base_urls` and `truth()` stay available, so a run can be checked afterwards.
        """
        while self._runners:
            await self._runners.pop().cleanup()

    async def _handle(self, host: int, request: web.Request) -> web.StreamResponse:
        route = self.site.route(host, request.path)
        response = await self._respond(host, request.path, route)
        record = RequestRecord(
            host,
            request.path,
            request.method,
            response.status,
            request.headers.get("User-Agent", ""),
            time.monotonic(),
        )
        self.requests.append(record)
        return response

    async def _respond(self, host: int, path: str, route: Route | None) -> web.Response:
        if route is None:
            return _html_status(404, "Not Found")
        if route.slow:
            await asyncio.sleep(self.config.slow_seconds)
        if route.flaky and (host, path) not in self._failed_once:
            self._failed_once.add((host, path))
            return _html_status(503, "Service Unavailable")
        return await self._answer(route)

    async def _answer(self, route: Route) -> web.Response:
        headers = dict(route.headers)
        if route.kind == "status":
            return _html_status(route.status, "Error")
        if route.kind == "redirect":
            assert route.location is not None
            headers["Location"] = self.url(route.location)
            return web.Response(status=route.status, headers=headers)
        headers["Content-Type"] = route.content_type
        if route.kind == "page":
            assert route.page is not None
            body = self.site.page_html(route.page, self.base_urls)
        elif route.kind == "image":
            assert route.image is not None
            loop = asyncio.get_running_loop()
            body = await loop.run_in_executor(None, image_bytes, route.image, self.config.seed)
        else:
            body = route.body
        return web.Response(status=route.status, body=body, headers=headers)


def _html_status(status: int, reason: str) -> web.Response:
    body = f"<!DOCTYPE html><html><body><h1>{status} {reason}</h1></body></html>"
    return web.Response(status=status, text=body, content_type="text/html")


@contextlib.contextmanager
def serve_in_thread(config: SandboxConfig, ports: list[int] | None = None) -> Iterator[SandboxWeb]:
    """Serve the sandbox from an event loop in a background thread for the `with` block."""
    sandbox = SandboxWeb(config, ports)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="sandbox-web", daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(sandbox.start(), loop).result(START_TIMEOUT)
        yield sandbox
    finally:
        asyncio.run_coroutine_threadsafe(sandbox.stop(), loop).result(START_TIMEOUT)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(START_TIMEOUT)
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()
