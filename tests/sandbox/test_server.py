from __future__ import annotations

import asyncio
import io
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import aiohttp
import pytest
import requests
from PIL import Image

from core.config import SandboxConfig
from sandbox.server import SandboxError, SandboxWeb, serve_in_thread
from sandbox.site import SandboxTruth

REPO = __import__("pathlib").Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def web() -> Iterator[SandboxWeb]:
    """A server of its own, so flaky places are fresh whatever ran before."""
    with serve_in_thread(SandboxConfig(slow_seconds=0.2)) as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def truth(web: SandboxWeb) -> SandboxTruth:
    return web.truth()


LOCAL = requests.Session()
LOCAL.trust_env = False  # never through a proxy from the environment: loopback only


def get(url: str, **kwargs: object) -> requests.Response:
    return LOCAL.get(url, timeout=10, **kwargs)  # type: ignore[arg-type]


def test_urls_carry_the_real_ports(web: SandboxWeb, truth: SandboxTruth) -> None:
    assert len(set(web.base_urls)) == 4
    assert all(url.startswith("http://127.0.0.1:") for url in web.base_urls)
    assert web.seed_urls == [web.base_urls[0] + "/"] == list(truth.seed_urls)
    response = get(web.seed_urls[0])
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert web.base_urls[1] + "/" in response.text  # links across hosts carry the port


def test_good_image_is_a_jpeg_of_its_concept(web: SandboxWeb, truth: SandboxTruth) -> None:
    url = sorted(truth.good)[0]
    response = get(url)
    assert response.status_code == 200 and response.headers["Content-Type"] == "image/jpeg"
    image = Image.open(io.BytesIO(response.content))
    assert min(image.size) >= 200 and len(response.content) > 5_000
    assert get(url).content == response.content


def test_page_and_image_errors(web: SandboxWeb, truth: SandboxTruth) -> None:
    statuses = sorted(get(url).status_code for url in truth.kinds["http_error"])
    assert statuses == [404, 404, 404, 500, 500, 500]
    assert sorted(get(url).status_code for url in truth.pages["http_error"]) == [404, 500]
    assert get(web.base_urls[2] + "/no/such/page.html").status_code == 404


def test_flaky_answers_503_once_then_200(web: SandboxWeb, truth: SandboxTruth) -> None:
    for url in sorted(truth.kinds["flaky"]) + sorted(truth.pages["flaky"]):
        assert get(url).status_code == 503
        assert get(url).status_code == 200
        assert get(url).status_code == 200


def test_slow_routes_wait(web: SandboxWeb, truth: SandboxTruth) -> None:
    for url in [sorted(truth.kinds["slow"])[0], sorted(truth.pages["slow"])[0]]:
        start = time.perf_counter()
        assert get(url).status_code == 200
        assert time.perf_counter() - start >= 0.2


def test_redirects_and_redirect_loops(web: SandboxWeb, truth: SandboxTruth) -> None:
    for url in truth.kinds["redirect"]:
        first = get(url, allow_redirects=False)
        assert first.status_code in (301, 302)
        assert first.headers["Location"] == truth.redirects[url]
        final = get(url)
        assert final.status_code == 200 and final.headers["Content-Type"] == "image/jpeg"
    assert {get(u, allow_redirects=False).status_code for u in truth.kinds["redirect"]} == {
        301,
        302,
    }
    for url in sorted(truth.kinds["redirect_loop"]) + sorted(truth.pages["redirect_loop"]):
        with pytest.raises(requests.TooManyRedirects):
            get(url)
    page = sorted(truth.pages["redirect"])[0]
    assert get(page).headers["Content-Type"].startswith("text/html")


def test_opt_out_headers(truth: SandboxTruth) -> None:
    tags = [get(url).headers["X-Robots-Tag"] for url in sorted(truth.kinds["noai"])]
    assert all("noai" in tag or "noimageai" in tag for tag in tags)
    assert any(tag == "noimageai" for tag in tags)
    assert all("X-Robots-Tag" not in get(url).headers for url in sorted(truth.good)[:5])


def test_bomb_truncated_and_broken_images_fail_to_decode(truth: SandboxTruth) -> None:
    for url in truth.kinds["bomb"]:
        response = get(url)
        assert response.headers["Content-Type"] == "image/png" and len(response.content) < 100_000
        with pytest.raises(Image.DecompressionBombError):
            Image.open(io.BytesIO(response.content))
    for url in truth.kinds["truncated"]:
        image = Image.open(io.BytesIO(get(url).content))
        with pytest.raises(OSError, match="truncated"):
            image.load()
    for url in truth.kinds["broken"]:
        with pytest.raises(OSError):
            Image.open(io.BytesIO(get(url).content)).load()


def test_wrong_content_types(truth: SandboxTruth) -> None:
    answers = [get(url) for url in sorted(truth.kinds["wrong_type"])]
    assert all(a.headers["Content-Type"].startswith("text/html") for a in answers)
    decodable = [a for a in answers if a.content.startswith(b"\xff\xd8")]
    assert len(decodable) == 2 and all(Image.open(io.BytesIO(a.content)) for a in decodable)
    assert sum(a.content.startswith(b"<!DOCTYPE html>") for a in answers) == 2


def test_non_utf8_page_bytes(truth: SandboxTruth) -> None:
    (url,) = truth.pages["non_utf8"]
    response = get(url)
    assert response.headers["Content-Type"] == "text/html; charset=windows-1252"
    assert b"caf\xe9" in response.content
    text = response.content.decode("windows-1252")
    assert all(truth.captions[u] in text for u in truth.kinds["non_utf8"])
    assert any("—" in truth.captions[u] for u in truth.kinds["non_utf8"])


def test_robots_non_html_and_trap(web: SandboxWeb, truth: SandboxTruth) -> None:
    robots = get(web.base_urls[1] + "/robots.txt")
    assert robots.headers["Content-Type"].startswith("text/plain")
    assert "Disallow: /private/" in robots.text
    assert "Crawl-delay: 0.5" in get(web.base_urls[3] + "/robots.txt").text
    types = {get(url).headers["Content-Type"] for url in truth.pages["non_html"]}
    assert types == {"application/pdf", "application/zip"}
    (entry,) = truth.trap_pages
    assert truth.is_trap(entry) and "/calendar/2026/12" in get(entry).text
    assert get(entry.replace("2026/11", "4321/7/31")).status_code == 200
    for url in truth.disallowed_pages:  # robots.txt asks, the server still answers
        assert get(url).status_code == 200


def test_lazy_images_and_placeholder(web: SandboxWeb, truth: SandboxTruth) -> None:
    (placeholder,) = truth.kinds["placeholder"]
    assert Image.open(io.BytesIO(get(placeholder).content)).size == (1, 1)
    assert len(truth.kinds["lazy"]) == 8
    for url in truth.kinds["lazy"]:
        width = Image.open(io.BytesIO(get(url).content)).width
        declared = re.search(r"-(\d+)w\.jpg$", url)  # srcset URLs name their width
        assert declared is None or int(declared[1]) == width


def test_requests_are_logged(web: SandboxWeb) -> None:
    web.reset()
    get(web.base_urls[0] + "/robots.txt", headers={"User-Agent": "OpenWITBot/0.1"})
    (record,) = web.requests
    assert (record.host, record.path, record.status) == (0, "/robots.txt", 200)
    assert record.user_agent == "OpenWITBot/0.1"


def test_port_in_use_is_one_clear_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with (
            pytest.raises(SandboxError, match=f"^port {port} on 127.0.0.1 is already in use$"),
            serve_in_thread(SandboxConfig(hosts=2), ports=[0, port]),
        ):
            pass


def test_cli_reports_port_in_use(tmp_path: object) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "sandbox", "serve", "--port", str(port)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: port {port} on 127.0.0.1 is already in use"


def test_cli_serves_until_interrupted() -> None:
    command = [sys.executable, "-m", "sandbox", "serve", "--set", "sandbox.hosts=2"]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        seed = process.stdout.readline().strip()
        assert seed.startswith("http://127.0.0.1:") and seed.endswith("/")
        assert get(seed).status_code == 200
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0


def test_session_fixture_serves_the_default_sandbox(sandbox_web: SandboxWeb) -> None:
    assert get(sandbox_web.seed_urls[0]).status_code == 200
    assert len(sandbox_web.truth().kinds["good"]) > 1500


async def fetch_all(urls: list[str]) -> dict[str, int]:
    limit = asyncio.Semaphore(16)
    async with aiohttp.ClientSession() as session:

        async def fetch(url: str) -> tuple[str, int]:
            async with limit, session.get(url) as response:
                await response.read()
                return url, response.status

        return dict(await asyncio.gather(*(fetch(u) for u in urls)))


@pytest.mark.slow
def test_every_page_and_image_once_is_quick(truth: SandboxTruth) -> None:
    pages = sorted(truth.pages["ok"] - truth.pages["flaky"] - truth.pages["slow"])
    images = sorted(truth.kinds["good"] | truth.kinds["robots_disallowed"])
    start = time.perf_counter()
    statuses = asyncio.run(fetch_all(pages + images))
    seconds = time.perf_counter() - start
    assert set(statuses.values()) == {200}
    assert seconds < 30, f"{len(statuses)} fetches took {seconds:.1f} s"
