"""The text-side stages composed in the runner's order on real alt texts."""

from __future__ import annotations

from core.config import CurateConfig
from core.record import Pair
from core.stats import StageStats, tally
from filters.balance import balance, count_entries
from filters.dedup import dedup
from filters.language import detect_languages, filter_language, kept_captions
from filters.matching import QueryMatcher, match_pairs
from filters.text import filter_text


def test_text_side_chain(alt_texts: list[str], vocab_queries: list[str]) -> None:
    config = CurateConfig(balance_threshold=5)
    texts = alt_texts[:300]
    # Pairs 280-299 reuse the URLs of pairs 0-19 with other captions; pairs 290-299 repeat
    # pairs 280-289 exactly (same caption and URL, hence the same uid).
    pairs = [Pair(url=f"http://img/{i % 280}.jpg", caption=t) for i, t in enumerate(texts)]
    pairs += [Pair(url=p.url, caption=p.caption) for p in pairs[280:290]]
    # candidates -> text rules -> exact dedup on uid -> query matching
    unique = dedup(filter_text(pairs, config), ("uid",))
    matched = list(match_pairs(unique, QueryMatcher(vocab_queries)))
    # -> language, once per distinct kept caption -> exact dedup on url
    detections = detect_languages(kept_captions(matched), workers=1)
    english = list(dedup(filter_language(matched, config, detections), ("url",)))
    # -> balancing, counted after the language filter and url dedup
    counts = count_entries(p for p in english if p.kept)
    stats = StageStats("curate")
    out = list(tally(balance(english, counts, config.balance_threshold, seed=0), stats))

    assert [p.uid for p in out] == [p.uid for p in pairs]  # every pair, in order
    assert stats.seen == 310 and stats.kept + sum(stats.dropped.values()) == 310
    stages = {reason.split(":")[0] for reason in stats.dropped}
    assert stages == {"text", "dedup", "match", "language", "balance"}
    # uid dedup drops the exact repeats that passed the text rules, and nothing else.
    passed_text = [p for p in filter_text(pairs, config) if p.kept]
    assert 0 < stats.dropped["dedup:uid"] == len(passed_text) - len({p.uid for p in passed_text})
    # url dedup runs after the filters, so it only sees pairs every filter kept: a shared
    # URL loses a pair only where both its captions pass text, matching and language
    # (two of the 20 shared URLs on these texts); one survivor per URL.
    filtered = [p for p in english if p.kept or p.drop_reason == "dedup:url"]
    assert 0 < stats.dropped["dedup:url"] == len(filtered) - len({p.url for p in filtered})
    for pair in out:
        if pair.kept:
            assert pair.language == "en" and pair.matched
    assert 0 < stats.kept < 200
