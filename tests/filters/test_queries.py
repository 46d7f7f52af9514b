from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from filters.queries import QueryListError, build_query_list, load_queries, write_queries
from tests.filters.conftest import WIKI_COUNTS, WORDNET_NAMES


def test_load_queries_strips_and_skips(tmp_path: Path) -> None:
    path = tmp_path / "queries.txt"
    path.write_text("dog\n  cat  \n\n\t\nDog\ndog\nT-shirt\ncafé au lait\n", encoding="utf-8")
    assert load_queries(path) == ["dog", "cat", "Dog", "T-shirt", "café au lait"]


def test_load_queries_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(QueryListError, match=r"not found: .*nope\.txt"):
        load_queries(tmp_path / "nope.txt")


def test_load_queries_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(QueryListError, match="cannot read"):
        load_queries(path)


def test_write_then_load_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "out" / "queries.txt"
    assert write_queries(path, ["b", "a", "b", " c "]) == 3
    assert load_queries(path) == ["b", "a", "c"]
    assert [p.name for p in path.parent.iterdir()] == ["queries.txt"]


def test_build_from_small_files(tmp_path: Path) -> None:
    counts = tmp_path / "counts.tsv.gz"
    with gzip.open(counts, "wt", encoding="utf-8") as handle:
        handle.write("word\tcount\nthe\t5000\ndog\t150\nrare\t99\ncat\t100\n")
    names = tmp_path / "names.txt"
    names.write_text("dog\nhot dog\nrare\n\nhot dog\n", encoding="utf-8")
    assert build_query_list(counts, names) == ["the", "dog", "cat", "hot dog", "rare"]
    assert build_query_list(counts, names, min_count=1000) == ["the", "dog", "hot dog", "rare"]


def test_build_from_shared_vocab(shared_data: Path, vocab_queries: list[str]) -> None:
    entries = vocab_queries
    assert len(entries) == len(set(entries))
    assert entries[:4] == ["the", "of", "and", "in"]  # Wikipedia words come first, by count
    with gzip.open(shared_data / WORDNET_NAMES, "rt", encoding="utf-8") as handle:
        synsets = {line.strip() for line in handle if line.strip()}
    with gzip.open(shared_data / WIKI_COUNTS, "rt", encoding="utf-8") as handle:
        words = {line.split("\t")[0] for line in list(handle)[1:]}
    # every source entry is present exactly once: all words (min count is 109) + new synsets
    assert set(entries) == words | synsets
    assert len(entries) == len(words | synsets)
    assert 150_000 < len(entries) < 200_000
    present = set(entries)
    assert {"dog", "golden retriever", "hot air", "'hood"} <= present
    higher = build_query_list(shared_data / WIKI_COUNTS, shared_data / WORDNET_NAMES, 10_000)
    assert len(higher) < len(entries)
    assert set(higher) >= synsets
