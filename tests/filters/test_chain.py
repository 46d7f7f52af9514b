"""The text-side stages composed in the runner's order on real alt texts."""

from __future__ import annotations

from filters.balance import balance, count_entries
from filters.dedup import dedup
from filters.language import detect_languages, filter_language, kept_captions
from filters.matching import QueryMatcher, match_pairs
from filters.text import filter_text
from pipeline.config import CurateConfig
from pipeline.record import Pair
from pipeline.stats import StageStats, tally


def test_text_side_chain(alt_texts: list[str], vocab_queries: list[str]) -> None:
    config = CurateConfig(balance_threshold=5, workers=1)
    texts = alt_texts[:300]
    pairs = [Pair(url=f"http://img/{i % 280}.jpg", caption=t) for i, t in enumerate(texts)]
    # candidates -> text rules -> exact dedup -> query matching
    unique = dedup(filter_text(pairs, config), config.dedup_keys)
    matched = list(match_pairs(unique, QueryMatcher(vocab_queries)))
    # -> language, once per distinct kept caption
    detections = detect_languages(kept_captions(matched), workers=config.workers)
    english = list(filter_language(matched, config, detections))
    # -> balancing, counted after the language filter
    counts = count_entries(english)
    stats = StageStats("curate")
    out = list(tally(balance(english, counts, config.balance_threshold, seed=0), stats))

    assert [p.caption for p in out] == texts  # every pair comes out, in order
    assert stats.seen == 300 and stats.kept + sum(stats.dropped.values()) == 300
    stages = {reason.split(":")[0] for reason in stats.dropped}
    assert stages == {"text", "dedup", "match", "language", "balance"}
    passed_text = [p for p in filter_text(pairs, config) if p.kept]
    repeats = len(passed_text) - len({p.url for p in passed_text})
    assert 0 < stats.dropped["dedup:url"] == repeats
    for pair in out:
        if pair.kept:
            assert pair.language == "en" and pair.matched
    assert 0 < stats.kept < 200
