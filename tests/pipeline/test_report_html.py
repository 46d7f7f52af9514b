"""The HTML report: a small sandbox run (crawl, curate, shards through the CLI) rendered and
loaded in headless Chromium, its counts checked against the stats files; and the page of
runs that stopped early or hold hostile text.

Training is the one stage the fixture does not run (minutes on 2 cores; the end-to-end
test trains): it writes `train/log.jsonl` and `results.json` in the trainer's format.
"""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from core import storage
from core.io import read_json, write_json, write_pairs, write_text
from core.layout import RunLayout
from core.record import Pair
from core.stats import StageStats
from pipeline.report import write_report
from pipeline.report_data import funnel
from pipeline.report_gallery import dropped_items, shard_index
from shards.images import ProcessedImage
from shards.writer import ShardWriter
from tests.browser import Chromium, chromium  # noqa: F401 (the fixture)
from tests.conftest import run_cli
from tests.shards.conftest import photo_jpeg

SMALL_SANDBOX = ["--set", "sandbox.base_port=0", "--set", "sandbox.pages_per_host=12", "--quiet"]
PLOTS = (
    "funnel", "entries", "download-status", "download-errors", "throughput",
    "train-loss", "train-logit-scale", "train-lr", "train-samples-per-second", "train-time",
)  # fmt: skip


def trainer_files(layout: RunLayout) -> None:
    """`train/log.jsonl` and `results.json` as the trainer writes them (6 logging windows)."""
    lines = [
        {"step": 10 * (i + 1), "epoch": i // 2, "lr": 1e-3 * (1 - i / 6), "logit_scale": 14.3 + i,
         "loss": 4.1 - 0.4 * i, "samples_per_second": 180.0 + i, "data_wait": 0.02,
         "compute": 0.3 + 0.01 * i}
        for i in range(6)
    ]  # fmt: skip
    write_text(layout.at("train", "log.jsonl"), "".join(json.dumps(r) + "\n" for r in lines))
    write_json(
        layout.at("train", "results.json"),
        {"steps": 60, "total_steps": 60, "samples_seen": 3840, "epochs_done": 6.0,
         "final_loss": 2.1, "samples_per_second": 182.5, "seconds": 21.0, "stopped_early": False,
         "zero_shot": {"n": 480, "top1": 0.25, "top5": 0.6, "chance": 1 / 48}, "world_size": 1},
    )  # fmt: skip


@pytest.fixture(scope="module")
def sandbox_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("report") / "run"
    for command in ("crawl", "curate", "shards"):
        result = run_cli(
            command, "--config", "configs/demo.toml", "--workdir", str(workdir), *SMALL_SANDBOX
        )
        assert result.returncode == 0, result.stderr[-3000:]
    assert (workdir / "report.html").is_file()  # `shards` ends by writing the report
    trainer_files(RunLayout(workdir))
    result = run_cli("report", str(workdir), "--quiet")  # RUN_DIR as a positional argument
    assert result.returncode == 0, result.stderr[-3000:]
    assert "written to shards" in result.stdout and "zero-shot" in result.stdout
    return workdir


def stat_value(stats: dict[str, dict[str, Any]], key: str) -> int:
    """`curate.dropped.text:junk` -> stats["curate"]["dropped"]["text:junk"]."""
    stage, field, *rest = key.split(".", 2)
    value = stats[stage][field]
    return int(value[rest[0]] if rest else value)


async def inspect_report(browser: Chromium, page_file: Path, shot: Path) -> dict[str, Any]:
    async with browser.page() as page:
        await page.goto(page_file.as_uri())
        found = await page.evaluate(
            """(async () => {
                const thumbs = [...document.querySelectorAll('img.thumb')];
                await Promise.all(thumbs.map(i => i.decode().catch(() => null)));
                return {
                  plots: [...document.querySelectorAll('svg.plot')].map(s => s.dataset.plot),
                  polylines: document.querySelectorAll('svg.plot polyline').length,
                  kept: document.querySelectorAll('.gallery.kept img.thumb').length,
                  broken: thumbs.filter(i => !i.complete || i.naturalWidth === 0).length,
                  stats: [...document.querySelectorAll('[data-stat]')].map(
                    e => [e.dataset.stat, e.textContent.replace(/,/g, '')]),
                  reasons: [...document.querySelectorAll('.gallery.dropped')].map(
                    g => g.dataset.reason),
                  missing: [...document.querySelectorAll('.missing')].map(e => e.textContent),
                };
            })()"""
        )
        found["png"] = await page.screenshot(shot)
    found["errors"], found["requests"] = page.errors, page.requests
    return found


def test_report_page_in_chromium(sandbox_run: Path, chromium: Chromium, tmp_path: Path) -> None:  # noqa: F811
    layout = RunLayout(sandbox_run)
    stats = {s: read_json(layout.stats_file(s)) for s in ("crawl", "curate", "shards")}
    found = asyncio.run(
        inspect_report(chromium, sandbox_run / "report.html", tmp_path / "report.png")
    )

    assert found["errors"] == []
    # Self-contained: the page asked for nothing but itself and its data: URIs.
    assert {u.split(":", 1)[0] for u in found["requests"]} <= {"file", "data"}, found["requests"]
    assert set(PLOTS) <= set(found["plots"]), found["plots"]
    assert found["polylines"] >= 9  # a line per series: entries 2, throughput, training 6
    assert found["kept"] == min(24, stats["shards"]["kept"]) and found["broken"] == 0
    # Every count on the page equals its stats file; every drop reason is on the page.
    shown = dict(found["stats"])
    assert len(shown) > 20
    for key, text in shown.items():
        assert int(text) == stat_value(stats, key), key
    for stage in ("crawl", "curate", "shards"):
        for reason in stats[stage]["dropped"]:
            assert f"{stage}.dropped.{reason}" in shown
    assert {"curate.kept", "shards.kept", "crawl.counts.candidates"} <= set(shown)
    # Dropped pairs are shown for the reasons counted, in curation and after download.
    assert {"text:junk", "failed_to_download", "dedup:sha256"} <= set(found["reasons"])
    assert all("politeness" in m for m in found["missing"]), found["missing"]
    with Image.open(io.BytesIO(found["png"])) as shot:
        assert shot.size[0] == 1200 and shot.size[1] > 2000  # the whole page, not a viewport
    assert (tmp_path / "report.png").stat().st_size == len(found["png"])


def test_duplicates_are_shown_with_the_image_kept(sandbox_run: Path) -> None:
    page = (sandbox_run / "report.html").read_text()
    section = page.split('data-reason="dedup:sha256"', 1)[1].split("</div></div>", 1)[0]
    assert "data:image/jpeg;base64," in section and "duplicates kept sample" in section


def test_funnel_steps_account_for_every_drop() -> None:
    curate = StageStats("curate", seen=100, kept=60)
    for reason, n in {
        "text:junk": 10,
        "dedup:url": 5,
        "balance:over_threshold": 20,
        "new:rule": 5,
    }.items():
        curate.drop(reason, n)
    shards = StageStats("shards", seen=60, kept=50)
    for reason, n in {
        "failed_to_download": 4,
        "image:too_small": 3,
        "neardup:phash": 2,
        "retry:x": 1,
    }.items():
        shards.drop(reason, n)
    data = {"stages": {"curate": curate.to_dict(), "shards": shards.to_dict()}}
    steps = funnel(data)
    labels = [s.label for s in steps]
    assert labels[0] == "candidates" and steps[0].count == 100
    assert (
        labels.index("after text rules")
        < labels.index("after exact dedup")
        < labels.index("after balancing")
    )
    by_label = {s.label: s for s in steps}
    assert by_label["after balancing"].count == 65
    assert (
        by_label["after other"].dropped == {"new:rule": 5} and by_label["after other"].count == 60
    )
    assert by_label["selected"].count == 60 and by_label["in shards"].count == 50
    # Unknown shard reasons are counted with the download, the near-dup step last.
    assert by_label["after download"].dropped == {"failed_to_download": 4, "retry:x": 1}
    assert by_label["after near-dup"].count == 50


def test_a_run_stopped_after_curate_gets_a_page_with_hostile_text_escaped(tmp_path: Path) -> None:
    layout = RunLayout(tmp_path)
    curate = StageStats("curate", seen=2, kept=0)
    curate.drop("text:junk", 2)
    curate.save(layout.stats_file("curate"))
    hostile = Pair(url="http://127.0.0.1/a.jpg", caption='<script>alert("x")</script><img src=x>')
    hostile.page_url, hostile.drop_reason = "javascript:alert(1)", "text:junk"
    other = Pair(url="https://example.org/b.jpg", caption="ok", drop_reason="text:junk")
    other.page_url = "https://example.org/page?a=1&b=2"
    write_pairs(layout.at("curate", "dropped", "select-00000.parquet"), [hostile, other])
    write_report(tmp_path)
    page = (tmp_path / "report.html").read_text()
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "javascript:" not in page
    assert 'href="https://example.org/page?a=1&amp;b=2"' in page
    for missing in ("no shards written yet", "not trained yet", "no image has been fetched yet"):
        assert missing in page
    assert "Curate: 2 candidates, 2 dropped by the rules, 0 selected." in page
    assert "Not run (yet): crawl, shards, train." in page


def test_an_empty_run_says_so(tmp_path: Path) -> None:
    write_report(tmp_path / "run")
    assert "This run did nothing" in (tmp_path / "run" / "report.html").read_text()


def test_worldwide_entries_per_language(tmp_path: Path) -> None:
    layout = RunLayout(tmp_path)
    write_json(
        layout.at("curate", "entry_counts.json"),
        {"de": {"matched": {"hund": 40, "katze": 5}, "selected": {"hund": 10, "katze": 5}},
         "en": {"matched": {"dog": 100, "cat": 8}, "selected": {"dog": 20, "cat": 8}}},
    )  # fmt: skip
    write_json(
        layout.at("curate", "worldwide.json"),
        {"tail_fraction": 0.2, "expected_selected": 44.5, "selected": 43,
         "languages": {"en": {"before": 108, "after": 28, "t": 20},
                       "de": {"before": 45, "after": 15, "t": 10}}},
    )  # fmt: skip
    write_report(tmp_path)
    page = (tmp_path / "report.html").read_text()
    head = page.split("<h3>Head entries</h3>", 1)[1].split("</table>", 1)[0]
    rows = [r.split("</tr>")[0] for r in head.split('<tr class="head-entry">')[1:]]
    # Most matched first, each with its own language's t: dog 20/100, hund 10/40.
    assert "<td>en</td><td>dog</td>" in rows[0] and ">0.200<" in rows[0]
    assert "<td>de</td><td>hund</td>" in rows[1] and ">0.250<" in rows[1]
    assert "<td>en</td><td>cat</td>" in rows[2] and ">1.000<" in rows[2]
    assert "expected 44.500 selected, actual 43" in page
    assert "t = de 10, en 20" in page


def test_report_of_a_run_on_object_storage(sandbox_run: Path, s3_bucket: str) -> None:
    remote = storage.join(s3_bucket, "run")
    for local in sorted(sandbox_run.rglob("*")):
        relative = local.relative_to(sandbox_run).as_posix()
        if local.is_file() and not relative.startswith(("sandbox/", "report.")):
            storage.write_bytes(storage.join(remote, relative), local.read_bytes())
    text = write_report(remote)
    assert text.splitlines()[1:] == (sandbox_run / "report.txt").read_text().splitlines()[1:]
    page = storage.read_text(storage.join(remote, "report.html"))
    assert page.count('class="thumb"') == (sandbox_run / "report.html").read_text().count(
        'class="thumb"'
    )
    assert 'data-plot="throughput"' in page and 'data-reason="dedup:sha256"' in page


def test_unreadable_shard_files_are_left_out_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    layout = RunLayout(tmp_path)
    StageStats("shards", seen=3, kept=3).save(layout.stats_file("shards"))
    write_text(layout.at("shards", "00000.parquet"), "not parquet")
    write_text(layout.at("shards", "00000.tar"), "not a tar")
    write_report(tmp_path)
    page = (tmp_path / "report.html").read_text()
    assert "no shards written yet" in page and "no image has been fetched yet" in page
    assert "00000.parquet is unreadable, left out of the report" in caplog.text
    assert "00000.tar: unreadable after 0 samples" in caplog.text


def test_a_near_duplicate_is_shown_with_the_kept_image_within_the_radius(tmp_path: Path) -> None:
    layout = RunLayout(tmp_path)
    with ShardWriter(layout.shards_dir, 0) as writer:
        for i, phash in enumerate((0, 2**64 - 1)):
            jpeg = photo_jpeg(40, 30, seed=i)
            image = ProcessedImage(jpeg, 40, 30, 40, 30, f"sha{i}", phash, "jpg")
            writer.write(Pair(url=f"http://127.0.0.1/{i}.jpg", caption=f"kept {i}"), image)
        for caption, phash in (("near", 0b111), ("far", 0xFF00FF)):  # 3 and 16 bits from 0
            pair = Pair(url=f"http://127.0.0.1/{caption}.jpg", caption=caption)
            pair.drop_reason, pair.phash = "neardup:phash", phash
            writer.write(pair, None)
    index = shard_index(layout)
    assert index is not None
    items = {i.caption: i for i in dropped_items(layout, ["neardup:phash"], index)["neardup:phash"]}
    assert items["near"].thumbnail.startswith("data:image/jpeg;base64,")
    assert "kept 0" in items["near"].note
    assert items["far"].thumbnail == "" and "duplicates" not in items["far"].note
