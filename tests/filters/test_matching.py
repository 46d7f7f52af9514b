from __future__ import annotations

import os
import time
from collections import defaultdict
from pathlib import Path

import pyarrow as pa
import pytest

from filters.matching import (
    QueryMatcher,
    cached_matcher,
    match_captions,
    match_pairs,
    matching_throughput,
    naive_matches,
    spaced_captions,
    spacing,
)
from pipeline.record import Pair

ENTRIES = [
    "dog",
    "golden retriever",
    "T-shirt",
    "new york",
    "york city",
    "new york city",
    "U.S.",
    "a",
    "running",
    "Dog",
]


def metaclip_spacing(text: str) -> str:
    """MetaCLIP's own spacing, written out as the reference."""
    spaced = f" {text} "
    for mark in (",", ".", ";", ":", "?", "!", "`"):
        spaced = spaced.replace(mark, f" {mark} ")
    for char in ("\t", "\n", "\r"):
        spaced = spaced.replace(char, " ")
    return spaced


def test_spacing_is_metaclip_s() -> None:
    assert spacing("A dog, running.") == " A dog ,  running .  "
    assert spacing("tab\there\nnew\rline") == " tab here new line "
    assert spacing("`quoted`?!") == "  ` quoted `  ?  !  "
    texts = ["", "a,b.c;d:e?f!g`h", "\t\n\r", "ü,\u3000.", "..."]
    column = spaced_captions(pa.array([*texts, None]))
    assert column.to_pylist() == [metaclip_spacing(t) for t in [*texts, ""]]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("A dog, running.", ["dog", "running"]),
        ("The Dog's toy", []),  # "dog's" is not "dog", and case matters
        ("my dog's bed", []),
        ("Dog", ["Dog"]),
        ("Blue T-shirt for men", ["T-shirt"]),
        ("A golden retriever.", ["golden retriever"]),
        ("golden\tretriever", ["golden retriever"]),
        ("new york city at night", ["new york", "new york city", "york city"]),
        ("a a a", ["a"]),
        ("made in the U.S.", []),  # MetaCLIP spaces the dots, so "U.S." never matches
        ("", []),
    ],
)
def test_matches(text: str, expected: list[str]) -> None:
    matcher = QueryMatcher(ENTRIES)
    assert matcher.matches(text) == expected
    assert naive_matches(text, ENTRIES) == expected
    assert match_captions(pa.array([text, text]), matcher).to_pylist() == [expected] * 2


def test_match_captions_column_shapes() -> None:
    matcher = QueryMatcher(ENTRIES)
    column = pa.chunked_array([["a dog", None], [], ["nothing", "Dog, T-shirt"]])
    found = match_captions(column, matcher)
    assert isinstance(found, pa.ListArray) and found.type == pa.list_(pa.string())
    assert found.to_pylist() == [["a", "dog"], [], [], ["Dog", "T-shirt"]]
    sliced = pa.array(["x", "a dog", "York city"], type=pa.large_string()).slice(1)
    assert match_captions(sliced, matcher).to_pylist() == [["a", "dog"], []]
    assert match_captions(pa.array([], type=pa.string()), matcher).to_pylist() == []
    empty = match_captions(pa.array(["a dog", None]), QueryMatcher([]))
    assert empty.type == pa.list_(pa.string()) and empty.to_pylist() == [[], []]


def test_empty_matcher_and_entries() -> None:
    assert QueryMatcher([]).matches("a dog") == []
    matcher = QueryMatcher(["", "dog", "dog"])
    assert len(matcher) == 1
    assert matcher.matches("a  dog") == ["dog"]


def test_match_pairs_annotates_and_drops() -> None:
    matcher = QueryMatcher(ENTRIES)
    hit = Pair(url="http://img/1.jpg", caption="a golden retriever running")
    miss = Pair(url="http://img/2.jpg", caption="nothing to see here")
    gone = Pair(url="http://img/3.jpg", caption="a dog").dropped("text:too_short")
    out = list(match_pairs([hit, miss, gone], matcher))
    assert out[0].matched == ["a", "golden retriever", "running"] and out[0].kept
    assert out[0].uid == hit.uid and hit.matched == []
    assert out[1].drop_reason == "match:no_entry"
    assert out[2] is gone


def naive_by_first_token(texts: list[str], entries: list[str]) -> list[list[str]]:
    """`naive_matches` for every text, looping only over entries whose first token occurs.

    `" " + e + " "` occurring in a spaced text puts e's first space-separated token between
    two spaces of that text, so no other entry can match: the loop over these candidates
    gives the same answer as the loop over all entries.
    """
    by_first: dict[str, list[str]] = defaultdict(list)
    for entry in entries:
        if entry:
            by_first[entry.split(" ")[0]].append(entry)
    results = []
    for text in texts:
        tokens = set(spacing(text).split(" "))
        candidates = [e for token in tokens for e in by_first.get(token, ())]
        results.append(naive_matches(text, candidates))
    return results


def test_equals_naive_on_real_alt_texts(alt_texts: list[str], vocab_queries: list[str]) -> None:
    matcher = QueryMatcher(vocab_queries)
    sample = alt_texts[:: len(alt_texts) // 40]
    full = [naive_matches(text, vocab_queries) for text in sample]
    assert naive_by_first_token(sample, vocab_queries) == full  # the reduction is sound
    assert [matcher.matches(text) for text in sample] == full
    found = match_captions(pa.array(alt_texts), matcher).to_pylist()
    assert found == naive_by_first_token(alt_texts, vocab_queries)
    matched_texts = sum(bool(entries) for entries in found)
    assert 0.4 * len(alt_texts) < matched_texts < len(alt_texts)
    assert sum(len(entries) > 1 and " " in "".join(entries) for entries in found) > 100


def test_throughput_against_naive(alt_texts: list[str], vocab_queries: list[str]) -> None:
    matcher = QueryMatcher(vocab_queries)
    fast = matching_throughput(alt_texts, matcher)
    sample = alt_texts[:30]
    start = time.perf_counter()
    for text in sample:
        naive_matches(text, vocab_queries)
    naive = len(sample) / (time.perf_counter() - start)
    print(f"{len(vocab_queries)} entries: match_captions {fast:,.0f} texts/s, naive {naive:,.1f}")
    assert fast > 100 * naive


def write_list(path: Path, entries: list[str], mtime_ns: int) -> None:
    path.write_text("".join(f"{entry}\n" for entry in entries), encoding="utf-8")
    os.utime(path, ns=(mtime_ns, mtime_ns))


def test_cached_matcher_builds_once_per_file_version(tmp_path: Path) -> None:
    path = tmp_path / "queries.txt"
    write_list(path, ["dog", "cat"], 1_000_000_000)
    first = cached_matcher(str(path))
    assert cached_matcher(str(path)) is first
    assert cached_matcher(os.path.relpath(path)) is first  # keyed on the absolute path
    assert first.matches("a dog and a cat") == ["cat", "dog"]
    write_list(path, ["dog", "cow"], 1_000_000_000)  # same size and mtime: still cached
    assert cached_matcher(str(path)) is first
    write_list(path, ["dog", "cow"], 2_000_000_000)
    second = cached_matcher(str(path))
    assert second is not first and second.matches("a dog and a cow") == ["cow", "dog"]
    other = tmp_path / "other.txt"
    write_list(other, ["cat"], 1_000_000_000)
    assert cached_matcher(str(other)).matches("a cat") == ["cat"]
    assert cached_matcher(str(path)) is second
    with pytest.raises(FileNotFoundError):
        cached_matcher(str(tmp_path / "missing.txt"))
