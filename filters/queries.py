"""Query lists: read one, write one, build one from CLIP's four sources, find the shipped one.

A query list is a UTF-8 text file (gzipped when its name ends in `.gz`) with one entry per
line, or MetaCLIP's `metadata.json` (a JSON list of strings). Entries are case-sensitive
(MetaCLIP matches them as written); surrounding whitespace is stripped, blank lines and
repeated entries are skipped, first occurrence wins.

CLIP's list has four sources, built here in this order (an entry already present is not
added again): words seen at least 100 times in English Wikipedia (`frequent_words`), bigrams
with a high pointwise mutual information in a text corpus (`pmi_bigrams`), Wikipedia titles
above a view count (`frequent_titles`), and WordNet synset names. `BuildSources` names the
files; `build_entries` puts them together. The shipped lists live in `filters/querylists/`,
one `<language>.txt.gz` per language (`shipped_list`); `python -m filters.queries build`
rebuilds one (`make queries` rebuilds the English one).
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import logging
import math
import re
import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

from core import storage
from core.io import read_parquet

log = logging.getLogger(__name__)

QUERYLISTS = Path(__file__).resolve().parent / "querylists"
DEFAULT_LANGUAGE = "en"
# Bigram defaults: a pair seen 5 times, 2^7 = 128 times as often as chance would have it.
DEFAULT_MIN_PMI = 7.0
DEFAULT_MIN_BIGRAM_COUNT = 5
# Wikipedia's 100 occurrences in wikiwords' 2.24e9 tokens, as a frequency for `wordfreq`.
DEFAULT_WORDFREQ_MIN = 100 / 2.24e9
# What MetaCLIP's spacing splits off a token: a token holding one never matches in a word.
PUNCTUATION = ",.;:?!`"
SPLIT_MARKS = frozenset(PUNCTUATION + "\t\n\r")
# A word for a bigram: letters, with inner apostrophes or hyphens ("rock'n'roll", "T-shirt").
BIGRAM_WORD = re.compile(r"[^\W\d_]+(?:['’\-][^\W\d_]+)*")
LETTER = re.compile(r"[^\W\d_]")
DIGIT = re.compile(r"\d")


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


def read_bytes(path: str | Path) -> bytes:
    """The (gunzipped) bytes of a file, local or on object storage; a clear error when it
    cannot be read."""
    location = storage.name(path)
    try:
        data = storage.read_bytes(location)
        return gzip.decompress(data) if location.endswith(".gz") else data
    except FileNotFoundError:
        raise QueryListError(f"query list not found: {location}") from None
    except (OSError, EOFError) as exc:
        raise QueryListError(f"cannot read query list {location}: {exc}") from None


def read_lines(path: str | Path) -> list[str]:
    """All lines of a (possibly gzipped) UTF-8 file, local or on object storage."""
    try:
        return read_bytes(path).decode("utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise QueryListError(f"cannot read query list {storage.name(path)}: {exc}") from None


def metadata_entries(path: str | Path) -> list[str]:
    """The entries of a MetaCLIP `metadata.json`: a JSON list of strings."""
    try:
        entries = orjson.loads(read_bytes(path))
    except orjson.JSONDecodeError as exc:
        raise QueryListError(f"cannot read query list {storage.name(path)}: {exc}") from None
    if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
        raise QueryListError(f"{storage.name(path)}: a metadata.json holds a list of strings")
    return entries


def is_json(path: str | Path) -> bool:
    return storage.name(path).removesuffix(".gz").endswith(".json")


def load_queries(path: str | Path) -> list[str]:
    """The entries of the query list at `path` (one per line, or a MetaCLIP metadata.json),
    stripped and unique."""
    return unique_entries(metadata_entries(path) if is_json(path) else read_lines(path))


def queries_text(entries: Iterable[str]) -> tuple[str, int]:
    unique = unique_entries(entries)
    return "".join(entry + "\n" for entry in unique), len(unique)


def write_queries(path: str | Path, entries: Iterable[str]) -> int:
    """Write a query list atomically, one entry per line (gzipped, reproducibly, when the
    name ends in `.gz`); returns the number written."""
    text, count = queries_text(entries)
    data = text.encode("utf-8")
    if storage.name(path).endswith(".gz"):
        data = gzip.compress(data, compresslevel=9, mtime=0)
    storage.write_bytes(path, data)
    return count


def shipped_list(language: str = DEFAULT_LANGUAGE) -> Path:
    """The query list shipped for `language` (`filters/querylists/<language>.txt.gz`)."""
    path = QUERYLISTS / f"{language}.txt.gz"
    if not path.is_file():
        raise QueryListError(f"no shipped query list for language {language!r}")
    return path


def shipped_languages() -> list[str]:
    """The languages with a shipped query list, sorted."""
    return sorted(path.name.removesuffix(".txt.gz") for path in QUERYLISTS.glob("*.txt.gz"))


# ------------------------------------------------------------------ the four sources


def frequent_words(lines: Iterable[str], min_count: int) -> Iterator[str]:
    """Words of a `word<TAB>count` table (header allowed) with count >= `min_count`."""
    for line in lines:
        word, sep, count = line.rstrip("\n").rpartition("\t")
        if not sep or not count.strip().isdigit():
            continue  # the header or a malformed line
        if int(count) >= min_count:
            yield word


def matchable_word(word: str) -> bool:
    """A single token MetaCLIP's spacing leaves whole, with a letter and no digit."""
    return (
        bool(LETTER.search(word))
        and not DIGIT.search(word)
        and " " not in word
        and not SPLIT_MARKS.intersection(word)
    )


def wordfreq_words(language: str, min_frequency: float) -> list[str]:
    """Words of `wordfreq`'s large list for `language` at `min_frequency` or more, most
    frequent first, keeping those `matchable_word` accepts (wordfreq writes numbers as 0s)."""
    try:
        import wordfreq
    except ImportError:
        raise QueryListError("the wordfreq source needs `pip install wordfreq`") from None
    try:
        frequencies = wordfreq.get_frequency_dict(language, wordlist="large")
    except (LookupError, ValueError) as exc:
        raise QueryListError(f"wordfreq has no large list for {language!r}: {exc}") from None
    ranked = sorted(frequencies.items(), key=lambda item: (-item[1], item[0]))
    return [w for w, f in ranked if f >= min_frequency and matchable_word(w)]


def corpus_tokens(text: str) -> list[str]:
    """The tokens of `text` as MetaCLIP's spacing leaves them: marks split off as tokens of
    their own, split on single spaces (a double space leaves an empty token between)."""
    for mark in PUNCTUATION:
        text = text.replace(mark, f" {mark} ")
    for char in "\t\n\r":
        text = text.replace(char, " ")
    return text.split(" ")


def is_word(token: str) -> bool:
    return BIGRAM_WORD.fullmatch(token) is not None


def pmi_bigrams(
    texts: Iterable[str],
    min_count: int = DEFAULT_MIN_BIGRAM_COUNT,
    min_pmi: float = DEFAULT_MIN_PMI,
) -> list[str]:
    """Adjacent word pairs "a b" seen at least `min_count` times whose pointwise mutual
    information log2(P(a b) / (P(a) P(b))) is at least `min_pmi` bits, highest first (ties
    by bigram). Tokens are MetaCLIP's (`corpus_tokens`), so every bigram kept can match the
    text it came from; case is kept; a pair counts where both tokens are words (letters,
    inner `'` or `-`), within one text."""
    unigrams: Counter[str] = Counter()
    bigrams: Counter[tuple[str, str]] = Counter()
    for text in texts:
        tokens = corpus_tokens(text)
        unigrams.update(token for token in tokens if token)  # P(a): over non-empty tokens
        bigrams.update(itertools.pairwise(tokens))
    total = sum(unigrams.values())
    scored = []
    for (first, second), count in bigrams.items():
        if count < min_count or not (is_word(first) and is_word(second)):
            continue
        pmi = math.log2(count * total / (unigrams[first] * unigrams[second]))
        if pmi >= min_pmi:
            scored.append((-pmi, f"{first} {second}"))
    return [bigram for _, bigram in sorted(scored)]


def frequent_titles(lines: Iterable[str], min_views: int) -> Iterator[str]:
    """Titles from `title` or `title<TAB>views` lines (Wikipedia's `_` read as a space);
    a title with a view count is kept when it has at least `min_views`."""
    for line in lines:
        title, sep, views = line.rstrip("\n").rpartition("\t")
        if not sep:
            title, views = line, ""
        elif not views.strip().isdigit():
            continue  # a header or a malformed count
        if views and int(views) < min_views:
            continue
        yield title.replace("_", " ")


def corpus_texts(path: str | Path, column: str) -> list[str]:
    """The texts of a corpus: a parquet file's `column`, or the lines of a text file."""
    location = storage.name(path)
    if not location.endswith(".parquet"):
        return read_lines(path)
    try:
        table = read_parquet(location, columns=[column])
    except (OSError, KeyError, ValueError) as exc:
        raise QueryListError(f"cannot read column {column!r} of {location}: {exc}") from None
    return [text for text in table.column(column).to_pylist() if isinstance(text, str)]


@dataclass(frozen=True)
class BuildSources:
    """The files (and thresholds) a query list is built from; every source is optional."""

    wiki_counts: str = ""  # word<TAB>count (wikiwords)
    min_count: int = 100
    wordfreq_language: str = ""  # add wordfreq's words for this language at `wordfreq_min`
    wordfreq_min: float = DEFAULT_WORDFREQ_MIN
    corpora: tuple[str, ...] = ()  # texts for PMI bigrams: text files or parquet
    corpus_column: str = "TEXT"
    min_bigram_count: int = DEFAULT_MIN_BIGRAM_COUNT
    min_pmi: float = DEFAULT_MIN_PMI
    titles: str = ""  # title or title<TAB>views per line
    min_views: int = 0
    wordnet: str = ""  # one synset name per line
    metadata: str = ""  # a MetaCLIP metadata.json, added last


def source_lists(sources: BuildSources) -> list[tuple[str, list[str]]]:
    """(source name, entries) for every source given, in the order they are added."""
    out: list[tuple[str, list[str]]] = []
    if sources.wiki_counts:
        words = list(frequent_words(read_lines(sources.wiki_counts), sources.min_count))
        out.append(("wikipedia words", words))
    if sources.wordfreq_language:
        extra = wordfreq_words(sources.wordfreq_language, sources.wordfreq_min)
        out.append(("wordfreq words", extra))
    if sources.corpora:
        texts = [t for c in sources.corpora for t in corpus_texts(c, sources.corpus_column)]
        bigrams = pmi_bigrams(texts, sources.min_bigram_count, sources.min_pmi)
        out.append(("pmi bigrams", bigrams))
    if sources.titles:
        out.append(("titles", list(frequent_titles(read_lines(sources.titles), sources.min_views))))
    if sources.wordnet:
        out.append(("wordnet names", read_lines(sources.wordnet)))
    if sources.metadata:
        out.append(("metadata.json", load_queries(sources.metadata)))
    return out


def build_entries(sources: BuildSources) -> tuple[list[str], dict[str, int]]:
    """The entries of every source in order, each once, and how many each source added."""
    seen: dict[str, None] = {}
    added: dict[str, int] = {}
    for name, entries in source_lists(sources):
        before = len(seen)
        for entry in unique_entries(entries):
            seen.setdefault(entry, None)
        added[name] = len(seen) - before
    return list(seen), added


def build_query_list(
    wiki_counts_tsv: str | Path, wordnet_names: str | Path, min_count: int = 100
) -> list[str]:
    """Wikipedia words seen >= `min_count` times, then WordNet names not already present."""
    sources = BuildSources(str(wiki_counts_tsv), min_count, wordnet=str(wordnet_names))
    return build_entries(sources)[0]


# ------------------------------------------------------------------ the command line


def parser() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(prog="python -m filters.queries", description=__doc__)
    sub = cli.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build a query list from CLIP's four sources")
    build.add_argument("--out", required=True, help="the list to write (.txt or .txt.gz)")
    build.add_argument("--wiki-counts", default="", help="word<TAB>count table")
    build.add_argument("--min-count", type=int, default=100)
    build.add_argument("--wordfreq", default="", metavar="LANG", help="add wordfreq's words")
    build.add_argument("--wordfreq-min", type=float, default=DEFAULT_WORDFREQ_MIN)
    build.add_argument("--corpus", action="append", default=[], help="texts for bigrams")
    build.add_argument("--corpus-column", default="TEXT", help="text column of a parquet")
    build.add_argument("--min-bigram-count", type=int, default=DEFAULT_MIN_BIGRAM_COUNT)
    build.add_argument("--min-pmi", type=float, default=DEFAULT_MIN_PMI, help="bits")
    build.add_argument("--titles", default="", help="title or title<TAB>views per line")
    build.add_argument("--min-views", type=int, default=0)
    build.add_argument("--wordnet", default="", help="synset names, one per line")
    build.add_argument("--metadata", default="", help="a MetaCLIP metadata.json to add")
    return cli


def sources_of(args: argparse.Namespace) -> BuildSources:
    return BuildSources(
        wiki_counts=args.wiki_counts,
        min_count=args.min_count,
        wordfreq_language=args.wordfreq,
        wordfreq_min=args.wordfreq_min,
        corpora=tuple(args.corpus),
        corpus_column=args.corpus_column,
        min_bigram_count=args.min_bigram_count,
        min_pmi=args.min_pmi,
        titles=args.titles,
        min_views=args.min_views,
        wordnet=args.wordnet,
        metadata=args.metadata,
    )


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parser().parse_args(argv)
    try:
        entries, added = build_entries(sources_of(args))
        if not entries:
            raise QueryListError("no entries: give at least one source with entries")
        written = write_queries(args.out, entries)
    except QueryListError as exc:
        log.error("error: %s", exc)
        return 2
    for name, count in added.items():
        log.info("%-16s %9d entries added", name, count)
    log.info("wrote %d entries to %s", written, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
