"""The curation chain in its order, on hand-made candidates with known fates."""

from __future__ import annotations

from pipeline.config import load_config
from pipeline.record import Pair
from pipeline.stages.curate import curate

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


def reasons(pairs: list[Pair]) -> list[str | None]:
    return [p.drop_reason for p in pairs]


def test_every_candidate_gets_its_reason() -> None:
    config = load_config(None, ["curate.workers=1"])
    pairs, matched = curate(candidates(), config, ENTRIES)
    by_caption_and_url = {(p.caption, p.url): p for p in pairs}
    assert len(pairs) == 7
    assert sorted(r or "kept" for r in reasons(pairs)) == sorted(
        ["kept", "kept", "dedup:uid", "dedup:url", "text:filename",
         "language:fr", "match:no_entry"]
    )  # fmt: skip
    kept = [p for p in pairs if p.kept]
    assert all(p.language == "en" and p.matched for p in kept)
    blue = by_caption_and_url[("a blue square on a white sheet of paper", "http://a.test/4.jpg")]
    assert blue.drop_reason == "match:no_entry"
    # Counted after dedup and language: one pair per image URL, English only.
    assert matched["red circle"] == 2 and matched["circle"] == 2


def test_dedup_keys_choose_the_dedup_steps() -> None:
    config = load_config(None, ["curate.workers=1", "curate.dedup_keys=['uid', 'caption']"])
    pairs, _ = curate(candidates(), config, ENTRIES)
    found = sorted(r for r in reasons(pairs) if r and r.startswith("dedup"))
    assert found == ["dedup:caption", "dedup:uid"]
