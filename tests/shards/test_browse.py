"""The shard browser: real tars written by `ShardWriter`, served on 127.0.0.1 and driven in
headless Chromium (page through, filter by text and by entry, open a sample's JSON); the
same server over plain HTTP, from object storage, and its command line."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from core import storage
from core.record import Pair
from shards.browse import PAGE_SIZE, ShardBrowser, browse_handler
from shards.images import ProcessedImage
from shards.writer import ShardWriter
from tests.browser import Chromium, chromium  # noqa: F401 (the fixture)
from tests.conftest import REPO
from tests.services import http_server
from tests.shards.conftest import photo_jpeg

COLOURS = ("red", "green", "blue")
SHAPES = ("star", "square", "circle", "triangle", "cross")
SAMPLES = 60  # two shards of 40 and 20: three pages


def sample_pairs() -> list[tuple[Pair, ProcessedImage | None]]:
    results: list[tuple[Pair, ProcessedImage | None]] = []
    for i in range(SAMPLES):
        colour, shape = COLOURS[i % 3], SHAPES[i % 5]
        pair = Pair(url=f"http://127.0.0.1/img/{i}.jpg", caption=f"a {colour} {shape} number {i}")
        pair.matched = sorted([colour, shape, f"{colour} {shape}"])
        jpeg = photo_jpeg(48, 32, seed=i)
        sha = hashlib.sha256(jpeg).hexdigest()
        results.append((pair, ProcessedImage(jpeg, 48, 32, 48, 32, sha, i, "jpg")))
    missing = Pair(url="http://127.0.0.1/img/gone.jpg", caption="a failed download")
    missing.status, missing.error_message = "failed_to_download", "http 404"
    results.insert(7, (missing, None))  # a row in the parquet, not a sample in the tar
    return results


def write_shards(folder: str) -> None:
    pairs = sample_pairs()
    for shard, chunk in enumerate((pairs[:41], pairs[41:])):
        with ShardWriter(folder, shard) as writer:
            for pair, image in chunk:
                writer.write(pair, image)


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("browse") / "shards"
    write_shards(str(folder))
    return folder


async def drive(browser: Chromium, base: str, shot: Path) -> dict[str, Any]:
    found: dict[str, Any] = {}
    cards = "[...document.querySelectorAll('.sample')]"
    captions = f"{cards}.map(c => c.querySelector('.caption').textContent)"
    images_ok = (
        "(async () => { const im = [...document.images]; await Promise.all(im.map(i => i.decode()"
        ".catch(() => null))); return im.filter(i => i.naturalWidth > 0).length; })()"
    )
    async with browser.page() as page:
        await page.goto(base + "/")
        found["first"] = await page.evaluate(captions)
        found["images"] = await page.evaluate(images_ok)
        await page.click("a.next")
        found["second"] = await page.evaluate(captions)
        found["page"] = await page.evaluate("document.getElementById('page').textContent")
        await page.click("a.next")
        found["third"] = await page.evaluate(captions)
        found["next_on_last"] = await page.evaluate("document.querySelector('a.next') !== null")
        # Filter by text through the form.
        await page.evaluate("document.querySelector('input[name=q]').value = 'GREEN'")
        await page.click("#filter button")
        found["text_filtered"] = await page.evaluate(captions)
        found["url"] = await page.evaluate("location.search")
        # Then by entry: a matched entry's link on a card.
        await page.goto(base + "/")
        await page.click(".sample .matched a[href*='entry=blue+star']")
        found["entry_filtered"] = await page.evaluate(
            f"{cards}.map(c => c.querySelector('.matched').textContent)"
        )
        # Open one sample's JSON.
        await page.click(".sample a.json")
        found["json"] = json.loads(await page.evaluate("document.body.innerText"))
        await page.goto(base + "/sample/3")
        found["detail"] = json.loads(
            await page.evaluate("document.getElementById('json').textContent")
        )
        await page.screenshot(shot)
    found["errors"] = page.errors
    return found


def test_browse_shards_in_chromium(shard_dir: Path, chromium: Chromium, tmp_path: Path) -> None:  # noqa: F811
    with http_server(browse_handler(ShardBrowser(str(shard_dir)))) as base:
        found = asyncio.run(drive(chromium, base, tmp_path / "browse.png"))
    assert found["errors"] == []
    assert found["first"] == [
        f"a {COLOURS[i % 3]} {SHAPES[i % 5]} number {i}" for i in range(PAGE_SIZE)
    ]
    assert found["images"] == PAGE_SIZE
    assert found["page"] == "2" and found["second"][0].endswith(f"number {PAGE_SIZE}")
    assert len(found["third"]) == SAMPLES - 2 * PAGE_SIZE and not found["next_on_last"]
    shown = found["first"] + found["second"] + found["third"]
    assert len(set(shown)) == SAMPLES  # every sample once, across both tars
    assert found["url"].startswith("?q=GREEN")
    assert found["text_filtered"] == [c for c in shown if "green" in c][:PAGE_SIZE]
    assert found["entry_filtered"] and all("blue star" in m for m in found["entry_filtered"])
    assert len(found["entry_filtered"]) == sum(1 for i in range(SAMPLES) if i % 15 == 2)
    assert found["json"]["caption"] in shown and found["json"]["matched"]
    assert found["detail"]["caption"] == shown[3]
    assert (tmp_path / "browse.png").stat().st_size > 1000


def fetch(url: str) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            return reply.status, reply.read(), reply.headers["Content-Type"]
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers["Content-Type"]


def test_members_are_the_tar_bytes(shard_dir: Path) -> None:
    pairs = [p for p, image in sample_pairs() if image is not None]
    images = [image for _, image in sample_pairs() if image is not None]
    with http_server(browse_handler(ShardBrowser(str(shard_dir)))) as base:
        status, body, kind = fetch(base + "/image/45")
        assert (status, kind) == (200, "image/jpeg") and body == images[45].data
        status, body, _ = fetch(base + "/sample/45.json")
        assert json.loads(body)["caption"] == pairs[45].caption
        for path in ("/sample/60", "/sample/x.json", "/image/-1", "/nowhere"):
            assert fetch(base + path)[0] == 404, path
        status, body, _ = fetch(base + "/?entry=red+circle&page=99")  # past the end: the last page
        assert status == 200 and body.count(b'class="sample"') == 4


def test_browse_from_object_storage(shard_dir: Path, s3_bucket: str) -> None:
    remote = storage.join(s3_bucket, "run", "shards")
    for local in sorted(shard_dir.iterdir()):
        storage.write_bytes(storage.join(remote, local.name), local.read_bytes())
    browser = ShardBrowser(remote)
    assert [t.caption for t in browser.texts] == [
        t.caption for t in ShardBrowser(str(shard_dir)).texts
    ]
    ext, data = browser.member(10, ("jpg",)) or ("", b"")
    assert ext == "jpg" and data == photo_jpeg(48, 32, seed=10)


def test_a_folder_without_tars_is_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "shards", "browse", str(tmp_path / "nothing"), "--port", "0"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"openwit: error: no shard tars at {tmp_path / 'nothing'}"
    ]


def test_a_truncated_tar_gives_the_samples_before_the_damage(
    shard_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    whole = (shard_dir / "00000.tar").read_bytes()
    (tmp_path / "00000.tar").write_bytes(whole[: len(whole) // 2 + 7])  # mid-block
    (tmp_path / "00000.parquet").write_bytes(b"not parquet")
    browser = ShardBrowser(str(tmp_path))
    complete = ShardBrowser(str(shard_dir))
    n = len(browser.texts)
    assert 0 < n < 40 and browser.texts == complete.texts[:n]  # from the JSON members
    assert "00000.parquet is unreadable, reading the texts from the tar" in caplog.text
    assert all(set(s.members) == {"jpg", "json", "txt"} for s in browser.index.samples)
    assert "unreadable after" in caplog.text
