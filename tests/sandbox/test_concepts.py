from __future__ import annotations

import math
import re
from collections import Counter

import pytest
from langdetect import DetectorFactory, detect

from core.config import SandboxConfig
from sandbox.concepts import (
    COLOURS,
    FOREIGN_ALTS,
    SHAPES,
    SHORT_ALTS,
    all_concepts,
    concept_by_name,
    concept_ranking,
    make_caption,
    query_list,
    sample_concept,
)


def metaclip_pad(text: str) -> str:
    """MetaCLIP's text preparation: punctuation split off, padded with spaces."""
    text = re.sub(r"([,.;:?!`])", r" \1 ", text.replace("\t", " ").replace("\n", " "))
    return f" {text} "


def test_vocabulary_is_colour_times_shape() -> None:
    names = [c.name for c in all_concepts()]
    assert len(names) == len(set(names)) == len(COLOURS) * len(SHAPES) == 48
    assert concept_by_name("red circle").rgb == COLOURS["red"]
    with pytest.raises(KeyError):
        concept_by_name("red dragon")


def test_sampling_is_deterministic_and_seeded() -> None:
    first = [sample_concept(f"k{i}", 0) for i in range(200)]
    assert first == [sample_concept(f"k{i}", 0) for i in range(200)]
    assert first != [sample_concept(f"k{i}", 1) for i in range(200)]
    assert concept_ranking(0) != concept_ranking(1)


def test_concept_counts_follow_zipf() -> None:
    counts = Counter(sample_concept(f"item-{i}", 7) for i in range(20_000))
    ranked = [counts[c] for c in concept_ranking(7)]
    assert ranked[0] > 10 * ranked[-1] > 0
    xs = [math.log(rank + 1) for rank in range(len(ranked))]
    ys = [math.log(count) for count in ranked]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mean_x) ** 2 for x in xs
    )
    assert -1.2 < slope < -0.8


def test_captions_hold_concept_words_for_matching() -> None:
    for i in range(300):
        concept = all_concepts()[i % 48]
        caption = make_caption(concept, f"c{i}", 0)
        padded = metaclip_pad(caption)
        assert f" {concept.name} " in padded
        assert len(caption.split()) > 2 and len(caption) > 5


def test_captions_are_detected_as_english() -> None:
    DetectorFactory.seed = 0
    captions = {make_caption(sample_concept(f"l{i}", 3), f"l{i}", 3) for i in range(250)}
    english = sum(detect(c) == "en" for c in captions)
    assert english >= 0.98 * len(captions)


def test_foreign_alts_are_detected_as_their_language() -> None:
    DetectorFactory.seed = 0
    for language, text in FOREIGN_ALTS:
        assert detect(text) == language, text
    assert all(len(alt.split()) <= 2 for alt in SHORT_ALTS)


def test_query_list_covers_vocabulary_and_caption_words() -> None:
    entries = query_list(SandboxConfig())
    assert len(entries) == len(set(entries))
    assert set(COLOURS) | set(SHAPES) | {c.name for c in all_concepts()} <= set(entries)
    words = [e for e in entries if " " not in e and e not in COLOURS and e not in SHAPES]
    assert 24 <= len(words) <= 80
    assert {"photo", "background", "picture", "paper"} <= set(words)
    assert not {"a", "the", "of"} & set(entries)
