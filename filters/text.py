"""Caption rules: DataComp "basic" (more than 2 words, more than 5 characters) plus LAION's
clean-ups (file-name alts, boilerplate alts, alts without letters).

Every rule looks at the caption with its whitespace normalised (runs of the characters
Python's `str.split()` splits on become one space, ends stripped); the pair itself is
returned unchanged or dropped, never rewritten. The most specific reason wins, in this
order: `text:empty`, `text:numeric` (no letter), `text:filename`, `text:junk`,
`text:too_few_words`, `text:too_short`; an alt "logo" is `text:junk`, not `text:too_short`.

`text_reasons` applies the rules to a whole Arrow column with Arrow kernels and RE2
regexes; every scalar helper here runs it on a one-element column. RE2's `\\s`, `\\d` and
`\\w` are ASCII-only, so the patterns spell out Python's classes: the `str.isspace()` set
for whitespace, `\\p{Nd}` for `\\d`, `[\\p{L}\\p{Nl}\\p{No}]` for a letter (Python's
`[^\\W\\d_]`), and explicit case classes where Python's IGNORECASE folds more than RE2's
(`i` also matches `İ` and `ı`). Junk is looked up after Arrow's `utf8_lower`, which agrees
with `str.lower()` on every assigned character but `İ` (handled). Python 3.11's `re` uses
Unicode 14.0 and RE2 its own, newer tables: the only captions judged differently from the
old `re` rules are those holding code points unassigned in Unicode 14.0 (e.g. the Kawi
and Nag Mundari digits of Unicode 15.0, the CJK Extension H and I ideographs), which count
as digits and letters here and did not before.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.config import CurateConfig
from pipeline.record import Pair, map_kept_in_batches

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

REASONS = (
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
    """Index into `REASONS` of the first rule each normalised text fails, -1 when none."""
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
    return np.select(failing, list(range(len(REASONS))), default=-1)


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


def normalise_whitespace(text: str) -> str:
    """`text` with every run of whitespace turned into one space and the ends stripped."""
    return str(normalised_captions(pa.array([text], type=pa.string()))[0].as_py())


def text_reason(caption: str, config: CurateConfig) -> str | None:
    """The reason `caption` fails the text rules, or None when it passes."""
    reason = text_reasons(pa.array([caption], type=pa.string()), config)[0].as_py()
    return None if reason is None else str(reason)


def with_reason(pair: Pair, reason: str | None) -> Pair:
    return pair if reason is None else pair.dropped(reason)


def text_rules(pair: Pair, config: CurateConfig) -> Pair:
    """`pair` unchanged when its caption passes, else dropped with the reason."""
    return with_reason(pair, text_reason(pair.caption, config))


def filter_text(pairs: Iterable[Pair], config: CurateConfig) -> Iterator[Pair]:
    """Apply the text rules to every kept pair; dropped pairs pass through untouched.

    Pairs are judged `FILTER_BATCH` at a time, in one `text_reasons` call per batch.
    """

    def decide(kept: list[Pair]) -> list[str | None]:
        captions = pa.array([pair.caption for pair in kept], type=pa.string())
        return list(text_reasons(captions, config).to_pylist())

    return map_kept_in_batches(pairs, FILTER_BATCH, decide, with_reason)
