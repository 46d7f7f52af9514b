"""Query lists: read one, write one, and build one from the offline vocabulary sources.

A query list is a UTF-8 text file with one entry per line. Entries are case-sensitive
(MetaCLIP matches them as written); surrounding whitespace is stripped, blank lines and
repeated entries are skipped, first occurrence wins.

CLIP's list has four sources (Wikipedia words >= 100 times, high-PMI bigrams, popular
Wikipedia titles, WordNet synsets); `build_query_list` covers the two available offline:
Wikipedia unigram counts and WordNet synset names.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterable, Iterator
from pathlib import Path

from pipeline import storage
from pipeline.io import write_text


class QueryListError(ValueError):
    """A query list or vocabulary file that cannot be read; the message names the file."""


def unique_entries(lines: Iterable[str]) -> list[str]:
    """Stripped, non-blank entries in first-seen order, each once."""
    seen: dict[str, None] = {}
    for line in lines:
        entry = line.strip()
        if entry:
            seen.setdefault(entry, None)
    return list(seen)


def read_lines(path: str | Path) -> list[str]:
    """All lines of a (possibly gzipped) UTF-8 file, local or on object storage; a clear
    error when it cannot be read."""
    location = storage.name(path)
    try:
        data = storage.read_bytes(location)
        if location.endswith(".gz"):
            data = gzip.decompress(data)
        return data.decode("utf-8").splitlines()
    except FileNotFoundError:
        raise QueryListError(f"query list not found: {location}") from None
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise QueryListError(f"cannot read query list {location}: {exc}") from None


def load_queries(path: str | Path) -> list[str]:
    """The entries of the query list at `path` (one per line, stripped, unique)."""
    return unique_entries(read_lines(path))


def write_queries(path: str | Path, entries: Iterable[str]) -> int:
    """Write a query list atomically, one entry per line; returns the number written."""
    unique = unique_entries(entries)
    write_text(path, "".join(entry + "\n" for entry in unique))
    return len(unique)


def frequent_words(lines: Iterable[str], min_count: int) -> Iterator[str]:
    """Words of a `word<TAB>count` table (header allowed) with count >= `min_count`."""
    for line in lines:
        word, sep, count = line.rstrip("\n").rpartition("\t")
        if not sep or not count.strip().isdigit():
            continue  # the header or a malformed line
        if int(count) >= min_count:
            yield word


def build_query_list(
    wiki_counts_tsv: str | Path, wordnet_names: str | Path, min_count: int = 100
) -> list[str]:
    """Wikipedia words seen >= `min_count` times, then WordNet names not already present."""
    words = frequent_words(read_lines(wiki_counts_tsv), min_count)
    synsets = read_lines(wordnet_names)
    return unique_entries([*words, *synsets])
