"""The session-wide sandbox web fixture, for any test that needs a web to crawl.

Import it into a conftest (`from tests.sandbox_fixture import sandbox_web`). The server keeps
per-server state (flaky places fail once, a request log): call `sandbox_web.reset()` first
in a test that depends on it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from core.config import SandboxConfig
from sandbox.server import SandboxWeb, serve_in_thread


@pytest.fixture(scope="session")
def sandbox_web() -> Iterator[SandboxWeb]:
    """The default sandbox web, served on ephemeral loopback ports for the whole session."""
    with serve_in_thread(SandboxConfig()) as web:
        yield web
