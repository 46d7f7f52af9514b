"""Exact deduplication on text-side keys (url, uid, caption) and on image sha256.

Two passes per key, so the result never depends on input order: pass 1
(`find_winners`) finds, for every key value, the smallest rank among kept pairs; pass 2
(`mark_duplicates`) keeps the one pair holding that rank and drops the others with
`dedup:<key>`. The rank is (uid, page_url or "", ...), so the pair kept for a URL is the
same whatever order, partitioning or executor produced the input. Keys run one after the
other: the second key only sees the survivors of the first.

The stages use the columnar form, `first_per_key`, inside a keyed reduction: rows are
grouped by a hash of the key value (every row sharing a value lands in the same group),
and each group keeps its smallest-rank row per value, so any grouping keeps the same rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from core.record import Pair

Rank = tuple[str, str, str, str]
KeyFunction = Callable[[Pair], str | None]

KEY_FUNCTIONS: dict[str, KeyFunction] = {
    "url": lambda pair: pair.url,
    "uid": lambda pair: pair.uid,
    "caption": lambda pair: pair.caption,
    "sha256": lambda pair: pair.sha256,
}


def pair_rank(pair: Pair) -> Rank:
    """The order that decides which duplicate is kept: the smallest rank wins."""
    return (pair.uid, pair.page_url or "", pair.source, pair.page_lang or "")


def key_function(key: str) -> KeyFunction:
    try:
        return KEY_FUNCTIONS[key]
    except KeyError:
        raise ValueError(f"unknown dedup key {key!r}; known: {sorted(KEY_FUNCTIONS)}") from None


def find_winners(pairs: Iterable[Pair], key: str) -> dict[str, Rank]:
    """Pass 1: for each value of `key` among kept pairs, the smallest rank holding it."""
    value_of = key_function(key)
    winners: dict[str, Rank] = {}
    for pair in pairs:
        value = value_of(pair)
        if not pair.kept or value is None:
            continue
        rank = pair_rank(pair)
        best = winners.get(value)
        if best is None or rank < best:
            winners[value] = rank
    return winners


def mark_duplicates(pairs: Iterable[Pair], key: str, winners: dict[str, Rank]) -> Iterator[Pair]:
    """Pass 2: keep the one pair per value that holds the winning rank, drop the rest.

    Pairs whose rank ties exactly are the same alt, URL and page: the first one seen is
    kept, and which one that is cannot change what is kept.
    """
    value_of = key_function(key)
    claimed: set[str] = set()
    for pair in pairs:
        value = value_of(pair)
        if not pair.kept or value is None:
            yield pair
        elif value in claimed or winners.get(value) != pair_rank(pair):
            yield pair.dropped(f"dedup:{key}")
        else:
            claimed.add(value)
            yield pair


def dedup_on(pairs: Iterable[Pair], key: str) -> list[Pair]:
    """Both passes for one key over pairs held in memory."""
    items = list(pairs)
    winners = find_winners(items, key)
    return list(mark_duplicates(items, key, winners))


def dedup(pairs: Iterable[Pair], keys: Sequence[str] = ("url", "uid")) -> Iterator[Pair]:
    """Exact dedup on each of `keys` in turn (`CurateConfig.dedup_keys`), input order kept."""
    items = list(pairs)
    for key in keys:
        items = dedup_on(items, key)
    yield from items


def dedup_images(pairs: Iterable[Pair]) -> Iterator[Pair]:
    """Exact dedup of downloaded images on sha256 (`dedup:sha256`); unhashed pairs pass."""
    yield from dedup_on(pairs, "sha256")


# ---------------------------------------------------------------- columnar (the stages' path)

RANK_COLUMNS = ("uid", "page_url", "source", "page_lang")


def _filled(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    values = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if not values.null_count:
        return values
    return pc.fill_null(values, "" if pa.types.is_string(values.type) else 0)


def first_per_key(table: pa.Table, key: str, rank: Sequence[str] = RANK_COLUMNS) -> np.ndarray:
    """True for the one row per value of `key` that holds the smallest rank, else False.

    The columnar form of `find_winners` + `mark_duplicates` over rows that are all kept:
    rows are ordered by (key, rank...), nulls as "", and the first of each run of equal
    keys wins. Rows whose ranks tie exactly agree in every rank column, so which of them
    is first cannot change what is kept. Null keys are never duplicates.
    """
    rows = table.num_rows
    keep = np.zeros(rows, dtype=bool)
    if rows == 0:
        return keep
    columns = {name: _filled(table.column(name)) for name in (key, *rank)}
    sort_table = pa.table({f"c{i}": columns[name] for i, name in enumerate((key, *rank))})
    order = pc.sort_indices(
        sort_table, sort_keys=[(f"c{i}", "ascending") for i in range(len(rank) + 1)]
    )
    ordered = pc.take(columns[key], order)
    first = np.ones(rows, dtype=bool)
    if rows > 1:
        first[1:] = pc.not_equal(ordered.slice(1), ordered.slice(0, rows - 1)).to_numpy(
            zero_copy_only=False
        )
    keep[order.to_numpy()[first]] = True
    nulls = table.column(key).is_null().to_numpy(zero_copy_only=False)
    keep[nulls] = True
    return keep


def sort_by_rank(table: pa.Table, rank: Sequence[str] = RANK_COLUMNS) -> pa.Table:
    """The rows in rank order (nulls as ""): the canonical order reductions start from."""
    if table.num_rows < 2:
        return table
    sort_table = pa.table({f"c{i}": _filled(table.column(n)) for i, n in enumerate(rank)})
    order = pc.sort_indices(
        sort_table, sort_keys=[(f"c{i}", "ascending") for i in range(len(rank))]
    )
    return table.take(order)
