"""Worldwide curation (MetaCLIP 2): an entry list per language, a threshold per language.

Each caption is matched (MetaCLIP's rules, `filters.matching`) against the entry list of
its detected language; English keeps its own list (`curate.queries`). Entries of all
languages are numbered in one space, language by language in code order (`WorldwideIndex`),
so counting and balancing run as in English mode. The threshold: English keeps t_en
(`curate.balance_threshold`); p = the fraction of English matches that fall in tail
entries (c_e < t_en, MetaCLIP 2's `t_to_p`); every other language gets the t whose tail
holds the same fraction p of its matches (`threshold_for`, MetaCLIP 2's `p_to_t`).

The shipped lists (`filters/querylists/worldwide/<code>.txt.gz`, `make worldwide-lists`)
hold the WORDS_PER_LANGUAGE most frequent words of each language in `wordfreq` (CC-BY-SA
4.0 data: Wikipedia, subtitles, news, books, web text, ...), each also capitalised, since
matching is case-sensitive and wordfreq's words are lower-case. Languages written without
spaces between words (Chinese, Japanese, Thai) and Korean (whose wordfreq entries are
morphemes, not space-separated words) are left out: word-boundary matching cannot find
their words without a segmenter.
"""

from __future__ import annotations

import argparse
import functools
import logging
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from core import storage
from filters.balance import EntryIndex
from filters.matching import QueryMatcher, cached_matcher, match_codes
from filters.queries import QueryListError, load_queries, write_queries

log = logging.getLogger(__name__)

WORLDWIDE_LISTS = Path(__file__).parent / "querylists" / "worldwide"
WORDS_PER_LANGUAGE = 10_000
ENGLISH = "en"
# wordfreq's languages without a shipped list: no spaces between words, or morphemes.
UNSPACED = ("ja", "ko", "th", "zh")
# Detected code (fastText, langdetect) -> list name (wordfreq's code).
LIST_NAMES = {"no": "nb", "tl": "fil", "hr": "sh", "sr": "sh", "bs": "sh"}
JOINERS = frozenset("'’-")


# ---- building the shipped lists (wordfreq is needed only here) -----------------------------


def is_word(token: str) -> bool:
    """Letters and marks (with inner apostrophes or hyphens): no digits, no punctuation."""
    if not token[:1].isalpha() or token[-1] in JOINERS:
        return False
    return all(unicodedata.category(c)[0] in "LM" or c in JOINERS for c in token)


def language_words(language: str, size: int) -> list[str]:
    """The `size` most frequent words of `language` in wordfreq, each then capitalised."""
    from wordfreq import top_n_list

    words = [w for w in top_n_list(language, size * 2, wordlist="best") if is_word(w)]
    words = words[:size]
    return words + [word[:1].upper() + word[1:] for word in words]


def buildable_languages() -> list[str]:
    from wordfreq import available_languages

    found = available_languages(wordlist="best")
    return sorted(code for code in found if code not in UNSPACED and code != ENGLISH)


def build_lists(folder: Path = WORLDWIDE_LISTS, size: int = WORDS_PER_LANGUAGE) -> dict[str, int]:
    """Write `<code>.txt.gz` for every buildable language; returns entries per language."""
    written = {}
    for language in buildable_languages():
        written[language] = write_queries(
            folder / f"{language}.txt.gz", language_words(language, size)
        )
        log.info("worldwide list %s: %d entries", language, written[language])
    return written


# ---- the lists of a run --------------------------------------------------------------------


def matcher_order(entries: Iterable[str]) -> list[str]:
    """Entries numbered as `QueryMatcher` numbers them: distinct, non-empty, sorted."""
    return sorted({entry for entry in entries if entry})


def list_name(language: str) -> str:
    return LIST_NAMES.get(language, language)


def available_lists(folder: str | Path = "") -> dict[str, str]:
    """{list name: path} of the `<name>.txt[.gz]` files in `folder` (default: shipped)."""
    location = str(folder) if str(folder) else str(WORLDWIDE_LISTS)
    found: dict[str, str] = {}
    for path in sorted(storage.list_files(location)):
        name = storage.basename(path)
        for suffix in (".txt.gz", ".txt"):
            if name.endswith(suffix):
                found.setdefault(name.removesuffix(suffix), path)
    return found


class WorldwideIndex:
    """Every language's entries in one numbering: language by language in code order, each
    language's entries in its matcher's order (sorted, distinct). Lists are read up front;
    a language's automaton is built the first time a caption of it is matched."""

    def __init__(self, lists: Mapping[str, str]) -> None:
        self.languages = sorted(lists)
        self.paths = dict(lists)
        self.values = {code: matcher_order(load_queries(lists[code])) for code in self.languages}
        sizes = [len(self.values[code]) for code in self.languages]
        self.offsets = dict(zip(self.languages, np.cumsum([0, *sizes[:-1]]).tolist(), strict=True))
        self.sizes = dict(zip(self.languages, sizes, strict=True))
        self.total = int(sum(sizes))

    def matcher(self, language: str) -> QueryMatcher:
        matcher = cached_matcher(self.paths[language])
        if len(matcher) != self.sizes[language]:
            raise ValueError(f"{self.paths[language]} changed while curating")
        return matcher

    def language_of(self, language: str | None) -> str | None:
        """The list a detected language is matched against, None when it has none."""
        if language is None:
            return None
        name = ENGLISH if language == ENGLISH else list_name(language)
        return name if name in self.paths else None

    def span(self, language: str) -> slice:
        start = self.offsets[language]
        return slice(start, start + self.sizes[language])

    def entries(self) -> pa.Array:
        values = [entry for code in self.languages for entry in self.values[code]]
        return pa.array(values, type=pa.string())

    def entry_language(self) -> np.ndarray:
        """The position in `languages` of each entry's language."""
        sizes = [self.sizes[code] for code in self.languages]
        return np.repeat(np.arange(len(self.languages)), sizes)

    def match(
        self, captions: pa.Array | pa.ChunkedArray, languages: Sequence[str | None]
    ) -> pa.ListArray:
        """list<int32> per caption: global numbers of the entries of its language's list that
        it matches ([] for a language without a list)."""
        captions = captions.combine_chunks() if isinstance(captions, pa.ChunkedArray) else captions
        lists: list[list[int]] = [[] for _ in range(len(captions))]
        names = [self.language_of(language) for language in languages]
        for code in sorted({name for name in names if name is not None}):
            rows = [row for row, name in enumerate(names) if name == code]
            found = match_codes(captions.take(pa.array(rows, type=pa.int64())), self.matcher(code))
            offset = self.offsets[code]
            for row, codes in zip(rows, found.to_pylist(), strict=True):
                lists[row] = [offset + c for c in codes]
        return pa.array(lists, type=pa.list_(pa.int32()))


@functools.lru_cache(maxsize=4)
def worldwide_index(english: str, folder: str = "") -> WorldwideIndex:
    """The index of a run: English from `english`, every other shipped (or given) list."""
    lists = {code: path for code, path in available_lists(folder).items() if code != ENGLISH}
    if not lists:
        where = folder or WORLDWIDE_LISTS
        raise QueryListError(f"no <language>.txt or .txt.gz entry lists in {where}")
    return WorldwideIndex({ENGLISH: english, **lists})


@functools.lru_cache(maxsize=4)
def global_entry_index(english: str, folder: str = "") -> EntryIndex:
    return EntryIndex(worldwide_index(english, folder).entries())


def decode_codes(codes: pa.ListArray | pa.ChunkedArray, entries: pa.Array) -> pa.ListArray:
    """The entries (list<string>) that global entry numbers stand for."""
    if isinstance(codes, pa.ChunkedArray):
        codes = codes.combine_chunks()
    offsets = pc.subtract(codes.offsets, codes.offsets[0])
    return pa.ListArray.from_arrays(offsets, entries.take(pc.list_flatten(codes)))


# ---- thresholds (MetaCLIP 2) ---------------------------------------------------------------


def tail_fraction(counts: np.ndarray, t: int) -> float:
    """The fraction of all matches that fall in tail entries (c_e < t); 0 with no match."""
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    return float(counts[counts < t].sum() / total) if total else 0.0


def threshold_for(counts: np.ndarray, p: float) -> int:
    """The t whose tail holds the fraction of matches nearest `p`: t = v + 1 for a count v
    of the language (so entries with c_e <= v are the tail), or its smallest count (an
    empty tail); the smallest such t on a tie. 1 for a language without matches."""
    values = np.unique(np.asarray(counts, dtype=np.int64))
    values = values[values > 0]
    if not len(values):
        return 1
    candidates = np.concatenate([[values[0]], values + 1])
    fractions = np.array([tail_fraction(counts, int(t)) for t in candidates])
    return int(candidates[int(np.argmin(np.abs(fractions - p)))])


def language_thresholds(
    counts: np.ndarray, index: WorldwideIndex, t_en: int
) -> tuple[float, dict[str, int]]:
    """(p, {language: t}): English keeps t_en, the others the t of the same tail fraction."""
    p = tail_fraction(counts[index.span(ENGLISH)], t_en)
    thresholds = {ENGLISH: t_en}
    for code in index.languages:
        if code != ENGLISH:
            thresholds[code] = threshold_for(counts[index.span(code)], p)
    return p, thresholds


def entry_thresholds(index: WorldwideIndex, thresholds: Mapping[str, int]) -> np.ndarray:
    """int64 per global entry: the t of its language."""
    per_language = np.array([thresholds[code] for code in index.languages], dtype=np.int64)
    return per_language[index.entry_language()]


def language_counts(languages: Iterable[str | None]) -> dict[str, int]:
    """{language: rows}, most first (ties by code); None counted as "unknown"."""
    counted: dict[str, int] = {}
    for language in languages:
        key = language or "unknown"
        counted[key] = counted.get(key, 0) + 1
    return dict(sorted(counted.items(), key=lambda item: (-item[1], item[0])))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m filters.worldwide")
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="write the per-language lists from wordfreq")
    build.add_argument("--out", type=Path, default=WORLDWIDE_LISTS)
    build.add_argument("--words", type=int, default=WORDS_PER_LANGUAGE)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    written = build_lists(args.out, args.words)
    log.info("%d languages, %d entries in %s", len(written), sum(written.values()), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
