"""Query matching: MetaCLIP's reference loop against `filters.matching.QueryMatcher`.

Input: the 10,000 real alt texts of img2dataset's test file and a query list built from
the offline Wikipedia words (count >= 100) and WordNet synset names. The peer is the loop
MetaCLIP's `substr_matching.py` describes (`" " + entry + " "` in the spaced text, entry
by entry); it is timed on a sample and scaled, since it costs tens of ms per text. Both
must give the same matches on the sample.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from bench.common import BenchResult, shared_data, timed
from filters.matching import QueryMatcher, match_captions, naive_matches
from filters.queries import build_query_list

PEER_SAMPLE = 200


def real_alt_texts() -> list[str]:
    data = shared_data()
    if data is None:
        raise FileNotFoundError("shared data not found: the benchmark needs real alt texts")
    table = pq.read_table(data / "alt_text" / "img2dataset-test_10000.parquet", columns=["TEXT"])
    return [t for t in table.column("TEXT").to_pylist() if t]


def query_entries() -> list[str]:
    data = shared_data()
    assert data is not None
    vocab = data / "vocab"
    return build_query_list(
        vocab / "wikiwords-0.5-enwiki2012-unigram-counts.tsv.gz",
        vocab / "wordnet-3.0-synset-first-lemma-names.txt.gz",
    )


def run() -> BenchResult:
    texts = real_alt_texts()
    entries = query_entries()
    matcher, build_seconds = timed(lambda: QueryMatcher(entries))
    column = pa.array(texts, type=pa.string())
    found, ours_seconds = timed(lambda: match_captions(column, matcher))
    ours = found.to_pylist()
    sample = texts[:PEER_SAMPLE]
    peer, peer_sample_seconds = timed(lambda: [naive_matches(t, entries) for t in sample])
    if peer != ours[:PEER_SAMPLE]:
        raise AssertionError("QueryMatcher disagrees with the reference loop")
    return BenchResult(
        name="query matching",
        unit="alt texts",
        items=len(texts),
        peer="MetaCLIP reference loop",
        peer_seconds=peer_sample_seconds * len(texts) / len(sample),
        ours_seconds=ours_seconds,
        note=(
            f"{len(entries):,} entries; automaton built in {build_seconds:.1f} s (once);"
            f" peer timed on {len(sample)} texts and scaled; matches identical on those"
        ),
    )
