"""Caption rules: DataComp "basic" (more than 2 words, more than 5 characters) plus LAION's
clean-ups (file-name alts, boilerplate alts, alts without letters).

Every rule looks at the caption with its whitespace normalised (runs of spaces, tabs and
newlines become one space, ends stripped); the pair itself is returned unchanged or
dropped, never rewritten. The most specific reason wins: an alt "logo" is `text:junk`,
not `text:too_short`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from pipeline.config import CurateConfig
from pipeline.record import Pair

IMAGE_EXTENSIONS = "jpe?g|png|gif|webp|bmp|tiff?|svg|heic|heif|avif|ico"

# One token that ends in an image extension: "photo.png", "image-2.webp", "a_b.JPG".
FILE_NAME = re.compile(rf"^\S+\.(?:{IMAGE_EXTENSIONS})$", re.IGNORECASE)

# Camera and editor default names without extension: "IMG_1234", "DSC0001", "DSCN_22".
CAMERA_NAME = re.compile(
    r"^(?:img|dsc[nf]?|pict?|pxl|gopr|mvimg|photo|image|screenshot|untitled|scan)"
    r"[ _\-]?\d+(?:[ _\-]\d+)*$",
    re.IGNORECASE,
)

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

LETTER = re.compile(r"[^\W\d_]")


def normalise_whitespace(text: str) -> str:
    """`text` with every run of whitespace turned into one space and the ends stripped."""
    return " ".join(text.split())


def looks_like_file_name(text: str) -> bool:
    """True for alts that are an image file name or a camera's default name."""
    return bool(FILE_NAME.match(text) or CAMERA_NAME.match(text))


def is_junk(text: str) -> bool:
    """True when the whole alt is a known boilerplate phrase, case and end dots ignored."""
    return text.lower().strip(" .:-|") in JUNK_ALTS


def has_letter(text: str) -> bool:
    return LETTER.search(text) is not None


def text_reason(caption: str, config: CurateConfig) -> str | None:
    """The reason `caption` fails the text rules, or None when it passes."""
    text = normalise_whitespace(caption)
    if not text:
        return "text:empty"
    if not has_letter(text):
        return "text:numeric"
    if looks_like_file_name(text):
        return "text:filename"
    if is_junk(text):
        return "text:junk"
    if len(text.split(" ")) < config.min_words:
        return "text:too_few_words"
    if len(text) < config.min_chars:
        return "text:too_short"
    return None


def text_rules(pair: Pair, config: CurateConfig) -> Pair:
    """`pair` unchanged when its caption passes, else dropped with the reason."""
    reason = text_reason(pair.caption, config)
    return pair if reason is None else pair.dropped(reason)


def filter_text(pairs: Iterable[Pair], config: CurateConfig) -> Iterator[Pair]:
    """Apply the text rules to every kept pair; dropped pairs pass through untouched."""
    for pair in pairs:
        yield text_rules(pair, config) if pair.kept else pair
