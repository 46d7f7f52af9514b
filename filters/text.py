"""Caption clean-up, then caption rules: DataComp "basic" (more than 2 words, more than 5
characters) plus LAION's clean-ups (file-name alts, boilerplate alts, alts without letters).

`clean_captions` rewrites what the page's markup left in an alt text, in this order, and
counts the captions each step changed (`text_fixed:<step>`): HTML entities are decoded,
repeatedly (`&amp;amp;` -> `&`); tags and comments are removed (`<b>Car</b>` -> `Car`),
leaving a space where one stood between words; control characters, zero-width spaces and
byte-order marks are removed; the text is put in Unicode NFC. A caption that still holds
U+FFFD, the replacement character (bytes that were not valid in the page's encoding), is
dropped as `text:replacement_char`: the word it stands in cannot be recovered.
`screen_captions` cleans, then applies the rules to the cleaned caption.

Every rule looks at the caption with its whitespace normalised (runs of the characters
Python's `str.split()` splits on become one space, ends stripped); the pair itself keeps
its whitespace. The most specific reason wins, in this order: `text:empty`,
`text:numeric` (no letter), `text:filename`, `text:junk`, `text:too_few_words`,
`text:too_short`; an alt "logo" is `text:junk`, not `text:too_short`.

`text_reasons` applies the rules to a whole Arrow column with Arrow kernels and RE2
regexes; every scalar helper here runs it on a one-element column. The clean-up is
columnar too: RE2 finds the few captions holding an entity, and only those go through
Python's `html.unescape`. RE2's `\\s`, `\\d` and `\\w` are ASCII-only, so the patterns
spell out Python's classes: the `str.isspace()` set for whitespace, `\\p{Nd}` for `\\d`,
`[\\p{L}\\p{Nl}\\p{No}]` for a letter (Python's `[^\\W\\d_]`), and explicit case classes
where Python's IGNORECASE folds more than RE2's
(`i` also matches `İ` and `ı`). Junk is looked up after Arrow's `utf8_lower`, which agrees
with `str.lower()` on every assigned character but `İ` (handled). Python 3.11's `re` uses
Unicode 14.0 and RE2 its own, newer tables: the only captions judged differently from the
old `re` rules are those holding code points unassigned in Unicode 14.0 (e.g. the Kawi
and Nag Mundari digits of Unicode 15.0, the CJK Extension H and I ideographs), which count
as digits and letters here and did not before.
"""

from __future__ import annotations

import dataclasses
import html
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from core.config import CurateConfig
from core.record import Pair, map_kept_in_batches

# The characters `str.isspace()` is true for (what `str.split()` splits on), in RE2 syntax:
# the space, then every other one.
OTHER_WHITESPACE = (
    r"\t\n\x0b\x0c\r\x1c-\x1f\x{85}\x{a0}\x{1680}\x{2000}-\x{200a}"
    r"\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}"
)
WHITESPACE = " " + OTHER_WHITESPACE
# A single space stays; any other whitespace character, or a run of two or more, is replaced.
WHITESPACE_TO_REPLACE = rf"[{WHITESPACE}]{{2,}}|[{OTHER_WHITESPACE}]"
# A caption that is not already normalised: some whitespace to replace, or a space at an end.
NOT_NORMALISED = rf"{WHITESPACE_TO_REPLACE}|^ | $"

# Python's `[^\W\d_]`: a letter, or a number that is not a decimal digit (Ⅻ, ½, ²).
LETTER = r"[\p{L}\p{Nl}\p{No}]"

IMAGE_EXTENSIONS = (
    "jpe?g",
    "png",
    "gif",
    "webp",
    "bmp",
    "tiff?",
    "svg",
    "heic",
    "heif",
    "avif",
    "ico",
)
CAMERA_PREFIXES = (
    "img",
    "dsc",
    "dscn",
    "dscf",
    "pic",
    "pict",
    "pxl",
    "gopr",
    "mvimg",
    "photo",
    "image",
    "screenshot",
    "untitled",
    "scan",
)

# What Python's IGNORECASE matches for an ASCII letter beyond its two cases.
IGNORECASE_EXTRA = {"i": "\u0130\u0131", "k": "\u212a", "s": "\u017f"}

# Whole alts that say nothing about the picture (compared after lower-casing).
JUNK_ALTS = frozenset(
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
JUNK_STRIPPED = " .:-|"  # stripped from both ends of a lower-cased alt before the lookup

# An HTML entity: a numeric one, or a name of up to 32 characters, with its semicolon.
ENTITY = r"&(?:#[0-9]{1,7}|#[xX][0-9A-Fa-f]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});"
ENTITY_ROUNDS = 3  # `&amp;amp;lt;` takes three decodings
# A tag (`<b>`, `</font>`, `<br/>`, `<a href='...'>`, quoted values may hold `>`) or a
# comment; not `<3` or `a < b`.
TAG = (
    r"<!--(?s:.*?)-->"
    r"""|</?[A-Za-z][A-Za-z0-9:-]*(?:[ \t\n\r\f/](?:[^<>"']|"[^"]*"|'[^']*')*)?>"""
)
# C0 and C1 controls that are not whitespace, zero-width space, byte-order mark.
CONTROL = r"[\x00-\x08\x0e-\x1b\x7f-\x{84}\x{86}-\x{9f}\x{200b}\x{feff}]"
REPLACEMENT = "\ufffd"
FIXES = ("text_fixed:entity", "text_fixed:tag", "text_fixed:control", "text_fixed:nfc")

REASONS = (
    "text:replacement_char",
    "text:empty",
    "text:numeric",
    "text:filename",
    "text:junk",
    "text:too_few_words",
    "text:too_short",
)
FILTER_BATCH = 4096  # pairs per `text_reasons` call in `filter_text`


def caseless(pattern: str, extra: dict[str, str]) -> str:
    """`pattern` with every ASCII letter replaced by the class of characters matching it
    (`pattern` holds no escapes or character classes of its own)."""
    out = []
    for char in pattern:
        if char.isascii() and char.isalpha():
            out.append(f"[{char.lower()}{char.upper()}{extra.get(char.lower(), '')}]")
        else:
            out.append(char)
    return "".join(out)


def file_name_pattern(digit: str, extra: dict[str, str]) -> str:
    """One token ending in an image extension ("photo.png", "a_b.JPG"), or a camera's
    default name ("IMG_1234", "DSC0001", "IMG 20190704 123456"), case ignored."""
    extensions = caseless("|".join(IMAGE_EXTENSIONS), extra)
    prefixes = caseless("|".join(CAMERA_PREFIXES), extra)
    file_name = rf"[^ ]+\.(?:{extensions})"
    camera = rf"(?:{prefixes})[ _\-]?{digit}+(?:[ _\-]{digit}+)*"
    return rf"^(?:{file_name}|{camera})$"


def ascii_junk_pattern() -> str:
    """A known boilerplate alt with its ASCII cases, `JUNK_STRIPPED` allowed at both ends:
    for an ASCII-only text, the same answer as lower-casing, stripping and looking up."""
    phrases = "|".join(caseless(phrase, {}) for phrase in sorted(JUNK_ALTS))
    strip = "[" + JUNK_STRIPPED.replace("-", r"\-") + "]*"
    return rf"^{strip}(?:{phrases}){strip}$"


# Each rule has a pattern exact for ASCII-only texts, run on every text, and one for the
# rest, run only where the first said no on a text beyond ASCII. The ASCII form never says
# yes where the full one says no, and compiles faster (RE2 compiles a pattern on every
# call; a scalar call is one text).
FILE_NAME = file_name_pattern(r"\p{Nd}", IGNORECASE_EXTRA)
ASCII_FILE_NAME = file_name_pattern("[0-9]", {})
ASCII_LETTER = "[A-Za-z]"
ASCII_JUNK = ascii_junk_pattern()
# `str.lower()` and Arrow's `utf8_lower` differ on one assigned character: Python turns
# İ into "i̇" (two characters), Arrow into "i". No junk alt holds U+0307, so Python never
# calls a text with İ junk.
LOWER_DIFFERS = "\u0130"


def normalised_captions(captions: pa.Array) -> pa.Array:
    """Each caption with whitespace runs turned into one space, ends stripped; null as ""."""
    filled = pc.fill_null(captions, "")
    todo = pc.match_substring_regex(filled, NOT_NORMALISED)
    if not pc.any(todo).as_py():
        return filled
    spaced = pc.replace_substring_regex(pc.filter(filled, todo), WHITESPACE_TO_REPLACE, " ")
    return pc.replace_with_mask(filled, todo, pc.utf8_trim(spaced, " "))


def has_words(texts: pa.Array, count: int) -> np.ndarray:
    """Boolean numpy mask: where the normalised text has at least `count` words."""
    if count <= 1:
        return pc.not_equal(texts, "").to_numpy(zero_copy_only=False)
    return matches(texts, rf"^(?:[^ ]* ){{{count - 1}}}")


def matches(texts: pa.Array, pattern: str) -> np.ndarray:
    """Boolean numpy mask: where `pattern` (RE2) matches somewhere in the text."""
    return pc.match_substring_regex(texts, pattern).to_numpy(zero_copy_only=False)


def matches_at(texts: pa.Array, rows: np.ndarray, pattern: str) -> np.ndarray:
    """Boolean numpy mask: where `rows` is True and `pattern` matches the text."""
    found = np.zeros(len(texts), dtype=bool)
    if rows.any():
        found[rows] = matches(pc.filter(texts, pa.array(rows)), pattern)
    return found


def letter_rows(texts: pa.Array, ascii_rows: np.ndarray) -> np.ndarray:
    """Where the text holds a letter (Python's `[^\\W\\d_]`)."""
    found = matches(texts, ASCII_LETTER)
    return found | matches_at(texts, ~found & ~ascii_rows, LETTER)


def file_name_rows(texts: pa.Array, ascii_rows: np.ndarray) -> np.ndarray:
    """Where the text is an image file name or a camera's default name."""
    found = matches(texts, ASCII_FILE_NAME)
    return found | matches_at(texts, ~found & ~ascii_rows, FILE_NAME)


def junk_rows(texts: pa.Array, ascii_rows: np.ndarray) -> np.ndarray:
    """Where the text, lower-cased and stripped of `JUNK_STRIPPED` at both ends, is one of
    `JUNK_ALTS`."""
    found = matches(texts, ASCII_JUNK)
    rest = ~found & ~ascii_rows
    if rest.any():
        others = pc.filter(texts, pa.array(rest))
        stripped = pc.utf8_trim(pc.utf8_lower(others), JUNK_STRIPPED)
        junk = pc.is_in(stripped, value_set=pa.array(sorted(JUNK_ALTS), type=pa.string()))
        junk = pc.and_not(junk, pc.match_substring(others, LOWER_DIFFERS))
        found[rest] = junk.to_numpy(zero_copy_only=False)
    return found


def reason_codes(texts: pa.Array, config: CurateConfig) -> np.ndarray:
    """Index into `REASONS` of the first rule each normalised text fails, -1 when none
    (never 0: the replacement character is the clean-up's to find)."""
    lengths = pc.utf8_length(texts).to_numpy(zero_copy_only=False)
    ascii_rows = pc.string_is_ascii(texts).to_numpy(zero_copy_only=False)
    failing = [
        lengths == 0,
        ~letter_rows(texts, ascii_rows),
        file_name_rows(texts, ascii_rows),
        junk_rows(texts, ascii_rows),
        ~has_words(texts, config.min_words),
        lengths < config.min_chars,
    ]
    return np.select(failing, list(range(1, len(REASONS))), default=-1)


def chunk_reasons(captions: pa.Array, config: CurateConfig) -> pa.Array:
    codes = reason_codes(normalised_captions(captions), config)
    indices = pa.array(codes, type=pa.int8(), mask=codes < 0)
    return pa.array(REASONS, type=pa.string()).take(indices)


def text_reasons(captions: pa.Array | pa.ChunkedArray, config: CurateConfig) -> pa.Array:
    """The reason each caption fails the text rules (pa.string()), null where it passes.

    A null caption counts as "" (`text:empty`). One row out per row in, in order.
    """
    if isinstance(captions, pa.ChunkedArray):
        parts = [chunk_reasons(chunk, config) for chunk in captions.chunks]
        return pa.concat_arrays(parts) if parts else pa.array([], type=pa.string())
    return chunk_reasons(captions, config)


# ------------------------------------------------------------------ clean-up


@dataclass(frozen=True)
class CleanedCaptions:
    """Captions after the clean-up, the reason each is dropped (null where kept), and how
    many captions each clean-up step changed."""

    captions: pa.Array
    reasons: pa.Array
    fixed: Counter[str]


def rewrite_rows(
    texts: pa.Array, pattern: str, replace: Callable[[pa.Array], pa.Array]
) -> tuple[pa.Array, int]:
    """`texts` with `replace(rows)` applied to the rows `pattern` (RE2) matches; the number
    of rows it changed."""
    rows = pc.match_substring_regex(texts, pattern)
    if not pc.any(rows).as_py():
        return texts, 0
    before = pc.filter(texts, rows)
    after = replace(before)
    changed = pc.sum(pc.not_equal(before, after)).as_py() or 0
    return pc.replace_with_mask(texts, rows, after), int(changed)


def unescape_all(texts: pa.Array) -> pa.Array:
    """Each text with its HTML entities decoded, again while one is left (`&amp;lt;`)."""
    values = texts.to_pylist()
    for _ in range(ENTITY_ROUNDS):
        values = [html.unescape(value) for value in values]
    return pa.array(values, type=texts.type)


def strip_tags(texts: pa.Array) -> pa.Array:
    """Each text with tags and comments replaced by a space, spaces that left doubled
    made one, and the ends trimmed of them."""
    spaced = pc.replace_substring_regex(texts, TAG, " ")
    return pc.utf8_trim(pc.replace_substring_regex(spaced, "  +", " "), " ")


def remove_controls(texts: pa.Array) -> pa.Array:
    return pc.replace_substring_regex(texts, CONTROL, "")


def nfc(texts: pa.Array) -> pa.Array:
    return pc.utf8_normalize(texts, form="NFC")


def cleaned_chunk(captions: pa.Array) -> tuple[pa.Array, pa.Array, Counter[str]]:
    texts = pc.fill_null(captions, "")
    fixed: Counter[str] = Counter()
    steps = ((ENTITY, unescape_all), (TAG, strip_tags), (CONTROL, remove_controls))
    for name, (pattern, step) in zip(FIXES[:3], steps, strict=True):
        texts, fixed[name] = rewrite_rows(texts, pattern, step)
    beyond_ascii = pc.invert(pc.string_is_ascii(texts))
    if pc.any(beyond_ascii).as_py():
        before = pc.filter(texts, beyond_ascii)
        after = nfc(before)
        fixed[FIXES[3]] = int(pc.sum(pc.not_equal(before, after)).as_py() or 0)
        texts = pc.replace_with_mask(texts, beyond_ascii, after)
    broken = pc.match_substring(texts, REPLACEMENT)
    reasons = pc.if_else(broken, pa.scalar(REASONS[0]), pa.scalar(None, pa.string()))
    return texts, reasons, +fixed


def clean_captions(captions: pa.Array | pa.ChunkedArray) -> CleanedCaptions:
    """Every caption cleaned up (see the module's notes), a null one as ""; the reason a
    caption is dropped (`text:replacement_char`) or null, and the count of each fix."""
    chunks = captions.chunks if isinstance(captions, pa.ChunkedArray) else [captions]
    parts = [cleaned_chunk(chunk) for chunk in chunks]
    if not parts:
        empty = pa.array([], type=pa.string())
        return CleanedCaptions(empty, empty, Counter())
    fixed: Counter[str] = Counter()
    for _, _, counts in parts:
        fixed.update(counts)
    texts = pa.concat_arrays([p[0].cast(pa.string()) for p in parts])
    return CleanedCaptions(texts, pa.concat_arrays([p[1] for p in parts]), fixed)


def screen_captions(captions: pa.Array | pa.ChunkedArray, config: CurateConfig) -> CleanedCaptions:
    """The clean-up, then the rules on the cleaned captions: the first reason wins."""
    cleaned = clean_captions(captions)
    rules = text_reasons(cleaned.captions, config)
    reasons = pc.coalesce(cleaned.reasons, rules)
    return dataclasses.replace(cleaned, reasons=reasons)


def clean_caption(caption: str) -> str:
    """One caption cleaned up, as `clean_captions` cleans a column."""
    return str(clean_captions(pa.array([caption], type=pa.string())).captions[0].as_py())


def normalise_whitespace(text: str) -> str:
    """`text` with every run of whitespace turned into one space and the ends stripped."""
    return str(normalised_captions(pa.array([text], type=pa.string()))[0].as_py())


def text_reason(caption: str, config: CurateConfig) -> str | None:
    """The reason `caption` fails the text rules, or None when it passes."""
    reason = text_reasons(pa.array([caption], type=pa.string()), config)[0].as_py()
    return None if reason is None else str(reason)


def with_reason(pair: Pair, verdict: tuple[str, str | None]) -> Pair:
    """`pair` with its cleaned caption (the same object when nothing changed), dropped
    when the verdict has a reason."""
    caption, reason = verdict
    if caption != pair.caption:
        pair = dataclasses.replace(pair, caption=caption)
    return pair if reason is None else pair.dropped(reason)


def screen_verdicts(captions: list[str], config: CurateConfig) -> list[tuple[str, str | None]]:
    """(cleaned caption, reason or None) for each caption."""
    screened = screen_captions(pa.array(captions, type=pa.string()), config)
    return list(zip(screened.captions.to_pylist(), screened.reasons.to_pylist(), strict=True))


def text_rules(pair: Pair, config: CurateConfig) -> Pair:
    """`pair` with its caption cleaned up (unchanged when it was clean), dropped with the
    reason when the cleaned caption fails a rule."""
    return with_reason(pair, screen_verdicts([pair.caption], config)[0])


def filter_text(pairs: Iterable[Pair], config: CurateConfig) -> Iterator[Pair]:
    """Clean up and apply the text rules to every kept pair; dropped pairs pass through
    untouched.

    Pairs are judged `FILTER_BATCH` at a time, in one `text_reasons` call per batch.
    """

    def decide(kept: list[Pair]) -> list[tuple[str, str | None]]:
        return screen_verdicts([pair.caption for pair in kept], config)

    return map_kept_in_batches(pairs, FILTER_BATCH, decide, with_reason)
