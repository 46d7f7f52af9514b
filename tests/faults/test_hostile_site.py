"""The hostile site crawled, curated and sharded by the real CLI, each stage a child process.

Only the hostile port is allowed (`net.allow_private=["127.0.0.1:<port>"]`): the outside
port, reached by links, redirects, robots.txt and image URLs, must record no request.
Every fault must end as a counted reason, every good image in a shard, with each stage's
peak memory under a bound far below what the bombs would take if they were expanded
(the gzip bomb is 512 MiB, the PNG 4.8 GB of pixels), and the time under a safety cap
derived from the configured per-request timeouts.
"""

from __future__ import annotations

import dataclasses
import json
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from core.config import CrawlConfig
from core.io import read_pairs
from tests.faults.common import StageRun, run_stage, stats
from tests.faults.conftest import FaultLine
from tests.faults.hostile import FAULTS, GOOD_IMAGES, MANY_IMAGES, HostileSite

TIMEOUT = 4.0  # crawl.timeout and shards.timeout, seconds per attempt
RETRIES = 2  # so without a whole-fetch deadline a tarpit would hold a fetch 12 s and more
DEADLINE = 3.0  # crawl.deadline and shards.deadline: a whole fetch, retries included
# The tarpit ends at the per-attempt timeout or at the whole fetch's deadline.
SLOW_REASONS = ("timeout", "deadline_exceeded")
PEAK_RSS_MIB = 600  # per process; the gzip bomb alone would need 512 more than a start-up
# A safety cap, not a speed target: each stage waits out a tarpit (attempts x timeout)
# at most a few times over, plus start-up on a loaded machine.
STAGE_CAP_S = 120.0


def hostile_settings(site: HostileSite, queries: Path) -> list[str]:
    return [
        f'net.allow_private=["127.0.0.1:{site.port}"]',
        "crawl.per_host_delay=0",
        f"crawl.timeout={TIMEOUT}",
        f"crawl.retries={RETRIES}",
        "crawl.backoff=0.05",
        *deadlines(),
        f"shards.timeout={TIMEOUT}",
        f"shards.retries={RETRIES}",
        "shards.min_image_side=0",
        "shards.min_image_bytes=0",
        'curate.language_engine="none"',
        f'curate.queries="{queries}"',
        "executor.workers=1",
    ]


def deadlines() -> list[str]:
    """The whole-fetch deadlines, where the config has them."""
    fields = {f.name for f in dataclasses.fields(CrawlConfig)}
    if "deadline" not in fields:
        return []
    return [f"crawl.deadline={DEADLINE}", f"shards.deadline={DEADLINE}"]


@dataclass
class HostileRun:
    site: HostileSite
    workdir: Path
    runs: dict[str, StageRun]

    def stats(self, stage: str) -> dict[str, Any]:
        return stats(self.workdir, stage)

    def rows(self) -> dict[str, dict[str, Any]]:
        """Every row of the shard parquets, by image URL."""
        table = pq.read_table(sorted((self.workdir / "shards").glob("*.parquet"))[0])
        return {row["url"]: row for row in table.to_pylist()}

    def good_urls(self) -> list[str]:
        """The good images that must reach a shard: the index page's, the one of the page
        of 100,000 <img>, and the invalid UTF-8 page's unless curation dropped its text."""
        site = self.site
        good = [site.url(f"/img/good-{n}.png") for n in range(GOOD_IMAGES)] + [site.url("/m.png")]
        utf8 = site.url(f"/img/good-{GOOD_IMAGES}.png")
        return good + ([utf8] if utf8 in self.rows() else [])

    def captions(self) -> list[str]:
        texts = []
        for tar in sorted((self.workdir / "shards").glob("*.tar")):
            with tarfile.open(tar) as archive:
                for member in archive.getmembers():
                    if member.name.endswith(".txt"):
                        handle = archive.extractfile(member)
                        assert handle is not None
                        texts.append(handle.read().decode("utf-8"))
        return texts


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostileRun]:
    root = tmp_path_factory.mktemp("hostile")
    with HostileSite() as site:
        seeds, queries = root / "seeds.txt", root / "queries.txt"
        seeds.write_text("\n".join(site.seeds()) + "\n")
        queries.write_text("harbour\nphoto\n")
        settings = hostile_settings(site, queries)
        workdir = root / "run"
        runs = {}
        for stage, extra in (("crawl", ("--seeds", str(seeds))), ("curate", ()), ("shards", ())):
            runs[stage] = run_stage(stage, workdir, settings, STAGE_CAP_S, extra)
            assert runs[stage].rc == 0, runs[stage].stderr[-3000:]
        yield HostileRun(site, workdir, runs)


def test_the_outside_port_records_no_request(hostile_run: HostileRun):
    assert dict(hostile_run.site.outside.hits) == {}
    # ...though it was linked, redirected to (robots.txt too) and used as an image URL
    hits = hostile_run.site.hits
    assert hits["/robots.txt"] == 1 and hits["/redirect-out"] >= 1
    assert hits["/img/redirect-out.jpg"] >= 1


def test_every_page_fault_is_a_counted_reason(hostile_run: HostileRun):
    crawl = hostile_run.stats("crawl")
    assert crawl["seen"] == crawl["kept"] + sum(crawl["dropped"].values())
    dropped = crawl["dropped"]
    assert sum(dropped.get(r, 0) for r in SLOW_REASONS) >= 1  # the tarpit
    assert dropped["connection_error"] >= 2  # the reset and the lying Content-Length
    assert dropped["too_large"] >= 1  # the gzip bomb
    # 127.0.0.1:OUT, localhost:OUT, 0x7f000001:OUT, [::ffff:127.0.0.1]:OUT, the redirect
    assert dropped["private_address"] >= 5
    assert dropped["max_depth"] >= 1  # the endless calendar ends
    calendar = sum(n for path, n in hostile_run.site.hits.items() if path.startswith("/cal"))
    assert 1 <= calendar <= 2 * 6 + 1  # at most two directions x max_depth months
    assert 1 <= hostile_run.site.hits["/tarpit"] <= RETRIES + 1  # no attempt beyond


def test_a_page_of_100000_images_becomes_one_pair(hostile_run: HostileRun):
    assert hostile_run.stats("crawl")["counts"]["images_found"] >= MANY_IMAGES
    curate = hostile_run.stats("curate")
    assert curate["dropped"]["dedup:url"] >= MANY_IMAGES - 1
    many = [url for url in hostile_run.rows() if url.endswith("/m.png")]
    assert len(many) == 1


def test_invalid_utf8_becomes_replacement_characters(hostile_run: HostileRun):
    """The page is parsed, its alt text decoded with U+FFFD for each bad sequence; then the
    pair reaches a shard as it is, or curation drops it under a counted text reason."""
    caption = "a photo of the \ufffd\ufffd harbour \ufffd( at dusk"
    found = [p.caption for p in read_pairs(hostile_run.workdir / "crawl" / "parts")]
    assert caption in found
    curate = hostile_run.stats("curate")
    assert curate["seen"] == curate["kept"] + sum(curate["dropped"].values())
    in_shards = [c for c in hostile_run.captions() if "at dusk" in c]
    text_drops = sum(n for r, n in curate["dropped"].items() if r.startswith("text:"))
    assert in_shards == [caption] or (not in_shards and text_drops >= 1)


def test_every_image_fault_is_a_counted_reason(hostile_run: HostileRun):
    rows = hostile_run.rows()
    site = hostile_run.site
    good = hostile_run.good_urls()
    for url in good:
        assert rows[url]["status"] == "success", rows[url]
    shards = hostile_run.stats("shards")
    for fault in (f for f in FAULTS if f.stage == "shards"):
        row = rows[site.url(fault.path)]
        assert row["status"] != "success", fault
        expected = SLOW_REASONS if fault.expect == "timeout" else (fault.expect,)
        counted = sum(
            shards["counts"].get(f"download:{r}", 0) + shards["dropped"].get(r, 0) for r in expected
        )
        assert counted >= 1, (fault, shards)
    giga = rows[site.url("/img/giga.png")]
    assert giga["status"] == "failed_to_decode"
    assert "decompression bomb" in giga["error_message"]
    assert shards["kept"] == len(good)
    assert shards["seen"] == shards["kept"] + sum(shards["dropped"].values())


def test_the_tarpits_are_left_by_the_deadline(hostile_run: HostileRun):
    """From the first byte of the first attempt to the last attempt's end, each tarpit
    held the client no longer than the deadline allows (with slack for a loaded machine)."""
    allowed = (DEADLINE if deadlines() else (RETRIES + 1) * (TIMEOUT + 1)) + 6.0
    spans = hostile_run.site.tarpit_spans
    assert set(spans) == {"/tarpit", "/img/tarpit.jpg"}
    for path, attempts in spans.items():
        held = max(end for _, end in attempts) - min(start for start, _ in attempts)
        assert held < allowed, (path, attempts)


def test_memory_and_time_stay_bounded(hostile_run: HostileRun, fault_report: list[FaultLine]):
    for run in hostile_run.runs.values():
        assert 0 < run.peak_rss_mib < PEAK_RSS_MIB, run
        assert run.seconds < STAGE_CAP_S, run
    report_lines(hostile_run, fault_report)


def report_lines(hostile_run: HostileRun, lines: list[FaultLine]) -> None:
    crawl, curate, shards = (hostile_run.stats(s) for s in ("crawl", "curate", "shards"))
    reasons = {
        "crawl": crawl["dropped"],
        "curate": curate["dropped"],
        "shards": {**shards["dropped"], **shards["counts"]},
    }
    outside = sum(hostile_run.site.outside.hits.values())
    for fault in FAULTS:
        run = hostile_run.runs[fault.stage]
        counted = reasons[fault.stage]
        names = SLOW_REASONS if fault.expect == "timeout" else (fault.expect,)
        n = sum(counted.get(r, 0) + counted.get(f"download:{r}", 0) for r in names)
        survived = f"{'|'.join(names)} x{n}"
        if fault.path == "/robots.txt":
            survived = f"refused; outside hits {outside}"
        elif fault.expect == "kept":
            survived = "parsed, U+FFFD in its alt"
        lines.append(
            FaultLine(fault.name, fault.path, survived, "nothing", run.peak_rss_mib, run.seconds)
        )
    last = hostile_run.runs["shards"]
    good = f"{shards['kept']} good images in shards"
    lost = f"{len(hostile_run.good_urls()) - shards['kept']}"
    lines.append(FaultLine("good images", "/img/good-N.png", good, lost, last.peak_rss_mib,
                           last.seconds))  # fmt: skip
    hits = json.dumps(dict(hostile_run.site.outside.hits))
    lines.append(FaultLine("outside port", "every request recorded", hits, "nothing", 0.0, 0.0))


def test_outputs_are_readable_by_webdataset_layout(hostile_run: HostileRun):
    shards_dir = hostile_run.workdir / "shards"
    tar = sorted(shards_dir.glob("*.tar"))[0]
    with tarfile.open(tar) as archive:
        names = archive.getnames()
    keys = {name.split(".")[0] for name in names}
    assert len(keys) == hostile_run.stats("shards")["kept"] >= GOOD_IMAGES + 1
    for key in keys:
        assert {f"{key}.txt", f"{key}.json"} <= set(names)
    assert not list(shards_dir.rglob("*.tmp*"))  # nothing half-written is visible
