from __future__ import annotations

import random
import re
import sys
import unicodedata
from collections import Counter
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from core.config import CurateConfig
from core.record import Pair
from filters.text import (
    IGNORECASE_EXTRA,
    LETTER,
    LOWER_DIFFERS,
    REASONS,
    filter_text,
    normalise_whitespace,
    text_reason,
    text_reasons,
    text_rules,
)

CONFIG = CurateConfig()


class OldTextRules:
    """The pure-Python rules `text_reasons` replaced, kept verbatim as the reference."""

    EXTENSIONS = "jpe?g|png|gif|webp|bmp|tiff?|svg|heic|heif|avif|ico"
    FILE_NAME = re.compile(rf"^\S+\.(?:{EXTENSIONS})$", re.IGNORECASE)
    CAMERA_NAME = re.compile(
        r"^(?:img|dsc[nf]?|pict?|pxl|gopr|mvimg|photo|image|screenshot|untitled|scan)"
        r"[ _\-]?\d+(?:[ _\-]\d+)*$",
        re.IGNORECASE,
    )
    JUNK = frozenset(
        {
            "logo",
            "image",
            "img",
            "images",
            "photo",
            "picture",
            "pic",
            "icon",
            "spacer",
            "placeholder",
            "thumbnail",
            "banner",
            "avatar",
            "click here",
            "click to enlarge",
            "image not found",
            "no image",
            "no image available",
            "image coming soon",
            "alt",
            "alt text",
            "untitled",
            "blank",
            "loading",
            "null",
            "undefined",
            "none",
            "n/a",
        }
    )
    LETTER = re.compile(r"[^\W\d_]")

    @classmethod
    def reason(cls, caption: str, config: CurateConfig) -> str | None:
        text = " ".join(caption.split())
        if not text:
            return "text:empty"
        if cls.LETTER.search(text) is None:
            return "text:numeric"
        if cls.FILE_NAME.match(text) or cls.CAMERA_NAME.match(text):
            return "text:filename"
        if text.lower().strip(" .:-|") in cls.JUNK:
            return "text:junk"
        if len(text.split(" ")) < config.min_words:
            return "text:too_few_words"
        if len(text) < config.min_chars:
            return "text:too_short"
        return None


def assigned_in_python(text: str) -> bool:
    """False when `text` holds a code point Python's Unicode database does not know."""
    return all(unicodedata.category(char) != "Cn" for char in text)


def assert_agrees(texts: Sequence[str | None], config: CurateConfig = CONFIG) -> None:
    got = text_reasons(pa.array(texts, type=pa.string()), config).to_pylist()
    want = [OldTextRules.reason(text or "", config) for text in texts]
    diff = [(t, g, w) for t, g, w in zip(texts, got, want, strict=True) if g != w]
    assert diff == []


@pytest.mark.parametrize(
    ("caption", "reason"),
    [
        ("", "text:empty"),
        ("  \t\n ", "text:empty"),
        ("\xa0\u3000\x85\x1c", "text:empty"),
        ("IMG_1234.jpg", "text:filename"),
        ("DSC0001", "text:filename"),
        ("photo.png", "text:filename"),
        ("image-2.webp", "text:filename"),
        ("IMG 20190704 123456", "text:filename"),
        ("IMG_١٢٣٤", "text:filename"),  # Arabic-Indic digits are Python's \d
        ("ımg_1234", "text:filename"),  # dotless i: Python's IGNORECASE folds it to i
        ("Logo", "text:junk"),
        ("click here", "text:junk"),
        ("  Click   HERE. ", "text:junk"),
        ("clicK\u00a0here", "text:junk"),  # Kelvin sign lower-cases to k
        ("spacer", "text:junk"),
        ("placeholder", "text:junk"),
        ("icon", "text:junk"),
        ("| n/a |", "text:junk"),
        ("12345 678 90", "text:numeric"),
        ("2019-07-04 / 12:30", "text:numeric"),
        ("\u0301\u0301\u0301 \u0301 \u0301", "text:numeric"),  # combining marks only
        ("two words", "text:too_few_words"),
        ("hogsmeade-station-at-night", "text:too_few_words"),
        ("a b c", "text:too_short"),
        ("a  b\n c", "text:too_short"),
        ("a\u3000b\x85c", "text:too_short"),
    ],
)
def test_drop_reasons(caption: str, reason: str) -> None:
    assert text_reason(caption, CONFIG) == reason
    assert OldTextRules.reason(caption, CONFIG) == reason
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
    assert normalise_whitespace("\u3000a\xa0\x85b\u2029") == "a b"


def test_filter_text_passes_dropped_pairs_untouched() -> None:
    already = Pair(url="http://a/1.jpg", caption="x").dropped("dedup:url")
    short = Pair(url="http://a/2.jpg", caption="x")
    good = Pair(url="http://a/3.jpg", caption="a small brown dog")
    out = list(filter_text([already, short, good], CONFIG))
    assert out[0] is already
    assert out[1].drop_reason == "text:too_few_words"
    assert out[2] is good


def test_filter_text_across_batches() -> None:
    pairs = [Pair(url=f"http://a/{i}.jpg", caption="a red car" * (i % 2)) for i in range(9000)]
    out = list(filter_text(pairs, CONFIG))
    assert [p.drop_reason for p in out] == ["text:empty", None] * 4500


def test_columns_nulls_and_chunks() -> None:
    chunked = pa.chunked_array([["a red car", None], [], ["logo"]], type=pa.string())
    assert text_reasons(chunked, CONFIG).to_pylist() == [None, "text:empty", "text:junk"]
    assert text_reasons(pa.array([], type=pa.string()), CONFIG).to_pylist() == []
    large = pa.array(["IMG_1.PNG", "a red car"], type=pa.large_string())
    assert text_reasons(large, CONFIG).to_pylist() == ["text:filename", None]
    sliced = pa.array(["x", "a red car", "logo"]).slice(1)
    assert text_reasons(sliced, CONFIG).to_pylist() == [None, "text:junk"]


TRICKY_PIECES = [
    "IMG_1234",
    "img-0001-2",
    "DSCN_22",
    "dscf 7",
    "PXL_20210101_123456789",
    "Screenshot 2020",
    "photo.JPG",
    "a_b.jpeg",
    "x.TIF",
    "pic.svg.png",
    "image.ſvg",  # long s: Python's IGNORECASE folds it to s
    "İmg_12",
    "PİCT0001",
    "logo",
    "LOGO.",
    "...logo...",
    "| logo |",
    "-:logo:-",
    "logo?",
    "n/a",
    "N/A",
    "İmage",
    "ımage",
    "ſpacer",
    "clicK here",
    "no  image",
    "click to enlarge",
    "٣٤٥",
    "١٢ ٣",
    "²³",
    "Ⅻ",
    "½",
    "_",
    "__ 12",
    "e\u0301",
    "\u0301",
    "字",
    "\U00031350",
    "\U00011f50",
    "a",
    "ab",
    "abc def",
    "ab cd",
    "word",
    "\xa0",
    "\u3000",
    "\x85",
    "\x1c",
    "\x1f",
    "\u200b",  # zero width space: not whitespace for Python
    "\u2028",
    "\t",
    "\n",
    " ",
    "  ",
    "Σ",
    "ß",
    "ǅ",
    "ﬁ",
    "K",
]


def tricky_strings(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    out = list(TRICKY_PIECES)
    for _ in range(count):
        out.append("".join(rng.choice(TRICKY_PIECES) for _ in range(rng.randrange(1, 5))))
    return out


def test_agrees_with_old_rules_on_tricky_strings() -> None:
    texts = [t for t in tricky_strings(20_000) if assigned_in_python(t)]
    assert_agrees([*texts, None])
    assert_agrees(texts, CurateConfig(min_words=1, min_chars=2))


def test_only_disagreements_are_code_points_new_since_unicode_14() -> None:
    # A Kawi digit and a CJK Extension H ideograph, both assigned in Unicode 15.0.
    digit, ideograph = "\U00011f50", "\U00031350"
    assert text_reason(f"IMG_{digit}", CONFIG) == "text:filename"
    assert OldTextRules.reason(f"IMG_{digit}", CONFIG) == "text:too_few_words"
    assert text_reason(f"{ideograph} {ideograph} {ideograph}", CONFIG) == "text:too_short"
    assert OldTextRules.reason(f"{ideograph} {ideograph} {ideograph}", CONFIG) == "text:numeric"


def all_characters() -> str:
    return "".join(chr(c) for c in range(sys.maxunicode + 1) if not 0xD800 <= c < 0xE000)


def test_letter_and_case_classes_match_python_on_every_code_point() -> None:
    chars = all_characters()
    column = pa.array(list(chars), type=pa.string())
    ours = pc.match_substring_regex(column, LETTER).to_pylist()
    for char, got in zip(chars, ours, strict=True):
        if got != bool(re.fullmatch(r"[^\W\d_]", char)):
            assert unicodedata.category(char) == "Cn"  # new since Python's Unicode 14.0
    lowered = pc.utf8_lower(column).to_pylist()
    differ = {c for c, low in zip(chars, lowered, strict=True) if low != c.lower()}
    assert {c for c in differ if unicodedata.category(c) != "Cn"} == {LOWER_DIFFERS}
    for letter in "abcdefghijklmnopqrstuvwxyz":
        folded = set(re.findall(f"(?i){letter}", chars)) - {letter, letter.upper()}
        assert folded == set(IGNORECASE_EXTRA.get(letter, ""))


def test_real_alt_texts_agree_with_old_rules(alt_texts: list[str]) -> None:
    assert_agrees(list(alt_texts))
    mangled = [t.replace(" ", "\xa0", 1).upper() for t in alt_texts[:2000]]
    assert_agrees(mangled)


def test_real_alt_texts_drop_shares(alt_texts: list[str]) -> None:
    reasons = Counter(text_reasons(pa.array(alt_texts), CONFIG).to_pylist())
    shares = {reason: count / len(alt_texts) for reason, count in reasons.items()}
    print({reason: f"{share:.2%}" for reason, share in sorted(shares.items(), key=str)})
    assert set(shares) <= {None, *REASONS}
    # LAION-style alts are mostly real captions: a few percent fail the basic rules.
    assert 0.01 < 1 - shares[None] < 0.15
    assert 0.01 < shares["text:too_few_words"] < 0.10
    assert 0.0005 < shares["text:filename"] < 0.02
    assert shares.get("text:junk", 0.0) < 0.01
    assert shares.get("text:numeric", 0.0) < 0.01
