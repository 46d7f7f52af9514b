"""The default language engine against the bar, on the hand-labelled real alt texts
(bench/data/README.md): English recall >= 0.95, at most 2% of other languages kept as
English, and no worse than langdetect on either count."""

from __future__ import annotations

import pytest

from bench.language import english_figures, kept_as_english
from bench.language_labels import alt_text_set, read_labels
from core.config import CurateConfig
from filters.language import DEFAULT_ENGINE


@pytest.fixture(scope="module")
def labelled() -> list[tuple[str, str]]:
    found = alt_text_set()
    if not found:
        pytest.skip("shared alt texts not available")
    return found


def test_labels_cover_the_confusable_languages() -> None:
    labels = set(read_labels().values())
    assert {"en", "none", "de", "nl", "da", "no", "sv", "es", "pt", "it", "ca", "fr"} <= labels
    assert len(labels - {"en", "none"}) >= 10


def test_default_engine_meets_the_bar(labelled: list[tuple[str, str]]) -> None:
    config = CurateConfig(languages=("en",))
    texts = [text for text, _ in labelled]
    ours = english_figures(labelled, kept_as_english(texts, DEFAULT_ENGINE, config))
    assert ours["english_recall"] >= 0.95
    assert ours["others_kept_as_english"] <= 0.02
    plain = english_figures(labelled, kept_as_english(texts, "langdetect", config))
    assert ours["english_recall"] >= plain["english_recall"]
    assert ours["others_kept_as_english"] <= plain["others_kept_as_english"]
