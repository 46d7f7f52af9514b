"""The curation stage: its passes in their order, on hand-made candidates with known fates,
and the same selection for any partitioning of the candidates and any number of workers."""

from __future__ import annotations

import random
from pathlib import Path

import pyarrow.compute as pc

from core.config import PipelineConfig, load_config
from core.io import mark_done, read_json, read_table
from core.layout import RunLayout
from core.parts import PartWriter
from core.record import Pair, pairs_to_table
from pipeline.stages.curate import grouping_passes, run_curate

ENTRIES = ["red", "circle", "red circle", "garden"]


def candidates() -> list[Pair]:
    good = "a red circle painted on the wall of the old garden"
    return [
        Pair(url="http://a.test/1.jpg", caption=good),
        Pair(url="http://a.test/1.jpg", caption=good, page_url="http://a.test/other"),  # uid
        Pair(url="http://a.test/1.jpg", caption="a red circle seen from far away"),  # url
        Pair(url="http://a.test/2.jpg", caption="IMG_1234.jpg"),
        Pair(url="http://a.test/3.jpg", caption="un cercle rouge dessiné dans le jardin red"),
        Pair(url="http://a.test/4.jpg", caption="a blue square on a white sheet of paper"),
        Pair(url="http://a.test/5.jpg", caption=good),  # same caption, other image
    ]


def crawled(workdir: Path, pairs: list[Pair], part_rows: int, *extra: str) -> PipelineConfig:
    """A run folder whose crawl left `pairs` in parts of `part_rows`, with a query list."""
    queries = workdir / "queries.txt"
    workdir.mkdir(parents=True, exist_ok=True)
    queries.write_text("\n".join(ENTRIES) + "\n")
    config = load_config(
        None,
        [f"workdir='{workdir}'", f"curate.queries='{queries}'", f"part_rows={part_rows}", *extra],
    )
    layout = RunLayout(workdir)
    with PartWriter(layout.candidates, "part-00000", part_rows) as parts:
        parts.write(pairs_to_table(pairs))
    mark_done(layout.crawl_dir, "crawl")
    return config


def outcome(config: PipelineConfig) -> dict[tuple[str, str, str | None], str]:
    """(url, caption, page_url) -> drop reason, or "kept", for every candidate."""
    layout = RunLayout(config.root)
    rows = read_table(layout.selected).to_pylist() + read_table(layout.dropped).to_pylist()
    return {(r["url"], r["caption"], r["page_url"]): r["drop_reason"] or "kept" for r in rows}


def test_every_candidate_gets_its_reason(tmp_path: Path) -> None:
    config = crawled(tmp_path, candidates(), 100, "executor.workers=1")
    stats = run_curate(config)
    reasons = outcome(config)
    assert len(reasons) == 7
    assert sorted(reasons.values()) == sorted(
        ["kept", "kept", "dedup:uid", "dedup:url", "text:filename", "language:fr", "match:no_entry"]
    )
    assert reasons[("http://a.test/4.jpg", "a blue square on a white sheet of paper", None)] == (
        "match:no_entry"
    )
    layout = RunLayout(config.root)
    selected = read_table(layout.selected)
    assert selected.column("language").to_pylist() == ["en", "en"]
    assert all(selected.column("matched").to_pylist())
    assert selected.column("uid").to_pylist() == sorted(selected.column("uid").to_pylist())
    assert (stats.seen, stats.kept) == (7, 2)
    # Counted after dedup and language: one pair per image URL, English only.
    counts = read_json(layout.curate_dir + "/entry_counts.json")
    assert counts["matched"]["red circle"] == 2 and counts["matched"]["circle"] == 2
    assert not Path(layout.curate_work).exists()


def test_dedup_keys_choose_the_dedup_steps(tmp_path: Path) -> None:
    config = crawled(tmp_path, candidates(), 100, "curate.dedup_keys=['uid', 'caption']")
    run_curate(config)
    found = sorted(r for r in outcome(config).values() if r.startswith("dedup"))
    assert found == ["dedup:caption", "dedup:uid"]


def test_grouping_passes_follow_the_dedup_keys() -> None:
    assert grouping_passes(("url", "uid"), True) == [
        ("caption", ("uid", "language")), ("url", ("url",))
    ]  # fmt: skip
    assert grouping_passes(("caption", "url"), False) == [
        ("caption", ("caption",)), ("url", ("url",))
    ]  # fmt: skip
    assert grouping_passes(("url", "caption"), True) == [
        ("caption", ("language",)), ("url", ("url",)), ("caption", ("caption",))
    ]  # fmt: skip


def synthetic(count: int) -> list[Pair]:
    """Pairs with duplicate URLs and captions and a skewed entry distribution."""
    chooser = random.Random(7)
    words = ["red", "circle", "garden", "blue", "square"]
    pairs = []
    for i in range(count):
        caption = " ".join(chooser.choice(words) for _ in range(4)) + f" seen in the photo {i % 97}"
        pairs.append(Pair(url=f"http://img.test/{i % 400}.jpg", caption=caption))
    copies = [Pair(url=p.url, caption=p.caption, page_url="http://b.test/") for p in pairs[:50]]
    return pairs + copies


def test_any_partitioning_and_worker_count_selects_the_same_pairs(tmp_path: Path) -> None:
    pairs = synthetic(1200)
    runs = []
    for part_rows, workers in ((1200, 1), (600, 2), (300, 2)):  # 1, 2 and 4 parts
        config = crawled(
            tmp_path / f"run-{part_rows}", pairs, part_rows, f"executor.workers={workers}",
            "curate.language_engine='none'", "curate.balance_threshold=40",
        )  # fmt: skip
        stats = run_curate(config)
        runs.append((outcome(config), stats.to_dict()["dropped"], stats.counts["buckets"]))
    assert runs[0][0] == runs[1][0] == runs[2][0]
    assert runs[0][1] == runs[1][1] == runs[2][1]
    reasons = set(runs[0][0].values())
    assert {"kept", "dedup:url", "dedup:uid", "balance:over_threshold"} <= reasons
    selected = read_table(RunLayout(tmp_path / "run-300").selected)
    assert pc.count_distinct(selected.column("url")).as_py() == selected.num_rows


def test_declared_tracker_pixels_are_dropped_before_download(tmp_path: Path) -> None:
    caption = "a red circle painted on the wall of the old garden"
    pairs = [
        Pair(url="http://a.test/pixel.gif", caption=caption, declared_width=1, declared_height=1),
        Pair(url="http://a.test/big.jpg", caption=caption, declared_width=640, declared_height=1),
        Pair(url="http://a.test/photo.jpg", caption=caption, declared_width=640),
    ]
    config = crawled(tmp_path, pairs, 100, "curate.language_engine='none'")
    run_curate(config)
    reasons = outcome(config)
    assert reasons[("http://a.test/pixel.gif", caption, None)] == "image:declared_tiny"
    assert reasons[("http://a.test/big.jpg", caption, None)] == "image:declared_tiny"
    assert reasons[("http://a.test/photo.jpg", caption, None)] == "kept"
