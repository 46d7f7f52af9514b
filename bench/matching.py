"""Query matching: MetaCLIP's pyahocorasick matcher against `filters.matching`.

Input: the 10,000 real alt texts of img2dataset's test file and the full shipped English
query list (`filters/querylists/en.txt.gz`). The peer is MetaCLIP's own fast path
(`MetaclipMatcher`: an Aho-Corasick automaton over `" " + entry + " "`, the spaced text
run through it one caption at a time, the entry ids of the hits collected in a set). Both
must find the same entries in every text. Load and build (reading the list, building the
automaton or trie) and matching are timed apart, each as the best CPU time of `REPEATS`
runs (the machine is shared); ours is timed on the whole column and in `MATCH_BATCH`
batches, as the curate stage calls it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import ahocorasick
import pyarrow as pa
import pyarrow.parquet as pq

from bench.common import BenchResult, cpu_timed, shared_data
from filters.matching import MATCH_BATCH, QueryMatcher, decode_matches, match_codes
from filters.queries import load_queries, shipped_list

REPEATS = 7
T = TypeVar("T")


def metaclip_spacing(text: str) -> str:
    """MetaCLIP's `spacing`, as published."""
    spaced_text = f" {text} "
    for punct_to_wrap in (",", ".", ";", ":", "?", "!", "`"):
        spaced_text = spaced_text.replace(punct_to_wrap, f" {punct_to_wrap} ")
    for char_to_space in ("\t", "\n", "\r"):
        spaced_text = spaced_text.replace(char_to_space, " ")
    return spaced_text


class MetaclipMatcher:
    """MetaCLIP's `substr_matching` with pyahocorasick: one automaton over the spaced
    entries, valued (entry id, spaced entry); a text's matches are the ids of its hits."""

    def __init__(self, metadata: Sequence[str]) -> None:
        self.metadata = list(metadata)
        self.automaton = ahocorasick.Automaton()
        for idx, key in enumerate(f" {entry} " for entry in self.metadata):
            self.automaton.add_word(key, (idx, key))
        self.automaton.make_automaton()

    def entry_ids(self, text: str) -> list[int]:
        matched_entry_ids = set()
        for _end_index, (entry_id, _original_value) in self.automaton.iter(metaclip_spacing(text)):
            matched_entry_ids.add(entry_id)
        return list(matched_entry_ids)

    def matches(self, text: str) -> list[str]:
        """The entries of `text`'s matches, sorted (as `QueryMatcher.matches` gives them)."""
        return sorted(self.metadata[i] for i in self.entry_ids(text))


def real_alt_texts() -> list[str]:
    data = shared_data()
    if data is None:
        raise FileNotFoundError("shared data not found: the benchmark needs real alt texts")
    table = pq.read_table(data / "alt_text" / "img2dataset-test_10000.parquet", columns=["TEXT"])
    return [t or "" for t in table.column("TEXT").to_pylist()]


def best_of(fn: Callable[[], T]) -> tuple[T, float]:
    """`fn()` and its least CPU time over `REPEATS` runs."""
    runs = [cpu_timed(fn) for _ in range(REPEATS)]
    return runs[0][0], min(seconds for _, seconds in runs)


def in_batches(column: pa.Array, matcher: QueryMatcher) -> list[pa.ListArray]:
    return [
        match_codes(column.slice(start, MATCH_BATCH), matcher)
        for start in range(0, len(column), MATCH_BATCH)
    ]


def run() -> BenchResult:
    texts = real_alt_texts()
    path = str(shipped_list())
    peer, peer_build = best_of(lambda: MetaclipMatcher(load_queries(path)))
    ours, ours_build = best_of(lambda: QueryMatcher(load_queries(path)))
    column = pa.array(texts, type=pa.string())
    found, peer_seconds = best_of(lambda: [peer.entry_ids(text) for text in texts])
    codes, ours_seconds = best_of(lambda: match_codes(column, ours))
    _, batch_seconds = best_of(lambda: in_batches(column, ours))
    theirs = [sorted(peer.metadata[i] for i in ids) for ids in found]
    if decode_matches(codes, ours).to_pylist() != theirs:
        raise AssertionError("QueryMatcher disagrees with MetaCLIP's matcher")
    hits = sum(map(len, theirs))
    return BenchResult(
        name="query matching",
        unit="alt texts",
        items=len(texts),
        peer="MetaCLIP pyahocorasick",
        peer_seconds=peer_seconds,
        ours_seconds=ours_seconds,
        note=(
            f"{len(ours):,} entries (shipped en list); load+build: MetaCLIP {peer_build:.2f} s,"
            f" ours {ours_build:.2f} s; ours in batches of {MATCH_BATCH}:"
            f" {len(texts) / batch_seconds:,.0f} texts/s; {hits:,} matches, identical;"
            f" best CPU time of {REPEATS}"
        ),
    )
