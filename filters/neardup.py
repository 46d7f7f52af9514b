"""Near-duplicate images: 64-bit pHash codes within a Hamming radius, found exactly.

Split the 64 bits into radius + 1 bands. Two codes within distance r differ in at most r
bits, so by pigeonhole at least one band is identical: grouping codes by each band finds
every neighbour within r, and checking the full distance of those candidates removes the
rest. Radius 3 gives DataComp/LAION's 4 bands of 16 bits.

The columnar path: `band_keys` lists one (band, band value, row) per code and band, the
key a distributed engine groups by; `near_pairs` finds every pair of ids within the
radius by sorting each band and comparing neighbours inside runs of equal band values;
`greedy_drops` decides which ids a visit in id order drops. `NearDupIndex` answers
scalar queries.

`remove_near_duplicates` visits kept pairs in sorted uid order and keeps a pair unless it
lies within the radius of a pair already kept, so the result does not depend on input
order.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator

import numpy as np

from core.record import Pair

CODE_BITS = 64
CODE_MASK = (1 << CODE_BITS) - 1
GREEDY_ROUNDS = 64  # vectorised rounds of `greedy_drops` before it finishes in a loop
UNDECIDED, KEPT, DROPPED = 0, 1, 2


def hamming(a: int, b: int) -> int:
    """Number of differing bits between two 64-bit codes."""
    return ((a ^ b) & CODE_MASK).bit_count()


def band_layout(bands: int) -> list[tuple[int, int]]:
    """(shift, mask) of each band when 64 bits are cut into `bands` near-equal parts."""
    if not 1 <= bands <= CODE_BITS:
        raise ValueError(f"bands must be between 1 and {CODE_BITS}, got {bands}")
    layout = []
    shift = 0
    for index in range(bands):
        width = CODE_BITS // bands + (1 if index < CODE_BITS % bands else 0)
        layout.append((shift, (1 << width) - 1))
        shift += width
    return layout


def check_radius(radius: int) -> None:
    if not 0 <= radius < CODE_BITS:
        raise ValueError(f"radius must be between 0 and {CODE_BITS - 1}, got {radius}")


class NearDupIndex:
    """Codes indexed by band, answering every neighbour within `radius` exactly."""

    def __init__(self, radius: int = 3) -> None:
        check_radius(radius)
        self.radius = radius
        self.layout = band_layout(radius + 1)
        self.tables: list[defaultdict[int, list[int]]] = [defaultdict(list) for _ in self.layout]
        self.keys: list[str] = []
        self.codes: list[int] = []

    def __len__(self) -> int:
        return len(self.codes)

    def bands(self, code: int) -> Iterator[int]:
        for shift, mask in self.layout:
            yield (code >> shift) & mask

    def add(self, key: str, code: int) -> None:
        """Index `code` under `key`."""
        slot = len(self.codes)
        self.keys.append(key)
        self.codes.append(code & CODE_MASK)
        for table, band in zip(self.tables, self.bands(code), strict=True):
            table[band].append(slot)

    def candidates(self, code: int) -> set[int]:
        """Slots sharing at least one band with `code`."""
        found: set[int] = set()
        for table, band in zip(self.tables, self.bands(code), strict=True):
            found.update(table.get(band, ()))
        return found

    def query(self, code: int, radius: int | None = None) -> list[tuple[str, int]]:
        """Every indexed (key, distance) within `radius` of `code`, nearest first."""
        limit = self.radius if radius is None else radius
        if not 0 <= limit <= self.radius:
            raise ValueError(f"radius must be between 0 and the index's {self.radius}")
        found = []
        for slot in self.candidates(code):
            distance = hamming(code, self.codes[slot])
            if distance <= limit:
                found.append((self.keys[slot], distance))
        return sorted(found, key=lambda item: (item[1], item[0]))


# ---- columnar search -----------------------------------------------------------------


def band_keys(codes: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(band_index int64, band_value uint64, row int64): one entry per code and band, band
    by band. Codes within `radius` share (band_index, band_value) in at least one entry."""
    check_radius(radius)
    values = band_values(np.asarray(codes, dtype=np.uint64), radius)
    band_index = np.repeat(np.arange(len(values), dtype=np.int64), len(codes))
    row = np.tile(np.arange(len(codes), dtype=np.int64), len(values))
    return band_index, np.concatenate(values), row


def band_values(codes: np.ndarray, radius: int) -> list[np.ndarray]:
    """Each of the radius + 1 bands of every code, as uint64 arrays."""
    return [(codes >> np.uint64(s)) & np.uint64(m) for s, m in band_layout(radius + 1)]


def pairs_in_band(codes: np.ndarray, values: np.ndarray, radius: int) -> np.ndarray:
    """(k, 2) positions in `codes` (distinct codes) of pairs within `radius` that share a
    band value: neighbours 1, 2, ... places apart inside each run of the band's sort."""
    order = np.argsort(values, kind="stable")
    ranked_values, ranked_codes = values[order], codes[order]
    found = []
    candidates = np.arange(1, len(order))
    back = 1
    while len(candidates):
        candidates = candidates[ranked_values[candidates] == ranked_values[candidates - back]]
        distance = np.bitwise_count(ranked_codes[candidates] ^ ranked_codes[candidates - back])
        near = candidates[distance <= radius]
        found.append(np.stack([order[near - back], order[near]], axis=1))
        back += 1
        candidates = candidates[candidates >= back]
    return np.concatenate(found) if found else np.zeros((0, 2), dtype=np.int64)


def near_code_pairs(codes: np.ndarray, radius: int) -> np.ndarray:
    """(k, 2) positions (i < j) in `codes` (distinct codes) of every pair within `radius`."""
    found = [pairs_in_band(codes, band, radius) for band in band_values(codes, radius)]
    pairs = np.sort(np.concatenate(found), axis=1) if found else np.zeros((0, 2), np.int64)
    return unique_rows(pairs)


def unique_rows(pairs: np.ndarray) -> np.ndarray:
    """The distinct rows of an int64 (k, 2) array, sorted."""
    if not len(pairs):
        return pairs.reshape(0, 2).astype(np.int64)
    order = np.lexsort((pairs[:, 1], pairs[:, 0]))
    ranked = pairs[order]
    first = np.ones(len(ranked), dtype=bool)
    first[1:] = np.any(ranked[1:] != ranked[:-1], axis=1)
    return ranked[first]


def cross_pairs(
    groups: np.ndarray, starts: np.ndarray, sizes: np.ndarray, members: np.ndarray
) -> np.ndarray:
    """Every (member of group a, member of group b) for each (a, b) row of `groups`."""
    sizes_a, sizes_b = sizes[groups[:, 0]], sizes[groups[:, 1]]
    totals = sizes_a * sizes_b
    which = np.repeat(np.arange(len(groups)), totals)
    step = np.arange(int(totals.sum())) - np.repeat(np.cumsum(totals) - totals, totals)
    first = members[starts[groups[which, 0]] + step // sizes_b[which]]
    second = members[starts[groups[which, 1]] + step % sizes_b[which]]
    return np.stack([first, second], axis=1)


def near_pairs(ids: np.ndarray, codes: np.ndarray, radius: int) -> np.ndarray:
    """(k, 2) int64: every pair of distinct ids (a < b) whose codes are within `radius`,
    each pair once, sorted. Exact: no pair within the radius is missed, none beyond it is
    returned. Identical codes are searched once (a group of n equal codes yields its
    n(n-1)/2 pairs directly); the work beyond that grows with the sum of squared run
    lengths of distinct codes sharing a band value (about n²/2^(64/(r+1)) for random codes)."""
    check_radius(radius)
    ids = np.asarray(ids, dtype=np.int64)
    codes = np.asarray(codes, dtype=np.uint64)
    if len(ids) != len(codes):
        raise ValueError(f"{len(ids)} ids for {len(codes)} codes")
    distinct, group = np.unique(codes, return_inverse=True)
    members = np.argsort(group, kind="stable")  # rows, grouped by distinct code
    sizes = np.bincount(group, minlength=len(distinct))
    starts = np.cumsum(sizes) - sizes
    between = near_code_pairs(distinct, radius)
    repeated = np.flatnonzero(sizes > 1)
    rows = np.concatenate(
        [
            cross_pairs(between, starts, sizes, members),
            within_pairs(repeated, starts, sizes, members),
        ]
    )
    pairs = np.sort(ids[rows], axis=1)
    return unique_rows(pairs[pairs[:, 0] != pairs[:, 1]])


def within_pairs(
    groups: np.ndarray, starts: np.ndarray, sizes: np.ndarray, members: np.ndarray
) -> np.ndarray:
    """Every pair of distinct members inside each of `groups` (once per unordered pair)."""
    square = cross_pairs(np.stack([groups, groups], axis=1), starts, sizes, members)
    return square[square[:, 0] < square[:, 1]]


def greedy_drops(ids: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """int64 ids dropped, sorted, when ids are visited in increasing order and an id is
    dropped if a neighbour (a row of `pairs`) with a smaller id was kept. `ids` are the
    visited ids (ranks); every id in `pairs` must be one. Memory O(pairs)."""
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    if not len(pairs):
        return np.zeros(0, dtype=np.int64)
    nodes, compact = np.unique(pairs, return_inverse=True)
    if not np.isin(nodes, ids).all():
        raise ValueError("pairs name ids that are not in ids")
    compact = compact.reshape(-1, 2)
    earlier, later = compact.min(axis=1), compact.max(axis=1)
    keep = earlier != later
    state = resolve(earlier[keep], later[keep], len(nodes))
    return nodes[state == DROPPED]


def resolve(earlier: np.ndarray, later: np.ndarray, count: int) -> np.ndarray:
    """State per node (KEPT or DROPPED) of the greedy visit: vectorised rounds, where a
    node is dropped once an earlier neighbour is kept and kept once all are dropped."""
    state = np.full(count, KEPT, dtype=np.int8)
    state[later] = UNDECIDED
    for _ in range(GREEDY_ROUNDS):
        open_edge = state[later] == UNDECIDED
        earlier, later = earlier[open_edge], later[open_edge]
        if not len(later):
            return state
        before = state[earlier]
        pending = np.zeros(count, dtype=bool)
        pending[later[before != DROPPED]] = True
        beaten = later[before == KEPT]
        state[np.flatnonzero(~pending & (state == UNDECIDED))] = KEPT
        state[beaten] = DROPPED
    return finish_in_order(state, earlier, later)


def finish_in_order(state: np.ndarray, earlier: np.ndarray, later: np.ndarray) -> np.ndarray:
    """The greedy visit for the nodes still undecided, one at a time in increasing order."""
    order = np.lexsort((earlier, later))
    by_later: dict[int, list[int]] = defaultdict(list)
    for a, b in zip(earlier[order].tolist(), later[order].tolist(), strict=True):
        by_later[b].append(a)
    for node in sorted(by_later):
        if state[node] == UNDECIDED:
            beaten = any(state[a] == KEPT for a in by_later[node])
            state[node] = DROPPED if beaten else KEPT
    return state


def visit_order(pair: Pair) -> tuple[str, str, str, int]:
    """The order pairs are visited in; the first of a cluster is kept."""
    return (pair.uid, pair.page_url or "", pair.sha256 or "", pair.phash or 0)


def near_duplicate_slots(pairs: list[Pair], radius: int) -> set[int]:
    """Positions in `pairs` of kept, hashed pairs within `radius` of an earlier kept one."""
    hashed = [i for i, pair in enumerate(pairs) if pair.kept and pair.phash is not None]
    hashed.sort(key=lambda i: visit_order(pairs[i]))
    ranks = np.arange(len(hashed), dtype=np.int64)
    codes = np.array([(pairs[i].phash or 0) & CODE_MASK for i in hashed], dtype=np.uint64)
    dropped = greedy_drops(ranks, near_pairs(ranks, codes, radius))
    return {hashed[rank] for rank in dropped.tolist()}


def remove_near_duplicates(pairs: Iterable[Pair], radius: int = 3) -> Iterator[Pair]:
    """Drop (`neardup:phash`) kept pairs whose pHash is within `radius` of a kept one."""
    items = list(pairs)
    duplicates = near_duplicate_slots(items, radius)
    for slot, pair in enumerate(items):
        yield pair.dropped("neardup:phash") if slot in duplicates else pair
