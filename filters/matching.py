"""MetaCLIP-exact substring matching of captions against a query list.

MetaCLIP (`substr_matching.py`) pads the text with a space on each side, puts spaces
around `, . ; : ? !` and the backtick, and turns tabs, newlines and carriage returns into
spaces; an entry matches when `" " + entry + " "` occurs in that text. Matching is
case-sensitive and falls on word boundaries: "T-shirt" matches "T-shirt", "dog" does not
match "dog's". `QueryMatcher` finds every such occurrence in one Aho-Corasick pass
(overlapping matches included); `naive_matches` is the plain loop it must agree with.

`match_captions` matches a whole Arrow column: the spacing runs as Arrow string kernels,
then one automaton pass per text. The scalar `spacing` and `QueryMatcher.matches` run the
same code on a one-element column; `cached_matcher` keeps one automaton per query-list
file in each process (a 500k-entry automaton takes seconds to build).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from operator import itemgetter

import ahocorasick
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from filters.queries import load_queries
from pipeline import storage
from pipeline.record import Pair, map_kept_in_batches

PUNCTUATION_TO_WRAP = (",", ".", ";", ":", "?", "!", "`")
CHARACTERS_TO_SPACE = ("\t", "\n", "\r")
MATCH_BATCH = 4096  # pairs per `match_captions` call in `match_pairs`


def spaced_captions(captions: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Each caption as MetaCLIP matches it: padded, punctuation wrapped, tabs/newlines
    spaced; a null caption as ""."""
    texts = pc.fill_null(captions, "")
    for mark in PUNCTUATION_TO_WRAP:
        texts = pc.replace_substring(texts, mark, f" {mark} ")
    for char in CHARACTERS_TO_SPACE:
        texts = pc.replace_substring(texts, char, " ")
    pad = pa.scalar(" ", type=texts.type)
    empty = pa.scalar("", type=texts.type)
    return pc.binary_join_element_wise(empty, texts, empty, pad)


def spacing(text: str) -> str:
    """The text as MetaCLIP matches it: padded, punctuation wrapped, tabs/newlines spaced."""
    return str(spaced_captions(pa.array([text], type=pa.string()))[0].as_py())


class QueryMatcher:
    """An Aho-Corasick automaton over `" " + entry + " "` for every non-empty entry.

    `entries` holds the distinct non-empty entries, sorted; the automaton's value for each
    key is the entry's position there, so sorting positions sorts entries.
    """

    def __init__(self, entries: Iterable[str]) -> None:
        self.entries = pa.array(sorted({entry for entry in entries if entry}), type=pa.string())
        self.automaton = ahocorasick.Automaton()
        for rank, entry in enumerate(self.entries.to_pylist()):
            self.automaton.add_word(f" {entry} ", rank)
        self.size = len(self.entries)
        if self.size:
            self.automaton.make_automaton()

    def __len__(self) -> int:
        return self.size

    def ranks(self, spaced: Iterable[str]) -> tuple[list[int], list[int]]:
        """(offsets, ranks): the sorted distinct entry positions found in each spaced text."""
        offsets = [0]
        found: list[int] = []
        second = itemgetter(1)
        for text in spaced:
            found.extend(sorted(set(map(second, self.automaton.iter(text)))))
            offsets.append(len(found))
        return offsets, found

    def matches(self, text: str) -> list[str]:
        """The entries found in `text`, sorted and each once."""
        return [str(entry) for entry in match_captions(pa.array([text]), self)[0].as_py()]


def match_codes(captions: pa.Array | pa.ChunkedArray, matcher: QueryMatcher) -> pa.ListArray:
    """list<int32>, one list per caption: the positions in `matcher.entries` of the entries
    it matches, ascending (so in entry order) and each once; [] when none, a null caption
    matching like "". One Aho-Corasick pass per caption."""
    if not matcher.size:
        empty = np.zeros(len(captions) + 1, dtype=np.int32)
        return pa.ListArray.from_arrays(pa.array(empty), pa.array([], type=pa.int32()))
    offsets, ranks = matcher.ranks(spaced_captions(captions).to_pylist())
    return pa.ListArray.from_arrays(
        pa.array(offsets, type=pa.int32()), pa.array(ranks, type=pa.int32())
    )


def decode_matches(codes: pa.ListArray | pa.ChunkedArray, matcher: QueryMatcher) -> pa.ListArray:
    """The entries (list<string>) that `match_codes` positions stand for."""
    if isinstance(codes, pa.ChunkedArray):
        codes = codes.combine_chunks()
    values = matcher.entries.take(pc.list_flatten(codes))
    offsets = pc.subtract(codes.offsets, codes.offsets[0])
    return pa.ListArray.from_arrays(offsets, values)


def match_captions(captions: pa.Array | pa.ChunkedArray, matcher: QueryMatcher) -> pa.ListArray:
    """list<string>, one list per caption: the entries it matches, sorted and each once
    ([] when none; a null caption matches like ""). One Aho-Corasick pass per caption."""
    return decode_matches(match_codes(captions, matcher), matcher)


def naive_matches(text: str, entries: Iterable[str]) -> list[str]:
    """The reference: test every entry with `in` on the spaced text (slow, obviously right)."""
    spaced = spacing(text)
    return sorted({entry for entry in entries if entry and f" {entry} " in spaced})


_MATCHERS: dict[str, tuple[tuple[int, str], QueryMatcher]] = {}


def cached_matcher(path: str) -> QueryMatcher:
    """The matcher of the query list at `path` (local or object storage), built once per
    process and file version.

    The cache holds one matcher per location, rebuilt when the file's size or modification
    stamp changes.
    """
    key = storage.name(path) if storage.is_remote(path) else os.path.abspath(path)
    version = storage.version(key)
    cached = _MATCHERS.get(key)
    if cached is not None and cached[0] == version:
        return cached[1]
    matcher = QueryMatcher(load_queries(key))
    _MATCHERS[key] = (version, matcher)
    return matcher


def with_matches(pair: Pair, found: list[str]) -> Pair:
    """`pair` with `matched` filled in, dropped as `match:no_entry` when nothing matched."""
    if not found:
        return pair.dropped("match:no_entry")
    return dataclasses.replace(pair, matched=found)


def match_pair(pair: Pair, matcher: QueryMatcher) -> Pair:
    """`pair` with `matched` filled in, dropped as `match:no_entry` when nothing matched."""
    return with_matches(pair, matcher.matches(pair.caption))


def match_pairs(pairs: Iterable[Pair], matcher: QueryMatcher) -> Iterator[Pair]:
    """Annotate every kept pair with its matched entries; dropped pairs pass untouched.

    Pairs are matched `MATCH_BATCH` at a time, in one `match_captions` call per batch.
    """

    def decide(kept: list[Pair]) -> list[list[str]]:
        captions = pa.array([pair.caption for pair in kept], type=pa.string())
        return list(match_captions(captions, matcher).to_pylist())

    return map_kept_in_batches(pairs, MATCH_BATCH, decide, with_matches)


def matching_throughput(texts: Sequence[str], matcher: QueryMatcher) -> float:
    """Texts matched per second by `match_captions` over `texts` (one call, wall clock)."""
    column = pa.array(texts, type=pa.string())
    start = time.perf_counter()
    match_captions(column, matcher)
    return len(texts) / max(time.perf_counter() - start, 1e-9)
