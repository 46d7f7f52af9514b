"""Real inputs for the filter tests: the 10,000 alt texts and a query list from the vocab."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from filters.queries import build_query_list

ALT_TEXTS = "alt_text/img2dataset-test_10000.parquet"
WIKI_COUNTS = "vocab/wikiwords-0.5-enwiki2012-unigram-counts.tsv.gz"
WORDNET_NAMES = "vocab/wordnet-3.0-synset-first-lemma-names.txt.gz"


@pytest.fixture(scope="session")
def alt_texts(shared_data: Path) -> list[str]:
    """The 10,000 real LAION-style alt texts (column TEXT)."""
    table = pq.read_table(shared_data / ALT_TEXTS, columns=["TEXT"])
    return [text or "" for text in table.column("TEXT").to_pylist()]


@pytest.fixture(scope="session")
def vocab_queries(shared_data: Path) -> list[str]:
    """Wikipedia words seen >= 100 times plus WordNet names: about 165k entries."""
    return build_query_list(shared_data / WIKI_COUNTS, shared_data / WORDNET_NAMES)
