from __future__ import annotations

from collections import Counter

import pytest

from filters.text import filter_text, normalise_whitespace, text_reason, text_rules
from pipeline.config import CurateConfig
from pipeline.record import Pair

CONFIG = CurateConfig()


@pytest.mark.parametrize(
    ("caption", "reason"),
    [
        ("", "text:empty"),
        ("  \t\n ", "text:empty"),
        ("IMG_1234.jpg", "text:filename"),
        ("DSC0001", "text:filename"),
        ("photo.png", "text:filename"),
        ("image-2.webp", "text:filename"),
        ("IMG 20190704 123456", "text:filename"),
        ("Logo", "text:junk"),
        ("click here", "text:junk"),
        ("  Click   HERE. ", "text:junk"),
        ("spacer", "text:junk"),
        ("placeholder", "text:junk"),
        ("icon", "text:junk"),
        ("12345 678 90", "text:numeric"),
        ("2019-07-04 / 12:30", "text:numeric"),
        ("two words", "text:too_few_words"),
        ("hogsmeade-station-at-night", "text:too_few_words"),
        ("a b c", "text:too_short"),
        ("a  b\n c", "text:too_short"),
    ],
)
def test_drop_reasons(caption: str, reason: str) -> None:
    assert text_reason(caption, CONFIG) == reason
    dropped = text_rules(Pair(url="http://a/x.jpg", caption=caption), CONFIG)
    assert dropped.drop_reason == reason
    assert dropped.caption == caption  # dropped, never rewritten


@pytest.mark.parametrize(
    "caption",
    [
        "Banded Dragonfly, Guyana, South America",
        "a red car",  # exactly 3 words, 9 characters
        "Un chat noir",  # language is not this rule's business
        "Logo of the Blues Festival",
        "Photo 1 of 12",
        "Canon EOS 5D",
    ],
)
def test_keeps_real_captions(caption: str) -> None:
    pair = Pair(url="http://a/x.jpg", caption=caption)
    assert text_rules(pair, CONFIG) is pair


def test_thresholds_follow_config() -> None:
    strict = CurateConfig(min_words=5, min_chars=30)
    assert text_reason("a red car", strict) == "text:too_few_words"
    assert text_reason("one two three four five", strict) == "text:too_short"
    assert text_reason("two words", CurateConfig(min_words=2)) is None


def test_normalise_whitespace() -> None:
    assert normalise_whitespace(" a\t b\n\nc  ") == "a b c"


def test_filter_text_passes_dropped_pairs_untouched() -> None:
    already = Pair(url="http://a/1.jpg", caption="x").dropped("dedup:url")
    short = Pair(url="http://a/2.jpg", caption="x")
    good = Pair(url="http://a/3.jpg", caption="a small brown dog")
    out = list(filter_text([already, short, good], CONFIG))
    assert out[0] is already
    assert out[1].drop_reason == "text:too_few_words"
    assert out[2] is good


def test_real_alt_texts_drop_shares(alt_texts: list[str]) -> None:
    reasons = Counter(text_reason(text, CONFIG) for text in alt_texts)
    shares = {reason: count / len(alt_texts) for reason, count in reasons.items()}
    print({reason: f"{share:.2%}" for reason, share in sorted(shares.items(), key=str)})
    # LAION-style alts are mostly real captions: a few percent fail the basic rules.
    assert 0.01 < 1 - shares[None] < 0.15
    assert 0.01 < shares["text:too_few_words"] < 0.10
    assert 0.0005 < shares["text:filename"] < 0.02
    assert shares.get("text:junk", 0.0) < 0.01
    assert shares.get("text:numeric", 0.0) < 0.01
    for text in alt_texts:
        if text_reason(text, CONFIG) is None:
            assert len(text.split()) >= 3 and len(" ".join(text.split())) >= 6
