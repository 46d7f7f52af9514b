"""MetaCLIP balancing (Algorithm 1): at most about `t` pairs per query entry.

Pass 1 counts, for every entry, the kept pairs that matched it (c_e); run it after the
language filter. Entry e gets p_e = min(1, t / c_e). Pass 2 keeps a pair when the coin of
at least one of its entries falls under p_e, i.e. with probability 1 - prod(1 - p_e).
MetaCLIP flips `random.random()`; here each coin is a hash of (uid, entry, seed), so the
selection is the same for any input order, partitioning or executor, and on every rerun.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence

from pipeline.record import Pair

COIN_SCALE = float(2**64)


def count_entries(pairs: Iterable[Pair]) -> Counter[str]:
    """Pass 1: the number of kept pairs matching each entry (a pair counts once per entry)."""
    counts: Counter[str] = Counter()
    for pair in pairs:
        if pair.kept:
            counts.update(set(pair.matched))
    return counts


def entry_probability(count: int, t: int) -> float:
    """p_e = min(1, t / c_e); an entry seen at most `t` times (or never) is always kept."""
    if count <= t:
        return 1.0
    return t / count


def coin(uid: str, entry: str, seed: int) -> float:
    """A number in [0, 1) fixed by (uid, entry, seed): the coin MetaCLIP draws at random."""
    digest = hashlib.blake2b(f"{uid}\0{entry}\0{seed}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / COIN_SCALE


def keep_pair(
    uid: str, entries: Iterable[str], counts: Mapping[str, int], t: int, seed: int
) -> bool:
    """True when the coin of any matched entry falls under that entry's probability."""
    return any(coin(uid, e, seed) < entry_probability(counts.get(e, 0), t) for e in entries)


def balance_pair(pair: Pair, counts: Mapping[str, int], t: int, seed: int) -> Pair:
    """`pair` unchanged when balancing keeps it, else dropped with the reason."""
    if not pair.matched:
        return pair.dropped("balance:no_entry")
    if keep_pair(pair.uid, pair.matched, counts, t, seed):
        return pair
    return pair.dropped("balance:over_threshold")


def balance(
    pairs: Iterable[Pair], counts: Mapping[str, int], t: int, seed: int = 0
) -> Iterator[Pair]:
    """Pass 2 over kept pairs with the counts of pass 1; dropped pairs pass untouched."""
    for pair in pairs:
        yield balance_pair(pair, counts, t, seed) if pair.kept else pair


def keep_probability(entry_counts: Sequence[int], t: int) -> float:
    """The chance a pair whose entries have these counts survives: 1 - prod(1 - p_e)."""
    return 1.0 - math.prod(1.0 - entry_probability(c, t) for c in entry_counts)


def expected_size(counts_per_pair: Iterable[Sequence[int]], t: int) -> float:
    """Expected number of pairs kept: the sum of `keep_probability` over pairs."""
    return sum(keep_probability(counts, t) for counts in counts_per_pair)


def entry_counts_per_pair(pairs: Iterable[Pair], counts: Mapping[str, int]) -> Iterator[list[int]]:
    """For each kept pair, the counts of its matched entries (the input of `expected_size`)."""
    for pair in pairs:
        if pair.kept:
            yield [counts.get(entry, 0) for entry in sorted(set(pair.matched))]
