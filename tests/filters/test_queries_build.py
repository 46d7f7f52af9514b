"""The query-list builder's four sources, MetaCLIP's metadata.json, and the shipped list."""

from __future__ import annotations

import fnmatch
import gzip
import json
import math
import subprocess
import sys
import tomllib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.config import PipelineConfig
from core.layout import RunLayout
from filters.matching import QueryMatcher
from filters.queries import (
    QUERYLISTS,
    BuildSources,
    QueryListError,
    build_entries,
    corpus_tokens,
    frequent_titles,
    load_queries,
    main,
    pmi_bigrams,
    shipped_languages,
    shipped_list,
    wordfreq_words,
    write_queries,
)
from pipeline.stages.curate import queries_path
from tests.conftest import REPO
from tests.filters.conftest import ALT_TEXTS, WIKI_COUNTS, WORDNET_NAMES

CORPUS = [
    "New York is big. New York, at night",
    "I love New York",
    "new york pizza",
    "the cat and the dog",
    "the dog and the cat",
    "Hong  Kong skyline",  # two spaces: "Hong Kong" is not adjacent here
    "Hong Kong harbour; Hong Kong",
]


def test_corpus_tokens_are_metaclip_s() -> None:
    assert corpus_tokens("New York, at night.") == ["New", "York", ",", "", "at", "night", ".", ""]
    assert corpus_tokens("a\tb  c") == ["a", "b", "", "c"]


def test_pmi_bigrams_by_hand() -> None:
    found = pmi_bigrams(CORPUS, min_count=2, min_pmi=0.0)
    tokens = [t for text in CORPUS for t in corpus_tokens(text) if t]
    total = len(tokens)

    def pmi(first: str, second: str, together: int) -> float:
        return math.log2(together * total / (tokens.count(first) * tokens.count(second)))

    # "New York" 3 times (case kept: "new york" once), "Hong Kong" 2 (the double space
    # breaks a third), "the cat"/"the dog"/"and the" twice; "York ," is no pair of words.
    expected = {
        "New York": pmi("New", "York", 3),
        "Hong Kong": pmi("Hong", "Kong", 2),
        "the cat": pmi("the", "cat", 2),
        "the dog": pmi("the", "dog", 2),
        "and the": pmi("and", "the", 2),
        "cat and": pmi("cat", "and", 1),
    }
    assert set(found) == {k for k in expected if k != "cat and"}
    assert found == sorted(found, key=lambda b: (-expected[b], b))  # highest PMI first
    assert pmi_bigrams(CORPUS, min_count=3, min_pmi=0.0) == ["New York"]
    strict = expected["Hong Kong"] + 1e-9
    assert set(pmi_bigrams(CORPUS, min_count=2, min_pmi=strict)) == {
        b for b, v in expected.items() if v >= strict and b != "cat and"
    }
    # every bigram kept can match a caption of the corpus it came from
    assert all(QueryMatcher([b]).matches(" ".join(CORPUS).replace("  ", "_")) for b in found)


def test_frequent_titles() -> None:
    lines = ["title\tviews", "Eiffel_Tower\t900", "Obscure_Page\t3", "No counts here", "Bad\tx"]
    assert list(frequent_titles(lines, min_views=10)) == ["Eiffel Tower", "No counts here"]
    assert list(frequent_titles(lines, min_views=0)) == [
        "Eiffel Tower",
        "Obscure Page",
        "No counts here",
    ]


def write_sources(folder: Path) -> BuildSources:
    counts = folder / "counts.tsv.gz"
    with gzip.open(counts, "wt", encoding="utf-8") as handle:
        handle.write("word\tcount\nthe\t5000\ndog\t150\nrare\t99\nyork\t120\n")
    corpus = folder / "corpus.parquet"
    pq.write_table(pa.table({"TEXT": [*CORPUS, None]}), corpus)
    titles = folder / "titles.tsv"
    titles.write_text("Eiffel_Tower\t900\nNew_York\t800\nObscure\t1\n", encoding="utf-8")
    wordnet = folder / "wordnet.txt"
    wordnet.write_text("dog\nhot dog\nrare\n\n", encoding="utf-8")
    metadata = folder / "metadata.json"
    metadata.write_text(json.dumps(["golden retriever", "dog", " spaced "]), encoding="utf-8")
    return BuildSources(
        wiki_counts=str(counts),
        corpora=(str(corpus),),
        min_bigram_count=2,
        min_pmi=0.0,
        titles=str(titles),
        min_views=10,
        wordnet=str(wordnet),
        metadata=str(metadata),
    )


def test_build_from_every_source(tmp_path: Path) -> None:
    entries, added = build_entries(write_sources(tmp_path))
    bigrams = pmi_bigrams(CORPUS, 2, 0.0)
    assert entries == [
        "the", "dog", "york", *bigrams, "Eiffel Tower", "hot dog", "rare", "golden retriever",
        "spaced",
    ]  # fmt: skip
    assert added == {
        "wikipedia words": 3,
        "pmi bigrams": len(bigrams),
        "titles": 1,  # "New York" is a bigram already
        "wordnet names": 2,
        "metadata.json": 2,
    }


def test_metadata_json_is_a_query_list(tmp_path: Path) -> None:
    path = tmp_path / "metadata.json"
    path.write_text(json.dumps(["dog", "T-shirt", "dog", " cat "]), encoding="utf-8")
    assert load_queries(path) == ["dog", "T-shirt", "cat"]
    gz = tmp_path / "metadata.json.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    assert load_queries(gz) == ["dog", "T-shirt", "cat"]
    for bad in ('{"dog": 1}', '["dog", 3]', "[not json"):
        path.write_text(bad, encoding="utf-8")
        with pytest.raises(QueryListError, match=r"metadata\.json"):
            load_queries(path)


def test_gzipped_list_is_reproducible(tmp_path: Path) -> None:
    first, second = tmp_path / "a.txt.gz", tmp_path / "b.txt.gz"
    assert write_queries(first, ["b", "a", "b"]) == 2
    write_queries(second, ["b", "a"])
    assert first.read_bytes() == second.read_bytes()
    assert load_queries(first) == ["b", "a"]


def test_cli_builds_and_fails_in_one_line(tmp_path: Path) -> None:
    sources = write_sources(tmp_path)
    out = tmp_path / "out.txt.gz"
    code = main(
        ["build", "--out", str(out), "--wiki-counts", sources.wiki_counts, "--wordnet",
         sources.wordnet, "--corpus", sources.corpora[0], "--min-bigram-count", "3",
         "--min-pmi", "0"]
    )  # fmt: skip
    assert code == 0
    assert load_queries(out) == ["the", "dog", "york", "New York", "hot dog", "rare"]
    missing = str(tmp_path / "missing.tsv")
    run = subprocess.run(
        [sys.executable, "-m", "filters.queries", "build", "--out", str(out), "--wiki-counts",
         missing],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [f"error: query list not found: {missing}"]
    empty = tmp_path / "empty.txt"
    empty.write_text("\n", encoding="utf-8")
    assert main(["build", "--out", str(out), "--wordnet", str(empty)]) == 2
    assert load_queries(out)[0] == "the"  # a failed build leaves the old list


def test_wordfreq_words_are_matchable() -> None:
    pytest.importorskip("wordfreq")
    words = wordfreq_words("en", 1e-5)
    assert words[:3] == ["the", "to", "and"]
    assert "don't" in words and not any(c.isdigit() for w in words for c in w)
    assert not any(mark in w for w in words for mark in ",.;:?!`")
    with pytest.raises(QueryListError, match="wordfreq"):
        wordfreq_words("xx-nope", 1e-5)


def test_shipped_list() -> None:
    assert "en" in shipped_languages()
    path = shipped_list()
    assert path == QUERYLISTS / "en.txt.gz"
    lines = gzip.decompress(path.read_bytes()).decode("utf-8").split("\n")
    assert lines[-1] == "" and len(lines) - 1 == len(set(lines[:-1]))  # each entry once
    entries = lines[:-1]
    assert all(e and e == e.strip() for e in entries)
    assert 200_000 < len(entries) < 300_000
    assert entries[:3] == ["the", "of", "and"]
    assert {"dog", "golden retriever", "Hong Kong", "stainless steel", "hot air"} <= set(entries)
    with pytest.raises(QueryListError, match="no shipped query list"):
        shipped_list("xx")
    # the wheel carries it: pyproject's package data names every shipped list
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = pyproject["tool"]["setuptools"]["package-data"]["filters"]
    for shipped in QUERYLISTS.glob("*.txt.gz"):
        name = str(shipped.relative_to(REPO / "filters"))
        assert any(fnmatch.fnmatch(name, pattern) for pattern in patterns)


def test_make_queries_rebuilds_the_shipped_list(shared_data: Path, tmp_path: Path) -> None:
    pytest.importorskip("wordfreq")
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    assert "queries:" in makefile and "filters/querylists/en.txt.gz" in makefile
    out = tmp_path / "en.txt.gz"
    code = main(
        ["build", "--out", str(out), "--wiki-counts", str(shared_data / WIKI_COUNTS),
         "--wordfreq", "en", "--corpus", str(shared_data / ALT_TEXTS), "--wordnet",
         str(shared_data / WORDNET_NAMES)]
    )  # fmt: skip
    assert code == 0
    assert out.read_bytes() == shipped_list().read_bytes()


def test_a_run_without_a_list_uses_the_shipped_one(tmp_path: Path) -> None:
    config = PipelineConfig(workdir=str(tmp_path))
    assert queries_path(config, RunLayout(str(tmp_path))) == str(shipped_list())
    sandbox = RunLayout(str(tmp_path)).sandbox_queries
    Path(sandbox).parent.mkdir(parents=True)
    Path(sandbox).write_text("dog\n", encoding="utf-8")
    assert queries_path(config, RunLayout(str(tmp_path))) == sandbox
