"""Language identification with langdetect, run once per distinct caption.

langdetect draws random numbers while it detects; with `DetectorFactory.seed = 0` set in
the process, every call builds a detector seeded the same way, so a text always gets the
same answer whatever ran before it, in whichever process. Nothing is seeded on import:
`detect_language` seeds its process on every call, and pool workers, forked from a server
that has imported this module (not `fork`: the caller may have threads), are seeded once
by the pool initializer before they detect. Detection is the expensive step (~1,000x
slower than matching): it runs after the cheap rules, on the distinct captions of the
pairs still kept.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
from collections.abc import Iterable, Iterator

import pyarrow as pa
from langdetect import DetectorFactory, detect_langs
from langdetect.lang_detect_exception import LangDetectException

from pipeline.config import CurateConfig
from pipeline.record import Pair

Detection = tuple[str | None, float]
UNKNOWN: Detection = (None, 0.0)
LANGDETECT_SEED = 0


# What a worker needs, imported once by the fork server rather than by every worker.
WORKER_MODULES = ["filters.language"]


def seed_langdetect() -> None:
    """Make langdetect deterministic in this process (the pool initializer)."""
    DetectorFactory.seed = LANGDETECT_SEED


def detect_with_process_seed(text: str) -> Detection:
    """`detect_language` with whatever seed this process has: the pool workers' task."""
    try:
        best = detect_langs(text)[0]
    except (LangDetectException, IndexError):
        return UNKNOWN
    return str(best.lang), float(best.prob)


def detect_language(text: str) -> Detection:
    """The most probable language of `text` and its probability; (None, 0.0) when none."""
    seed_langdetect()
    return detect_with_process_seed(text)


def chunk_size(count: int, workers: int) -> int:
    """Texts per task: a few tasks per worker, at most 1,000 texts each."""
    return max(1, min(1000, count // (workers * 8)))


def detect_languages(texts: Iterable[str], workers: int = 1) -> dict[str, Detection]:
    """The detection of every distinct text, in a seeded process pool when `workers` > 1."""
    distinct = list(dict.fromkeys(texts))
    if workers <= 1 or len(distinct) < 2:
        return {text: detect_language(text) for text in distinct}
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(WORKER_MODULES)
    with context.Pool(workers, initializer=seed_langdetect) as pool:
        results = pool.map(detect_with_process_seed, distinct, chunk_size(len(distinct), workers))
    return dict(zip(distinct, results, strict=True))


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
    from it is detected here, in this process.
    """
    for pair in pairs:
        if not pair.kept:
            yield pair
            continue
        detection = detections.get(pair.caption)
        if detection is None:
            detection = detect_language(pair.caption)
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
