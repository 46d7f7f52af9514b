"""MetaCLIP-exact substring matching of captions against a query list.

MetaCLIP (`substr_matching.py`) pads the text with a space on each side, puts spaces
around `, . ; : ? !` and the backtick, and turns tabs, newlines and carriage returns into
spaces; an entry matches when `" " + entry + " "` occurs in that text. Matching is
case-sensitive and falls on word boundaries: "T-shirt" matches "T-shirt", "dog" does not
match "dog's". `naive_matches` is that loop, the reference everything here agrees with.

`" " + e + " "` occurs in a spaced text exactly when e equals the text between two of
its spaces: so `QueryMatcher` keys every entry, and every word-prefix of one, into a numpy
hash table (`filters.spanhash`), and `match_codes` matches a whole Arrow column with no
Python step per text, word or hit. The spacing runs as Arrow string kernels; round n then
keys, all at once, the runs of n words that start where a run of n - 1 words was an entry
or a prefix of one, and looks them up. A span of up to 7 bytes is its own key; a longer one
found as an entry has its bytes compared with the entry's, so a hash collision never makes
a match. The scalar `spacing` and `QueryMatcher.matches` run the same code on a
one-element column; `cached_matcher` keeps one matcher per query-list file in each
process.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from core import storage
from core.record import Pair, map_kept_in_batches
from filters.queries import load_queries
from filters.spanhash import (
    ABSENT,
    EMPTY,
    SHORT,
    HashTable,
    padded,
    same_bytes,
    span_keys,
    text_bytes,
)

PUNCTUATION_TO_WRAP = (",", ".", ";", ":", "?", "!", "`")
CHARACTERS_TO_SPACE = ("\t", "\n", "\r")
COMMON_MARKS = (",", ".")
RARE_MARKS = "[;:?!`\t\n\r]"  # RE2: the other marks and the breaks
MATCH_BATCH = 4096  # pairs per `match_captions` call in `match_pairs`
SPACE = ord(" ")
PREFIX = -1  # the table's value for a word-prefix of entries that is no entry itself
# Odd 64-bit bases for the span hash, tried in turn until the entries hash apart.
HASH_BASES = (0x100000001B3, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93)


def wrapped(texts: pa.Array, marks: Iterable[str], to_space: Iterable[str]) -> pa.Array:
    for mark in marks:
        texts = pc.replace_substring(texts, mark, f" {mark} ")
    for char in to_space:
        texts = pc.replace_substring(texts, char, " ")
    return texts


def spaced_captions(captions: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Each caption as MetaCLIP matches it: padded, punctuation wrapped, tabs/newlines
    spaced; a null caption as "".

    Commas and full stops are wrapped in every caption; the rarer marks and breaks only in
    the captions that hold one (each replacement only adds spaces, so the order of the
    replacements does not matter).
    """
    if isinstance(captions, pa.ChunkedArray):
        captions = captions.combine_chunks()
    texts = wrapped(pc.fill_null(captions, ""), COMMON_MARKS, ())
    rare = pc.match_substring_regex(texts, RARE_MARKS)
    if pc.any(rare).as_py():
        rest = [m for m in PUNCTUATION_TO_WRAP if m not in COMMON_MARKS]
        done = wrapped(pc.filter(texts, rare), rest, CHARACTERS_TO_SPACE)
        texts = pc.replace_with_mask(texts, rare, done)
    pad = pa.scalar(" ", type=texts.type)
    empty = pa.scalar("", type=texts.type)
    return pc.binary_join_element_wise(empty, texts, empty, pad)


def spacing(text: str) -> str:
    """The text as MetaCLIP matches it: padded, punctuation wrapped, tabs/newlines spaced."""
    return str(spaced_captions(pa.array([text], type=pa.string()))[0].as_py())


class QueryMatcher:
    """Every distinct non-empty entry, and every word-prefix of one, by span hash.

    `entries` holds the distinct non-empty entries, sorted; a match is reported as the
    entry's position there (its rank), so sorting ranks sorts entries. `table` maps the
    hash of each entry to its rank, and the hash of each proper word-prefix of an entry
    ("new york" of "new york city") that is no entry itself to `PREFIX`; the hash base
    (`base`) is the first of `HASH_BASES` under which all of those strings key apart.
    """

    def __init__(self, entries: Iterable[str]) -> None:
        ordered = sorted({entry for entry in entries if entry})
        self.entries = pa.array(ordered, type=pa.string())
        self.size = len(ordered)
        data, self.entry_offsets = text_bytes(self.entries)
        self.entry_data = padded(data)
        self.max_words = max((entry.count(" ") + 1 for entry in ordered), default=0)
        # Whether an entry starts with an empty word (a leading space): else no run of
        # words starting with an empty one can match, and none is tried.
        self.empty_word = any(entry.startswith(" ") for entry in ordered)
        prefixes = pa.array(sorted(word_prefixes(ordered) - set(ordered)), type=pa.string())
        keys = pa.concat_arrays([self.entries, prefixes])
        values = np.concatenate([np.arange(self.size), np.full(len(prefixes), PREFIX)])
        key_data, key_offsets = text_bytes(keys)
        key_data = padded(key_data)
        for base in HASH_BASES:
            hashes = span_keys(key_data, key_offsets[:-1], key_offsets[1:], base)
            if len(np.unique(hashes)) == len(hashes) and not (hashes == EMPTY).any():
                self.base = base
                break
        else:  # pragma: no cover - 2^-59-likely for each base
            raise ValueError("query entries collide under every hash base")
        self.table = HashTable(hashes, values)

    def __len__(self) -> int:
        return self.size

    def found(
        self, data: np.ndarray, begin: np.ndarray, end: np.ndarray, ranks: np.ndarray
    ) -> np.ndarray:
        """Where the span [begin, end) of `data` is really the entry of rank `ranks`: a
        short span's key is its bytes, a long one's is a hash that can collide, so a long
        one must have the entry's bytes."""
        lengths = end - begin
        long = np.flatnonzero(lengths > SHORT)
        ok = np.ones(len(lengths), dtype=bool)
        begin, lengths, entry_begin = begin[long], lengths[long], self.entry_offsets[ranks[long]]
        same = self.entry_offsets[ranks[long] + 1] - entry_begin == lengths
        same[same] = same_bytes(
            data, begin[same], self.entry_data, entry_begin[same], lengths[same]
        )
        ok[long] = same
        return ok

    def walk(self, data: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(rows, ranks) of every entry `" " + entry + " "` occurs in, for spaced texts
        `data` (`padded`; text i at offsets[i] .. offsets[i + 1]).

        A candidate is a run of n words between two spaces of one text: round n extends
        every run of n - 1 words that is an entry or a prefix of one by the next word.
        """
        index: type[np.signedinteger] = np.int32 if len(data) < 1 << 31 else np.int64
        spaces = np.flatnonzero(data == SPACE).astype(index)
        # Every text starts and ends with a space, so the gap after space i crosses into
        # the next text exactly when space i + 1 is a text's first byte; `crossed[i]` is
        # the number of such gaps before space i, which is the text space i is in.
        starts = np.zeros(len(data), dtype=bool)
        starts[offsets[1:-1]] = True
        crossed = np.zeros(len(spaces), dtype=index)
        np.cumsum(starts[spaces[1:]], out=crossed[1:])
        first: np.ndarray = np.arange(max(len(spaces) - 1, 0), dtype=index)
        if not self.empty_word:
            first = first[spaces[first + 1] > spaces[first] + 1]
        rows: list[np.ndarray] = []
        ranks: list[np.ndarray] = []
        for words in range(1, self.max_words + 1):
            first = first[first + words < len(spaces)]
            first = first[crossed[first + words] == crossed[first]]
            begin, end = spaces[first] + 1, spaces[first + words]
            values = self.table.lookup(span_keys(data, begin, end, self.base))
            entry = values >= 0
            real = self.found(data, begin[entry], end[entry], values[entry])
            rows.append(crossed[first[entry][real]].astype(np.int64))
            ranks.append(values[entry][real])
            first = first[values != ABSENT]
            if not len(first):
                break
        return np.concatenate(rows), np.concatenate(ranks)

    def matches(self, text: str) -> list[str]:
        """The entries found in `text`, sorted and each once."""
        return [str(entry) for entry in match_captions(pa.array([text]), self)[0].as_py()]


def word_prefixes(entries: Iterable[str]) -> set[str]:
    """Every proper word-prefix of an entry (up to, not including, one of its spaces)."""
    prefixes: set[str] = set()
    for entry in entries:
        at = entry.find(" ")
        while at >= 0:
            prefixes.add(entry[:at])
            at = entry.find(" ", at + 1)
    return prefixes


def match_codes(captions: pa.Array | pa.ChunkedArray, matcher: QueryMatcher) -> pa.ListArray:
    """list<int32>, one list per caption: the positions in `matcher.entries` of the entries
    it matches, ascending (so in entry order) and each once; [] when none, a null caption
    matching like ""."""
    count = len(captions)
    rows = ranks = np.zeros(0, dtype=np.int64)
    if matcher.size and count:
        data, offsets = text_bytes(spaced_captions(captions))
        rows, ranks = matcher.walk(padded(data), offsets)
    width = max(matcher.size, 1)
    rows, ranks = np.divmod(np.unique(rows.astype(np.int64) * width + ranks), width)
    offsets = np.searchsorted(rows, np.arange(count + 1), side="left")
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
    ([] when none; a null caption matches like "")."""
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
