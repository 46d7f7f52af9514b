"""Worldwide curation (MetaCLIP 2): thresholds per language, the index over every list,
the shipped lists, and a worldwide sandbox run from crawl to selected pairs."""

from __future__ import annotations

import gzip
import shutil
from collections import Counter
from hashlib import md5
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from core.config import PipelineConfig, load_config
from core.io import read_json, read_table
from core.layout import RunLayout
from filters.balance import EntryIndex, balance_mask, entry_probabilities, expected_kept
from filters.language import DEFAULT_ENGINE, detect_languages
from filters.queries import QueryListError
from filters.worldwide import (
    WORLDWIDE_LISTS,
    WorldwideIndex,
    available_lists,
    decode_codes,
    entry_thresholds,
    is_word,
    language_thresholds,
    language_words,
    tail_fraction,
    threshold_for,
    worldwide_index,
)
from pipeline.stages.crawl import run_crawl
from pipeline.stages.curate import run_curate
from sandbox.concepts import (
    CAPTION_LANGUAGES,
    COLOURS,
    SHAPES,
    caption_language,
    make_caption,
    sample_concept,
)


def test_tail_fraction_and_threshold_on_a_worked_example() -> None:
    # English: entries seen 1, 2, 3, 4, 10, 20 times; t_en = 5 puts 1+2+3+4 = 10 of the
    # 40 matches in the tail: p = 0.25.
    english = np.array([1, 2, 3, 4, 10, 20])
    assert tail_fraction(english, 5) == 0.25
    # German: 20 matches. Tails for t = 2, 3, 7, 11: 2/20, 4/20, 10/20, 20/20; 4/20 = 0.2
    # is nearest 0.25, so t_de = 3 (entries seen <= 2 times are the tail).
    german = np.array([1, 1, 2, 6, 10, 0])
    assert threshold_for(german, 0.25) == 3
    assert tail_fraction(german, 3) == 0.2
    # p = 0 (no English tail) gives the smallest count (an empty tail); p = 1 a t above all.
    assert threshold_for(german, 0.0) == 1
    assert threshold_for(german, 1.0) == 11
    assert threshold_for(np.zeros(4, dtype=np.int64), 0.3) == 1


def test_language_thresholds_per_language(tmp_path: Path) -> None:
    lists = {}
    for code, entries in {"en": ["a", "b", "c"], "de": ["x", "y"], "fr": ["p", "q", "r"]}.items():
        lists[code] = str(tmp_path / f"{code}.txt")
        Path(lists[code]).write_text("\n".join(entries) + "\n")
    index = WorldwideIndex(lists)
    assert index.languages == ["de", "en", "fr"]
    assert [index.span(code) for code in index.languages] == [slice(0, 2), slice(2, 5), slice(5, 8)]
    # de: x=1, y=9 | en: a=1, b=3, c=6 | fr: p=2, q=2, r=16
    counts = np.array([1, 9, 1, 3, 6, 2, 2, 16])
    p, thresholds = language_thresholds(counts, index, t_en=5)
    assert p == pytest.approx(0.4)  # (1 + 3) / 10
    assert thresholds == {"en": 5, "de": 2, "fr": 3}  # de tail 1/10; fr tail 4/20 = 0.2
    per_entry = entry_thresholds(index, thresholds)
    assert per_entry.tolist() == [2, 2, 5, 5, 5, 3, 3, 3]
    chances = entry_probabilities(counts, per_entry)
    assert chances.tolist() == pytest.approx([1, 2 / 9, 1, 1, 5 / 6, 1, 1, 3 / 16])


def test_per_entry_thresholds_balance_like_one_t_where_equal() -> None:
    rng = np.random.default_rng(0)
    index = EntryIndex([f"e{i}" for i in range(20)])
    counts = rng.integers(1, 200, size=20)
    matched = pa.array([[f"e{j}" for j in rng.choice(20, 3)] for _ in range(500)])
    uids = pa.array([md5(str(i).encode()).hexdigest() for i in range(500)])
    one = balance_mask(uids, matched, counts, index, 40, seed=3)
    each = balance_mask(uids, matched, counts, index, np.full(20, 40), seed=3)
    assert one.tolist() == each.tolist() and 0 < one.sum() < 500
    expected = expected_kept(matched, counts, index, 40)
    assert abs(expected - one.sum()) < 4 * np.sqrt(expected)  # near MetaCLIP's expectation


def test_index_matches_each_caption_against_its_language(tmp_path: Path) -> None:
    files = {"en": ["red", "circle"], "fr": ["rouge", "cercle", "red"]}
    lists = {}
    for code, entries in files.items():
        lists[code] = str(tmp_path / f"{code}.txt")
        Path(lists[code]).write_text("\n".join(entries) + "\n")
    index = WorldwideIndex(lists)
    captions = pa.array(["a red circle", "un cercle rouge red", "un cercle rouge", "x"])
    codes = index.match(captions, ["en", "fr", "de", None])
    entries = index.entries()
    assert decode_codes(codes, entries).to_pylist() == [
        ["circle", "red"],
        ["cercle", "red", "rouge"],
        [],  # no German list
        [],
    ]
    assert index.language_of("no") is None and index.language_of("fr") == "fr"


def test_shipped_lists_cover_the_spaced_languages_only() -> None:
    shipped = available_lists()
    assert {"de", "fr", "es", "it", "nl", "pt", "nb", "sv", "da", "ca", "ru", "ar"} <= set(shipped)
    assert not {"zh", "ja", "ko", "th", "en"} & set(shipped)  # en is curate.queries
    german = gzip.decompress((WORLDWIDE_LISTS / "de.txt.gz").read_bytes()).decode().split("\n")
    assert {"und", "Und", "Haus", "rot", "Rot"} <= set(german)  # capitalised: case-sensitive
    assert all(is_word(entry) for entry in german if entry)


def test_sandbox_vocabulary_is_in_each_shipped_list() -> None:
    for code, language in CAPTION_LANGUAGES.items():
        assert set(language.shapes) == set(SHAPES) and set(language.colours) == set(COLOURS)
        path = available_lists()[code]
        entries = set(gzip.decompress(Path(path).read_bytes()).decode().split("\n"))
        colours = set(language.colours.values())
        assert len(colours & entries) >= 6, code  # the colour words are entries to match


SETTINGS = [
    "sandbox.hosts=2", "sandbox.pages_per_host=12", "sandbox.images_per_page=8",
    "sandbox.heldout_per_class=1",
    "sandbox.languages=['en','fr','de','es','it','nl','pt']", "crawl.per_host_delay=0",
    "curate.mode='worldwide'", "curate.balance_threshold=6",
]  # fmt: skip


def settings(workdir: Path, *extra: str) -> PipelineConfig:
    """The run's config; its lists: the shipped ones of the sandbox's languages."""
    lists = workdir.parent / "lists"
    if not lists.exists():
        lists.mkdir(parents=True)
        for code in CAPTION_LANGUAGES:
            shutil.copy(WORLDWIDE_LISTS / f"{code}.txt.gz", lists)
    overrides = [f"workdir='{workdir}'", f"curate.worldwide_lists='{lists}'", *SETTINGS]
    return load_config(None, [*overrides, *extra])


@pytest.fixture(scope="module")
def worldwide_run(tmp_path_factory: pytest.TempPathFactory) -> RunLayout:
    config = settings(tmp_path_factory.mktemp("worldwide") / "run", "executor.workers=2")
    run_crawl(config, quiet=True)
    run_curate(config, quiet=True)
    return RunLayout(config.root)


def test_worldwide_sandbox_run_keeps_every_language(worldwide_run: RunLayout) -> None:
    selected = read_table(worldwide_run.selected)
    languages = set(selected.column("language").to_pylist())
    assert {"en", "fr", "de", "es", "it", "nl", "pt"} <= languages
    report = read_json(str(Path(worldwide_run.curate_dir) / "worldwide.json"))
    assert report["thresholds"]["en"] == 6
    assert set(report["thresholds"]) == {"en", *CAPTION_LANGUAGES}  # the lists given
    assert report["selected"] == selected.num_rows
    for counts in report["languages"].values():
        assert 0 <= counts["after"] <= counts["before"]
    french = selected.filter(pa.compute.equal(selected.column("language"), "fr"))
    for row in french.to_pylist():  # matched against the French list, in French words
        assert any(entry in row["caption"].split() for entry in row["matched"])


def test_worldwide_run_drops_no_pair_of_a_listed_language(worldwide_run: RunLayout) -> None:
    dropped = set(read_table(worldwide_run.dropped).column("drop_reason").to_pylist())
    assert not {f"language:{code}" for code in ["en", *CAPTION_LANGUAGES]} & dropped
    report = read_json(str(Path(worldwide_run.curate_dir) / "worldwide.json"))
    assert abs(report["expected_selected"] - report["selected"]) < 3 * report["selected"] ** 0.5


def test_worldwide_selection_is_the_same_for_any_partitioning(
    worldwide_run: RunLayout, tmp_path: Path
) -> None:
    again = tmp_path / "again"
    shutil.copytree(worldwide_run.root, again, ignore=shutil.ignore_patterns("curate"))
    run_curate(settings(again, "executor.workers=1", "part_rows=40"), quiet=True)

    def chosen(layout: RunLayout) -> list[tuple[str, str, list[str]]]:
        rows = read_table(layout.selected).to_pylist()
        return sorted((r["uid"], r["language"], r["matched"]) for r in rows)

    assert chosen(RunLayout(str(again))) == chosen(worldwide_run)


def test_sandbox_captions_are_detected_in_their_language() -> None:
    languages = ("en", *CAPTION_LANGUAGES)
    captions: dict[str, str] = {}
    for i in range(1500):
        key = f"item-{i}"
        caption = make_caption(sample_concept(key, 0), key, 0, languages)
        captions[caption] = caption_language(key, 0, languages)
    shares = Counter(captions.values())
    assert set(shares) == set(languages) and shares["en"] > 2 * shares["fr"]
    found = detect_languages(list(captions), 1, DEFAULT_ENGINE)
    assert {text: found[text][0] for text in captions} == captions
    assert make_caption(sample_concept("x", 0), "x", 0) == make_caption(
        sample_concept("x", 0), "x", 0, ("en",)
    )  # English-only captions are what they were


def test_a_folder_without_lists_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(QueryListError, match=r"no <language>\.txt or \.txt\.gz entry lists"):
        worldwide_index(str(tmp_path / "en.txt"), str(tmp_path / "nothing"))


def test_list_builder_takes_words_and_their_capitalised_forms() -> None:
    pytest.importorskip("wordfreq")
    assert is_word("l'eau") and is_word("Straße") and is_word("हिन्दी")
    assert not any(is_word(t) for t in ["2019", "abc1", "-ab", "ab-", "a.b", "", "%"])
    words = language_words("de", 50)
    lower, upper = words[:50], words[50:]
    assert len(words) == 100 and all(is_word(w) for w in words)
    assert upper == [w[:1].upper() + w[1:] for w in lower] and "und" in lower
    shipped = gzip.decompress((WORLDWIDE_LISTS / "de.txt.gz").read_bytes()).decode().split()
    assert shipped[:50] == lower  # the shipped list starts with the same words, same order
