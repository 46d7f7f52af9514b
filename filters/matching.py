"""MetaCLIP-exact substring matching of captions against a query list.

MetaCLIP (`substr_matching.py`) pads the text with a space on each side, puts spaces
around `, . ; : ? !` and the backtick, and turns tabs, newlines and carriage returns into
spaces; an entry matches when `" " + entry + " "` occurs in that text. Matching is
case-sensitive and falls on word boundaries: "T-shirt" matches "T-shirt", "dog" does not
match "dog's". `QueryMatcher` finds every such occurrence in one Aho-Corasick pass
(overlapping matches included); `naive_matches` is the plain loop it must agree with.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Iterator, Sequence

import ahocorasick

from pipeline.record import Pair

PUNCTUATION_TO_WRAP = (",", ".", ";", ":", "?", "!", "`")
CHARACTERS_TO_SPACE = ("\t", "\n", "\r")


def spacing(text: str) -> str:
    """The text as MetaCLIP matches it: padded, punctuation wrapped, tabs/newlines spaced."""
    spaced = f" {text} "
    for mark in PUNCTUATION_TO_WRAP:
        spaced = spaced.replace(mark, f" {mark} ")
    for char in CHARACTERS_TO_SPACE:
        spaced = spaced.replace(char, " ")
    return spaced


class QueryMatcher:
    """An Aho-Corasick automaton over `" " + entry + " "` for every non-empty entry."""

    def __init__(self, entries: Iterable[str]) -> None:
        self.automaton = ahocorasick.Automaton()
        self.size = 0
        for entry in entries:
            if entry and self.automaton.add_word(f" {entry} ", entry):
                self.size += 1
        if self.size:
            self.automaton.make_automaton()

    def __len__(self) -> int:
        return self.size

    def matches(self, text: str) -> list[str]:
        """The entries found in `text`, sorted and each once."""
        if not self.size:
            return []
        found = {entry for _, entry in self.automaton.iter(spacing(text))}
        return sorted(found)


def naive_matches(text: str, entries: Iterable[str]) -> list[str]:
    """The reference: test every entry with `in` on the spaced text (slow, obviously right)."""
    spaced = spacing(text)
    return sorted({entry for entry in entries if entry and f" {entry} " in spaced})


def match_pair(pair: Pair, matcher: QueryMatcher) -> Pair:
    """`pair` with `matched` filled in, dropped as `match:no_entry` when nothing matched."""
    found = matcher.matches(pair.caption)
    if not found:
        return pair.dropped("match:no_entry")
    return dataclasses.replace(pair, matched=found)


def match_pairs(pairs: Iterable[Pair], matcher: QueryMatcher) -> Iterator[Pair]:
    """Annotate every kept pair with its matched entries; dropped pairs pass untouched."""
    for pair in pairs:
        yield match_pair(pair, matcher) if pair.kept else pair


def matching_throughput(texts: Sequence[str], matcher: QueryMatcher) -> float:
    """Texts matched per second by `matcher` over `texts` (one pass, wall clock)."""
    start = time.perf_counter()
    for text in texts:
        matcher.matches(text)
    return len(texts) / max(time.perf_counter() - start, 1e-9)
