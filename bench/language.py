"""Language filtering: plain langdetect on every alt text against the curation order.

The peer runs `langdetect.detect_langs` on each of the 10,000 real alt texts in one
process, as a script that filters language first would. Ours applies the cheap text rules
first, then detects each distinct surviving text once, in 2 seeded worker processes.
Both are seeded; on the texts both look at they must agree, so the speedup is the
design's, not a different answer.
"""

from __future__ import annotations

import pyarrow as pa
from langdetect import DetectorFactory, detect_langs
from langdetect.lang_detect_exception import LangDetectException

from bench.common import BenchResult, timed
from bench.matching import real_alt_texts
from filters.language import detect_languages
from filters.text import text_reasons
from pipeline.config import CurateConfig

WORKERS = 2


def plain_langdetect(texts: list[str]) -> dict[str, str | None]:
    DetectorFactory.seed = 0
    found: dict[str, str | None] = {}
    for text in texts:
        try:
            found[text] = detect_langs(text)[0].lang
        except LangDetectException:
            found[text] = None
    return found


def curated_langdetect(texts: list[str], config: CurateConfig) -> dict[str, str | None]:
    reasons = text_reasons(pa.array(texts, type=pa.string()), config).to_pylist()
    survivors = [t for t, reason in zip(texts, reasons, strict=True) if reason is None]
    detections = detect_languages(survivors, workers=WORKERS)
    return {text: language for text, (language, _) in detections.items()}


def run() -> BenchResult:
    texts = real_alt_texts()
    config = CurateConfig()
    peer, peer_seconds = timed(lambda: plain_langdetect(texts))
    ours, ours_seconds = timed(lambda: curated_langdetect(texts, config))
    disagree = [t for t in ours if ours[t] != peer[t]]
    if disagree:
        raise AssertionError(f"{len(disagree)} texts detected differently, e.g. {disagree[0]!r}")
    return BenchResult(
        name="language filter",
        unit="alt texts",
        items=len(texts),
        peer="langdetect, every text",
        peer_seconds=peer_seconds,
        ours_seconds=ours_seconds,
        note=(
            f"ours detects {len(ours):,} distinct texts that pass the text rules,"
            f" {WORKERS} processes; same language as the peer on every one"
        ),
    )
