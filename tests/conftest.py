"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
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


# ---------------------------------------------------------------- real services (loopback)


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real two-node Ray cluster (one CPU a node) on loopback; yields its address.

    Started once per session with `ray start` (see tests/services.py) and stopped, every
    process of it, at the end. Skips where Ray is not installed.
    """
    pytest.importorskip("ray", reason="ray is not installed (pip install -e '.[ray]')")
    from tests.services import start_ray_cluster

    cluster = start_ray_cluster(tmp_path_factory.mktemp("ray", numbered=True))
    try:
        yield cluster.address
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's S3 server on 127.0.0.1; yields its endpoint URL.

    For the session, AWS_ENDPOINT_URL and test credentials are set in os.environ (so the
    pipeline's own code and any child process it starts reach this server); restored after.
    """
    pytest.importorskip("moto", reason="moto is not installed (pip install 'moto[server]')")
    s3fs = pytest.importorskip("s3fs", reason="s3fs is not installed (pip install s3fs)")
    from tests.services import S3_ENV, start_s3_server

    server = start_s3_server(tmp_path_factory.mktemp("moto") / "moto.log")
    saved = {key: os.environ.get(key) for key in [*S3_ENV, "AWS_ENDPOINT_URL"]}
    os.environ.update({**S3_ENV, "AWS_ENDPOINT_URL": server.endpoint})
    s3fs.S3FileSystem.clear_instance_cache()  # clients built earlier hold no endpoint
    try:
        yield server.endpoint
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture
def s3_bucket(s3_server: str) -> Iterator[str]:
    """A fresh, empty bucket on the session's S3 server; yields "s3://<bucket>"."""
    import uuid

    import fsspec

    fs = fsspec.filesystem("s3")
    bucket = f"test-{uuid.uuid4().hex[:12]}"
    fs.mkdir(bucket)
    fs.invalidate_cache()
    try:
        yield f"s3://{bucket}"
    finally:
        fs.rm(bucket, recursive=True)
        fs.invalidate_cache()
