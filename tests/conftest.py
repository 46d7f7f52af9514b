"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`python -m pipeline ARGS` from the repository root, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def shared_data_dir() -> Path:
    """The third-party test data: $OPENWIT_SHARED_DATA, else ../shared/data beside the repo."""
    return Path(os.environ.get("OPENWIT_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ../shared/data; tests that use it skip cleanly where it is absent."""
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"third-party test data not found at {path}")
    return path
