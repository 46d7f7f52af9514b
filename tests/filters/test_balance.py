from __future__ import annotations

import math
import random
from collections import Counter

import pytest

from filters.balance import (
    balance,
    coin,
    count_entries,
    entry_counts_per_pair,
    entry_probability,
    expected_size,
    keep_pair,
    keep_probability,
)
from filters.matching import QueryMatcher, match_pairs
from pipeline.record import Pair


def synthetic_pairs(n: int, seed: int = 0) -> list[Pair]:
    """A head entry on every pair, a few mid entries, a long tail of rare ones."""
    rng = random.Random(seed)
    pairs = []
    for i in range(n):
        matched = {"photo"}
        if rng.random() < 0.3:
            matched.add(f"mid{rng.randrange(10)}")
        if rng.random() < 0.2:
            matched.add(f"tail{rng.randrange(2000)}")
        pairs.append(Pair(url=f"http://img/{i}.jpg", caption=f"pair {i}", matched=sorted(matched)))
    return pairs


def selected(pairs: list[Pair], counts: Counter[str], t: int, seed: int) -> set[str]:
    return {p.uid for p in balance(pairs, counts, t, seed) if p.kept}


def test_entry_probability() -> None:
    assert entry_probability(0, 10) == 1.0
    assert entry_probability(10, 10) == 1.0
    assert entry_probability(40, 10) == 0.25


def test_coin_is_a_fixed_uniform_number() -> None:
    assert coin("u", "dog", 0) == coin("u", "dog", 0)
    assert coin("u", "dog", 0) != coin("u", "dog", 1)
    assert coin("u", "dog", 0) != coin("u", "cat", 0)
    draws = [coin(f"uid{i}", "dog", 0) for i in range(20_000)]
    assert all(0.0 <= d < 1.0 for d in draws)
    assert abs(sum(draws) / len(draws) - 0.5) < 0.01
    assert abs(sum(d < 0.1 for d in draws) / len(draws) - 0.1) < 0.01


def test_count_entries_only_kept_pairs() -> None:
    pairs = [
        Pair(url="http://a/1", caption="c1", matched=["dog", "cat"]),
        Pair(url="http://a/2", caption="c2", matched=["dog"]),
        Pair(url="http://a/3", caption="c3", matched=["dog"]).dropped("language:fr"),
    ]
    assert count_entries(pairs) == Counter({"dog": 2, "cat": 1})


def test_deterministic_and_independent_of_order_and_partitioning() -> None:
    pairs = synthetic_pairs(3000)
    counts = count_entries(pairs)
    chosen = selected(pairs, counts, 100, seed=5)
    assert chosen == selected(pairs, counts, 100, seed=5)
    assert chosen != selected(pairs, counts, 100, seed=6)
    shuffled = pairs[:]
    random.Random(1).shuffle(shuffled)
    assert selected(shuffled, counts, 100, seed=5) == chosen
    for k in (2, 3, 7):  # count per part, merge the counts, balance each part alone
        parts = [shuffled[i::k] for i in range(k)]
        merged: Counter[str] = Counter()
        for part in parts:
            merged.update(count_entries(part))
        assert merged == counts
        assert set().union(*(selected(part, merged, 100, 5) for part in parts)) == chosen


def test_kept_count_close_to_expected_size() -> None:
    pairs = synthetic_pairs(5000, seed=2)
    counts = count_entries(pairs)
    t = 150
    expected = expected_size(entry_counts_per_pair(pairs, counts), t)
    chances = [keep_probability(c, t) for c in entry_counts_per_pair(pairs, counts)]
    variance = sum(p * (1 - p) for p in chances)
    kept = len(selected(pairs, counts, t, seed=0))
    assert abs(kept - expected) < 4 * math.sqrt(variance) + 1
    assert kept < len(pairs) / 2


def test_rare_entries_always_kept_head_capped() -> None:
    pairs = synthetic_pairs(5000, seed=3)
    counts = count_entries(pairs)
    t = 100
    out = list(balance(pairs, counts, t, seed=0))
    for pair in out:
        if any(counts[e] <= t for e in pair.matched):
            assert pair.kept  # a pair with any entry under the threshold is always kept
        if not pair.kept:
            assert pair.drop_reason == "balance:over_threshold"
    kept_counts = count_entries(out)
    only_head = sum(p.kept and p.matched == ["photo"] for p in out)
    assert counts["photo"] == 5000
    assert only_head == pytest.approx(t * 0.56, rel=0.35)  # ~56% of pairs match only "photo"
    assert kept_counts["photo"] < 0.5 * counts["photo"]
    for mid in (f"mid{i}" for i in range(10)):
        assert counts[mid] > t
        assert kept_counts[mid] < counts[mid]


def test_keep_pair_rule() -> None:
    counts = {"rare": 3, "head": 1_000_000}
    assert keep_pair("any", ["rare"], counts, 10, 0)
    assert keep_pair("any", ["unseen"], counts, 10, 0)
    assert not keep_pair("any", [], counts, 10, 0)
    kept = sum(keep_pair(f"u{i}", ["head"], counts, 10, 0) for i in range(100_000))
    assert kept < 10  # p = 1e-5: about one pair in 100,000


def test_balance_after_real_matching(alt_texts: list[str], vocab_queries: list[str]) -> None:
    matcher = QueryMatcher(vocab_queries)
    pairs = [Pair(url=f"http://img/{i}.jpg", caption=text) for i, text in enumerate(alt_texts)]
    matched = list(match_pairs(pairs, matcher))
    counts = count_entries(matched)
    t = 50
    out = list(balance(matched, counts, t, seed=0))
    kept = sum(p.kept for p in out)
    expected = expected_size(entry_counts_per_pair(matched, counts), t)
    assert abs(kept - expected) < 0.05 * expected
    kept_counts = count_entries(out)
    assert counts["of"] > 10 * t and kept_counts["of"] < counts["of"]
    assert kept < 0.9 * sum(p.kept for p in matched)
    assert all(kept_counts[e] == c for e, c in counts.items() if c <= t)
    print(f"real alts: {sum(p.kept for p in matched)} matched, {kept} kept at t={t}")
