"""Language identification: how right each engine is, and how fast the pipeline's step is.

Quality: every engine and cascade on the labelled short texts (`bench.language_labels`):
per label, how many are kept as English (curate.languages = ["en"], curate's default
min_language_score); English recall, the share of other languages kept as English, and
the share of names and brands (`none`) kept.

Speed: the language step as curation runs it (one process, `detect_languages` over the
distinct texts that pass the text rules, the default engine) against plain seeded
langdetect over the same distinct texts in one process, CPU seconds. On the 10,000 real
alt texts both run every text; on the 1M-text synthetic mix (spans of 2-12 words cut from
the real alt texts and the catalog messages, seeded) ours runs all of them and the peer a
seeded sample of SAMPLE texts, its rate scaled to the whole. Figures also go to
runs/bench/language.json.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from bench.common import BENCH_DIR, BenchResult, cpu_timed
from bench.language_labels import LabelledText, alt_text_set, catalog_set
from bench.matching import real_alt_texts
from core.config import LANGUAGE_ENGINES, CurateConfig
from core.io import write_json
from filters.language import DEFAULT_ENGINE, detect_langdetect, detect_languages, language_reason
from filters.text import text_reasons

log = logging.getLogger(__name__)

ENGINES = [engine for engine in LANGUAGE_ENGINES if engine != "none"]
MIX_TEXTS = 1_000_000
SAMPLE = 3_000  # texts of the mix the peer detects
MIX_SEED = 0


# ---- quality ---------------------------------------------------------------------------


def kept_as_english(texts: Sequence[str], engine: str, config: CurateConfig) -> dict[str, bool]:
    found = detect_languages(texts, 1, engine)
    return {text: language_reason(found[text], config) is None for text in found}


def english_figures(labelled: Sequence[LabelledText], kept: dict[str, bool]) -> dict[str, Any]:
    """Per label: texts and those kept as English; then recall, precision and leak rates."""
    labels: dict[str, list[int]] = {}
    for text, label in labelled:
        counts = labels.setdefault(label, [0, 0])
        counts[0] += 1
        counts[1] += int(kept[text])
    english = labels.get("en", [0, 0])
    others = [counts for label, counts in labels.items() if label not in ("en", "none")]
    other_total, other_kept = sum(c[0] for c in others), sum(c[1] for c in others)
    names = labels.get("none", [0, 0])
    all_kept = english[1] + other_kept + names[1]
    return {
        "english_recall": english[1] / english[0] if english[0] else None,
        "others_kept_as_english": other_kept / other_total if other_total else None,
        "names_kept_as_english": names[1] / names[0] if names[0] else None,
        "precision": english[1] / all_kept if all_kept else None,
        "labels": {
            label: {"texts": c[0], "kept_as_english": c[1]} for label, c in sorted(labels.items())
        },
    }


def quality_table(sets: dict[str, list[LabelledText]]) -> dict[str, dict[str, Any]]:
    """{engine: {set name: english_figures}} for every engine."""
    config = CurateConfig(languages=("en",))
    texts = sorted({text for labelled in sets.values() for text, _ in labelled})
    table: dict[str, dict[str, Any]] = {}
    for engine in ENGINES:
        kept = kept_as_english(texts, engine, config)
        table[engine] = {name: english_figures(labelled, kept) for name, labelled in sets.items()}
    return table


def share(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def quality_lines(table: dict[str, dict[str, Any]]) -> list[str]:
    lines = []
    for engine, sets in table.items():
        parts = [
            f"{name}: recall {share(f['english_recall'])},"
            f" others kept {share(f['others_kept_as_english'])},"
            f" names kept {share(f['names_kept_as_english'])}"
            for name, f in sets.items()
        ]
        lines.append(f"{engine:<20} " + " | ".join(parts))
    return lines


# ---- speed -----------------------------------------------------------------------------


def step_texts(texts: Sequence[str], config: CurateConfig) -> list[str]:
    """The distinct texts the pipeline's language step sees: those passing the text rules."""
    reasons = text_reasons(pa.array(list(texts), type=pa.string()), config).to_pylist()
    return sorted({t for t, reason in zip(texts, reasons, strict=True) if reason is None})


def plain_langdetect(texts: Sequence[str]) -> list[str | None]:
    return [detect_langdetect(text)[0] for text in texts]


def synthetic_mix(sources: Sequence[str], count: int, seed: int = MIX_SEED) -> list[str]:
    """`count` texts, each a span of 2-12 consecutive words of a random source text."""
    rng = random.Random(seed)
    words = [text.split() for text in sources if len(text.split()) >= 2]
    mix = []
    for _ in range(count):
        source = rng.choice(words)
        size = rng.randint(2, min(12, len(source)))
        start = rng.randint(0, len(source) - size)
        mix.append(" ".join(source[start : start + size]))
    return mix


def speed(texts: Sequence[str], sample: int | None = None) -> dict[str, float]:
    """CPU seconds of the pipeline's step on `texts` and of the peer on all or a sample
    of them (scaled to all)."""
    _, ours = cpu_timed(lambda: detect_languages(texts, 1, DEFAULT_ENGINE))
    chosen = list(texts) if sample is None else random.Random(MIX_SEED).sample(list(texts), sample)
    _, peer = cpu_timed(lambda: plain_langdetect(chosen))
    return {
        "texts": len(texts),
        "ours_seconds": ours,
        "peer_seconds": peer * len(texts) / len(chosen),
    }


def run() -> BenchResult:
    config = CurateConfig()
    alt = alt_text_set()
    sets = {"alt_text": alt, "catalogs": catalog_set()}
    sets["both"] = sets["alt_text"] + sets["catalogs"]
    quality = quality_table(sets)
    for line in quality_lines(quality):
        log.info("language quality %s", line)
    real = step_texts(real_alt_texts(), config)
    real_speed = speed(real)
    mix = step_texts(
        synthetic_mix([*real_alt_texts(), *(t for t, _ in sets["catalogs"])], MIX_TEXTS), config
    )
    mix_speed = speed(mix, SAMPLE)
    write_json(
        BENCH_DIR / "language.json",
        {
            "default_engine": DEFAULT_ENGINE,
            "quality": quality,
            "real": real_speed,
            "mix": mix_speed,
        },
    )
    figures = quality[DEFAULT_ENGINE]["alt_text"]
    mix_ratio = mix_speed["peer_seconds"] / mix_speed["ours_seconds"]
    return BenchResult(
        name="language step",
        unit="distinct alt texts",
        items=len(real),
        peer="seeded langdetect, 1 process",
        peer_seconds=real_speed["peer_seconds"],
        ours_seconds=real_speed["ours_seconds"],
        note=(
            f"{DEFAULT_ENGINE}, 1 process, CPU seconds; labelled alt texts: English recall"
            f" {figures['english_recall']:.3f}, other languages kept as English"
            f" {figures['others_kept_as_english']:.3f}; synthetic mix of {len(mix):,} distinct"
            f" texts: {mix_ratio:.1f}x (peer on {SAMPLE:,}); per engine in language.json"
        ),
    )
