"""The sandbox web for runs without seeds: started on the ports the crawl recorded.

Image URLs carry the sandbox's ports, so a later stage (or a rerun after a kill) must find
the sandbox where the crawl found it: the first start takes `sandbox.base_port` onwards (or
free ports) and writes them to `sandbox/ports.json`; every later start binds the same ones
(a port taken meanwhile is one clear error).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from urllib.parse import urlsplit

from core import storage
from core.config import CRAWL_SOURCES, PipelineConfig
from core.io import read_json, write_json
from core.layout import RunLayout
from sandbox.server import SandboxError, SandboxWeb, serve_in_thread


def uses_sandbox(config: PipelineConfig) -> bool:
    """A run without seeds, a URL list or Common Crawl archives crawls the sandbox web."""
    return not any(getattr(config.crawl, name) for name in CRAWL_SOURCES)


def recorded_ports(layout: RunLayout) -> list[int] | None:
    if not storage.exists(layout.ports_file):
        return None
    return [int(p) for p in read_json(layout.ports_file)["ports"]]


@contextlib.contextmanager
def sandbox_web(config: PipelineConfig, layout: RunLayout) -> Iterator[SandboxWeb]:
    """Serve the sandbox on its recorded ports (recording them the first time)."""
    ports = recorded_ports(layout)
    stack = contextlib.ExitStack()
    try:
        web = stack.enter_context(serve_in_thread(config.sandbox, ports or config.sandbox.ports()))
    except SandboxError as exc:
        hint = (
            "this run's image URLs use those ports: free them, or use a new workdir"
            if ports
            else "set sandbox.base_port=0 to take free ports"
        )
        raise SandboxError(f"{exc} ({hint})") from None
    with stack:
        if ports is None:
            bound = [urlsplit(url).port for url in web.base_urls]
            write_json(layout.ports_file, {"ports": bound, "base_urls": web.base_urls})
        yield web


@contextlib.contextmanager
def sandbox_if_recorded(config: PipelineConfig, layout: RunLayout) -> Iterator[SandboxWeb | None]:
    """The sandbox when this run's candidates came from it, else nothing."""
    if recorded_ports(layout) is None:
        yield None
        return
    with sandbox_web(config, layout) as web:
        yield web
