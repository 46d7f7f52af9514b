"""The caption clean-up: entities, tags, controls, NFC, the replacement character."""

from __future__ import annotations

import html
import re
import unicodedata
from collections import Counter

import pyarrow as pa
import pytest

from core.config import CurateConfig
from core.record import Pair
from filters.text import (
    FIXES,
    clean_caption,
    clean_captions,
    filter_text,
    screen_captions,
    text_rules,
)

CONFIG = CurateConfig()

# The same rules written with Python's `re`, `html` and `unicodedata`, one text at a time.
PY_ENTITY = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9A-Fa-f]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")
PY_TAG = re.compile(
    r"<!--.*?-->|</?[A-Za-z][A-Za-z0-9:-]*(?:[ \t\n\r\f/](?:[^<>\"']|\"[^\"]*\"|'[^']*')*)?>", re.S
)
PY_CONTROL = re.compile("[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f\u200b\ufeff]")


def reference_clean(text: str) -> tuple[str, set[str]]:
    """(cleaned text, the fixes that changed it)."""
    fixes = set()
    steps = [
        (PY_ENTITY, lambda t: html.unescape(html.unescape(html.unescape(t)))),
        (PY_TAG, lambda t: re.sub("  +", " ", PY_TAG.sub(" ", t)).strip(" ")),
        (PY_CONTROL, lambda t: PY_CONTROL.sub("", t)),
        (re.compile("[^\x00-\x7f]"), lambda t: unicodedata.normalize("NFC", t)),
    ]
    for name, (pattern, step) in zip(FIXES, steps, strict=True):
        if pattern.search(text):
            fixed = step(text)
            if fixed != text:
                fixes.add(name)
            text = fixed
    return text, fixes


@pytest.mark.parametrize(
    ("caption", "cleaned"),
    [
        ("Tom &amp; Jerry", "Tom & Jerry"),
        ("Tom &amp;amp; Jerry", "Tom & Jerry"),  # escaped twice
        ("&amp;amp;lt;b&amp;amp;gt;bold", "bold"),  # decoded three times, then a tag
        ("&quot;Keep Calm&quot; &#34;now&#34; &#x27;ok&#X27;", '"Keep Calm" "now" \'ok\''),
        ("La r&eacute;daction", "La rédaction"),
        ("AT&T &c. &copy 2019", "AT&T &c. &copy 2019"),  # no entity with its semicolon
        ("&copy 2019 &amp; &nosuch;", "\u00a9 2019 & &nosuch;"),  # html.unescape's rules
        ("<b>Game 20</b> at <i>Denver</i>", "Game 20 at Denver"),
        ("Orchid Jungle<br>Hawaiian Dresses<br/>", "Orchid Jungle Hawaiian Dresses"),
        ("<a href='http://x.org/a>b'>Yale</a> Hospital", "Yale Hospital"),
        ("&lt;i&gt;Truong Son&lt;/i&gt; muntjac", "Truong Son muntjac"),  # tags once decoded
        ("x <!-- a\n<b>note</b> --> y", "x y"),
        ("I <3 you, 1 < 2 > 0, a<b", "I <3 you, 1 < 2 > 0, a<b"),  # no tag here
        ("Hel<b>lo</b>", "Hel lo"),
        ("nul\x00 bell\x07 del\x7f c1\x9b zw\u200bsp bom\ufeff", "nul bell del c1 zwsp bom"),
        ("tab\tnew\nline\x85nel\x1fus", "tab\tnew\nline\x85nel\x1fus"),  # whitespace stays
        ("Cafe\u0301 au lait", "Caf\u00e9 au lait"),  # NFD to NFC
        ("\u212b ngstr\u00f6m \ufb01", "\u00c5 ngstr\u00f6m \ufb01"),  # NFC, not NFKC
        ("plain ascii", "plain ascii"),
        ("", ""),
    ],
)
def test_clean_caption(caption: str, cleaned: str) -> None:
    assert clean_caption(caption) == cleaned
    assert reference_clean(caption)[0] == cleaned


@pytest.mark.parametrize(
    ("caption", "reason"),
    [
        ("M\ufffdscara Monster High doll", "text:replacement_char"),
        ("&#0; a nul escaped as an entity", "text:replacement_char"),  # html.unescape gives U+FFFD
        ("<b>logo</b>", "text:junk"),  # the rules judge the cleaned caption
        ("<img src='a.jpg'>", "text:empty"),
        ("&lt;br&gt;&lt;br&gt;", "text:empty"),
        ("<i>a</i> <i>b</i>", "text:too_few_words"),
        ("A <b>golden</b> retriever &amp; a cat", None),
    ],
)
def test_screen_captions_reasons(caption: str, reason: str | None) -> None:
    screened = screen_captions(pa.array([caption]), CONFIG)
    assert screened.reasons.to_pylist() == [reason]


def test_counts_and_shapes() -> None:
    column = pa.chunked_array(
        [["a &amp; b", None, "<b>x</b> &amp; y"], [], ["e\u0301t\u00e9 \x00", "plain"]]
    )
    cleaned = clean_captions(column)
    assert cleaned.captions.type == pa.string()
    assert cleaned.captions.to_pylist() == ["a & b", "", "x & y", "\u00e9t\u00e9 ", "plain"]
    assert cleaned.reasons.to_pylist() == [None] * 5
    expected = {"text_fixed:entity": 2, "text_fixed:tag": 1}
    assert cleaned.fixed == Counter({**expected, "text_fixed:control": 1, "text_fixed:nfc": 1})
    large = clean_captions(pa.array(["x", "a&amp;b"], type=pa.large_string()).slice(1))
    assert large.captions.to_pylist() == ["a&b"] and large.captions.type == pa.string()
    assert len(clean_captions(pa.chunked_array([], type=pa.string())).captions) == 0


def test_pairs_carry_the_cleaned_caption() -> None:
    pair = Pair(url="http://a/x.jpg", caption="A <b>golden</b> retriever &amp; a cat")
    out = text_rules(pair, CONFIG)
    assert out.kept and out.caption == "A golden retriever & a cat"
    assert out.uid == pair.uid  # the pair is still the one crawled
    clean = Pair(url="http://a/y.jpg", caption="a clean caption here")
    assert text_rules(clean, CONFIG) is clean
    broken = Pair(url="http://a/z.jpg", caption="M\ufffdscara Monster High doll")
    gone = Pair(url="http://a/w.jpg", caption="<b>&amp;</b>").dropped("text:empty")
    found = list(filter_text([pair, broken, gone, clean], CONFIG))
    assert [p.caption for p in found] == [
        out.caption,
        broken.caption,
        gone.caption,
        "a clean caption here",
    ]
    assert [p.drop_reason for p in found] == [None, "text:replacement_char", "text:empty", None]
    assert found[2] is gone


def test_real_alt_texts_clean_like_the_reference(alt_texts: list[str]) -> None:
    cleaned = clean_captions(pa.array(alt_texts))
    texts = cleaned.captions.to_pylist()
    expected = [reference_clean(text) for text in alt_texts]
    assert texts == [text for text, _ in expected]
    fixes = Counter(fix for _, found in expected for fix in found)
    assert cleaned.fixed == fixes
    assert fixes["text_fixed:entity"] >= 20 and fixes["text_fixed:tag"] >= 30  # real markup
    broken = [t for t in texts if "\ufffd" in t]
    assert cleaned.reasons.to_pylist().count("text:replacement_char") == len(broken) > 0
    assert clean_captions(cleaned.captions).captions.to_pylist() == texts  # nothing left
    assert not any(PY_TAG.search(t) or PY_ENTITY.search(t) for t in texts)
