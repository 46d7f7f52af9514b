from __future__ import annotations

import os
import random
from collections import defaultdict
from pathlib import Path

import pyarrow as pa
import pytest

from bench.matching import MetaclipMatcher, metaclip_spacing
from core.record import Pair
from filters import matching
from filters.matching import (
    QueryMatcher,
    cached_matcher,
    match_captions,
    match_pairs,
    naive_matches,
    spaced_captions,
    spacing,
)
from filters.queries import load_queries, shipped_list

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


def test_equals_metaclip_on_real_alt_texts_with_the_shipped_list(alt_texts: list[str]) -> None:
    entries = load_queries(shipped_list())
    ours = QueryMatcher(entries)
    theirs = MetaclipMatcher(entries)
    found = match_captions(pa.array(alt_texts), ours).to_pylist()
    assert found == [theirs.matches(text) for text in alt_texts]
    assert sum(map(len, found)) > 20_000  # a full list finds plenty
    assert any(" " in entry for entries_found in found for entry in entries_found)
    batches = [alt_texts[i : i + 777] for i in range(0, len(alt_texts), 777)]
    chunked = pa.chunked_array([pa.array(batch) for batch in batches])
    assert match_captions(chunked, ours).to_pylist() == found


@pytest.mark.parametrize(
    "entries",
    [
        [" dog", "dog ", "hot  dog", "a", " ", "dog"],  # spaces MetaCLIP pads around as given
        ["dog", "dog days", "dog days of", "dog days of summer", "days"],
        ["é", "café", "naïve café", "日本", "日本 語"],
    ],
)
def test_entries_with_odd_spacing_match_like_metaclip(entries: list[str]) -> None:
    texts = [
        "dog", " dog", "dog ", "hot  dog", "hot dog", "a  dog  a", "  ", "", "a",
        "the dog days of summer.", "dog days, of summer", "café", "naïve café!", "日本 語",
        "dog\tdays", "dogdays", "a dog", "dog a",
    ]  # fmt: skip
    matcher = QueryMatcher(entries)
    reference = MetaclipMatcher(sorted({e for e in entries if e}))
    for text in texts:
        assert matcher.matches(text) == reference.matches(text) == naive_matches(text, entries)


def test_a_hash_collision_is_no_match(monkeypatch: pytest.MonkeyPatch) -> None:
    # With base 1 a long span's key is the sum of its 8-byte words: the two halves of an
    # entry swapped key alike, and only the byte comparison tells them apart. Spans of up
    # to 7 bytes are their own keys: "god" never keys like "dog".
    monkeypatch.setattr(matching, "HASH_BASES", (1,))
    matcher = QueryMatcher(["abcdefghijklmnop", "dog"])
    assert matcher.matches("ijklmnopabcdefgh abcdefghijklmnop, god") == ["abcdefghijklmnop"]
    assert matcher.matches("ijklmnopabcdefgh god") == []
    assert QueryMatcher(["dog", "god"]).matches("dog") == ["dog"]
    with pytest.raises(ValueError, match="collide"):
        QueryMatcher(["abcdefghijklmnop", "ijklmnopabcdefgh"])  # no base keys them apart


def test_random_texts_and_entries_match_like_the_loop() -> None:
    rng = random.Random(7)
    pieces = ["a", "ab", "abcdefgh", "abcdefghi", "ü", "日本", " ", "  ", ",", ".", "\t", "x!"]
    entries = ["".join(rng.choices(pieces, k=rng.randint(1, 4))).strip() for _ in range(300)]
    texts = ["".join(rng.choices(pieces, k=rng.randint(0, 12))) for _ in range(400)]
    matcher = QueryMatcher(entries)
    found = match_captions(pa.array(texts), matcher).to_pylist()
    assert found == [naive_matches(text, entries) for text in texts]
    assert sum(map(len, found)) > 400 and any(len(e) > 7 for f in found for e in f)


def test_word_runs_never_cross_captions() -> None:
    matcher = QueryMatcher(["new york", "york city"])
    found = match_captions(
        pa.array(["new", "york", "city", "new york", None, "york city"]), matcher
    )
    assert found.to_pylist() == [[], [], [], ["new york"], [], ["york city"]]


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
