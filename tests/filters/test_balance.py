from __future__ import annotations

import hashlib
import itertools
import math
import random
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from core.record import Pair
from filters.balance import (
    EntryIndex,
    balance,
    balance_mask,
    blake64,
    coin,
    coin_values,
    count_entries,
    count_matches,
    entry_counts_per_pair,
    entry_probability,
    expected_size,
    keep_pair,
    keep_probability,
    repeated_in_row,
    uid_words,
)
from filters.matching import QueryMatcher, match_pairs


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
    uids = pa.array([hashlib.md5(f"uid{i}".encode()).hexdigest() for i in range(20_000)])
    draws = coin_values(uid_words(uids), blake64(["dog"] * len(uids)), 0)
    assert all(0.0 <= d < 1.0 for d in draws)
    assert abs(draws.mean() - 0.5) < 0.01
    assert abs((draws < 0.1).mean() - 0.1) < 0.01
    assert [coin(u, "dog", 0) for u in uids.to_pylist()[:50]] == draws[:50].tolist()
    other = coin_values(uid_words(uids), blake64(["cat"] * len(uids)), 0)
    assert abs(np.corrcoef(draws, other)[0, 1]) < 0.03  # two entries' coins are unrelated


def test_uid_words_reads_md5_hex_and_hashes_the_rest() -> None:
    digests = [hashlib.md5(str(i).encode()).hexdigest() for i in range(300)]
    words = uid_words(pa.array(digests))
    assert words.dtype == np.uint64
    assert words.tolist() == [int(d[:16], 16) for d in digests]
    odd = ["XYZ", None, "0" * 31 + "g", digests[0].upper(), "", digests[1] + "0", "é" * 16]
    mixed = uid_words(pa.array([digests[0], *odd, digests[1]]))
    assert mixed[0] == int(digests[0][:16], 16) and mixed[-1] == int(digests[1][:16], 16)
    assert mixed[1:-1].tolist() == blake64([text or "" for text in odd]).tolist()
    column = pa.array([*digests, *odd])
    whole = uid_words(column).tolist()
    assert uid_words(column.slice(7)).tolist() == whole[7:]
    assert uid_words(pa.chunked_array([column[:5], column[5:]])).tolist() == whole
    assert uid_words(column.cast(pa.large_string())).tolist() == whole
    assert uid_words(pa.chunked_array([], type=pa.string())).tolist() == []


def test_entry_index_ids_and_hashes() -> None:
    index = EntryIndex(["dog", "cat", "T-shirt", "dog"])
    assert len(index) == 4
    assert index.hashes.tolist() == blake64(["dog", "cat", "T-shirt", "dog"]).tolist()
    values = pa.array(["cat", "bird", None, "dog", "T-shirt"])
    assert index.ids(values).tolist() == [1, -1, -1, 0, 2]
    assert index.ids(values.dictionary_encode()).tolist() == [1, -1, -1, 0, 2]
    assert index.ids(pa.chunked_array([values[:2], values[2:]])).tolist() == [1, -1, -1, 0, 2]
    assert index.ids(values.cast(pa.large_string())).tolist() == [1, -1, -1, 0, 2]
    sub = index.subset(np.array([2, 1]))
    assert sub.ids(values).tolist() == [1, -1, -1, -1, 0]
    assert sub.hashes.tolist() == index.hashes[[2, 1]].tolist()


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
    uids = pa.array([f"u{i}" for i in range(100_000)])
    matched = pa.array([["head"]] * len(uids), type=pa.list_(pa.string()))
    index = EntryIndex(list(counts))
    kept = balance_mask(uids, matched, np.array([3, 1_000_000]), index, 10, 0)
    assert kept.sum() < 10  # p = 1e-5: about one pair in 100,000
    picked = [f"u{i}" for i in np.flatnonzero(kept)]
    assert all(keep_pair(uid, ["head"], counts, 10, 0) for uid in picked)
    assert not any(keep_pair(f"u{i}", ["head"], counts, 10, 0) for i in range(200) if not kept[i])


def columnar(pairs: list[Pair]) -> tuple[pa.Array, pa.ListArray]:
    uids = pa.array([p.uid for p in pairs])
    return uids, pa.array([p.matched for p in pairs], type=pa.list_(pa.string()))


def reference_mask(pairs: list[Pair], counts: Counter[str], t: int, seed: int) -> list[bool]:
    """Algorithm 1 written out pair by pair, entry by entry, with the scalar coin."""
    return [
        any(coin(p.uid, e, seed) < entry_probability(counts.get(e, 0), t) for e in p.matched)
        for p in pairs
    ]


def test_count_matches_equals_count_entries() -> None:
    pairs = synthetic_pairs(3000, seed=4)
    counts = count_entries(pairs)
    index = EntryIndex([*sorted(counts), "never"])
    _, matched = columnar(pairs)
    got = count_matches(matched, index)
    assert got.dtype == np.int64 and len(got) == len(index)
    assert dict(zip(index.values.to_pylist(), got.tolist(), strict=True)) == {**counts, "never": 0}
    mask = np.arange(len(pairs)) % 3 == 0
    some = count_entries(p for i, p in enumerate(pairs) if mask[i])
    assert count_matches(matched, index, mask).tolist() == [
        some.get(e, 0) for e in index.values.to_pylist()
    ]


def test_count_matches_rows_count_once_per_entry() -> None:
    index = EntryIndex(["a", "b", "c"])
    matched = pa.array(
        [["a", "b", "a"], [], None, ["c", "x", "c", "c"], ["b"], ["a", "a"]],
        type=pa.list_(pa.string()),
    )
    assert count_matches(matched, index).tolist() == [2, 2, 1]
    assert count_matches(matched.slice(3), index).tolist() == [1, 1, 1]
    chunked = pa.chunked_array([matched[:2], matched[2:4], matched[4:]])
    assert count_matches(chunked, index).tolist() == [2, 2, 1]
    mask = np.array([False, True, True, True, False, False])
    assert count_matches(chunked, index, mask).tolist() == [0, 0, 1]


def test_balance_mask_equals_algorithm_1_pair_by_pair() -> None:
    pairs = synthetic_pairs(4000, seed=6)
    pairs.append(Pair(url="http://img/none.jpg", caption="none", matched=[]))
    pairs.append(Pair(url="http://img/new.jpg", caption="new", matched=["photo", "unseen"]))
    counts = count_entries(pairs)
    index = EntryIndex(sorted(counts))
    uids, matched = columnar(pairs)
    known = count_matches(matched, index)
    for t, seed in ((100, 0), (100, 9), (30, 1)):
        mask = balance_mask(uids, matched, known, index, t, seed)
        assert mask.dtype == bool and mask.tolist() == reference_mask(pairs, counts, t, seed)
        assert mask[-1] and not mask[-2]
        assert mask.tolist() == [p.kept for p in balance(pairs, counts, t, seed)]


def test_entry_numbers_count_and_balance_like_the_entries() -> None:
    """The stage carries matched entries as numbers in the index: same counts, same mask."""
    pairs = synthetic_pairs(3000, seed=8)
    index = EntryIndex(sorted(count_entries(pairs)))
    uids, matched = columnar(pairs)
    numbers = index.ids(pc.list_flatten(matched)).astype(np.int32)
    codes = pa.ListArray.from_arrays(matched.offsets, pa.array(numbers))
    counts = count_matches(matched, index)
    assert count_matches(codes, index).tolist() == counts.tolist()
    for t, seed in ((50, 0), (20, 3)):
        expected = balance_mask(uids, matched, counts, index, t, seed)
        assert balance_mask(uids, codes, counts, index, t, seed).tolist() == expected.tolist()
    head = index.subset(np.array([5, 2, 9]))
    assert head.ids(pa.array([2, 9, 5, 7, -1, 10_000])).tolist() == [1, 2, 0, -1, -1, -1]


@pytest.mark.parametrize("parts", [1, 2, 4])
def test_balance_mask_independent_of_partitioning(parts: int) -> None:
    pairs = synthetic_pairs(6000, seed=8)
    uids, matched = columnar(pairs)
    index = EntryIndex(sorted(count_entries(pairs)))
    whole = balance_mask(uids, matched, count_matches(matched, index), index, 120, seed=3)
    bounds = np.linspace(0, len(pairs), parts + 1).astype(int).tolist()
    pieces = [(a, b - a) for a, b in itertools.pairwise(bounds)]
    counts = np.sum([count_matches(matched.slice(a, n), index) for a, n in pieces], axis=0)
    assert np.array_equal(counts, count_matches(matched, index))
    masks = [
        balance_mask(uids.slice(a, n), matched.slice(a, n), counts, index, 120, seed=3)
        for a, n in pieces
    ]
    assert np.array_equal(np.concatenate(masks), whole)
    chunked = balance_mask(
        pa.chunked_array([uids.slice(a, n) for a, n in pieces]),
        pa.chunked_array([matched.slice(a, n) for a, n in pieces]),
        counts,
        index,
        120,
        3,
    )
    assert np.array_equal(chunked, whole)
    rng = np.random.default_rng(parts)
    order = rng.permutation(len(pairs))  # any order: the same pairs selected
    shuffled = balance_mask(uids.take(order), matched.take(order), counts, index, 120, 3)
    assert np.array_equal(shuffled, whole[order])


def test_balance_mask_keep_rate_matches_expected_size() -> None:
    rng = np.random.default_rng(0)
    rows, entries, t = 100_000, 2000, 300
    weights = 1.0 / np.arange(1, entries + 1)
    lengths = rng.integers(1, 4, rows)
    picks = rng.choice(entries, lengths.sum(), p=weights / weights.sum())
    names = pa.array([f"e{i}" for i in range(entries)])
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    matched = pa.ListArray.from_arrays(pa.array(offsets), names.take(pa.array(picks)))
    halves = rng.integers(0, 2**63, (rows, 2)).tolist()
    uids = pa.array([f"{a:016x}{b:016x}" for a, b in halves])  # like md5 hex digests
    index = EntryIndex(names.to_pylist())
    counts = count_matches(matched, index)
    mask = balance_mask(uids, matched, counts, index, t, seed=1)
    per_pair = [[int(counts[int(e[1:])]) for e in set(row)] for row in matched.to_pylist()]
    chances = np.array([keep_probability(c, t) for c in per_pair])
    expected = expected_size(per_pair, t)
    assert expected == pytest.approx(chances.sum())
    sigma = math.sqrt(float((chances * (1 - chances)).sum()))
    assert abs(int(mask.sum()) - expected) < 4 * sigma + 1
    kept_counts = count_matches(matched, index, mask)
    with_head = np.array(["e0" in row for row in matched.to_pylist()])
    head_expected = chances[with_head].sum()  # pairs kept that hold the head entry
    head_sigma = math.sqrt(float((chances * (1 - chances))[with_head].sum()))
    assert abs(kept_counts[0] - head_expected) < 4 * head_sigma + 1
    assert kept_counts[0] < 0.7 * counts[0]
    assert np.array_equal(kept_counts[counts <= t], counts[counts <= t])  # the tail is whole


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


def test_repeated_in_row_against_sets() -> None:
    rng = np.random.default_rng(5)
    lengths = np.concatenate([rng.integers(0, 4, 5000), [40, 0, 25]])  # a few long lists
    rows = np.repeat(np.arange(len(lengths)), lengths)
    ids = rng.integers(0, 6, len(rows))
    expected: list[bool] = []
    seen: set[int] = set()
    row = -1
    for r, i in zip(rows.tolist(), ids.tolist(), strict=True):
        if r != row:
            seen, row = set(), r
        expected.append(i in seen)
        seen.add(i)
    assert repeated_in_row(ids, rows).tolist() == expected
    assert repeated_in_row(ids[:0], rows[:0]).tolist() == []
