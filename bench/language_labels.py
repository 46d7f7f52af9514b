"""The labelled short texts that pick the default language engine (README in bench/data).

Two parts, neither copied into the project:

- `alt_text_set`: real alt texts from the shared 10,000 (`../shared/data/alt_text/`),
  hand-labelled; `data/language_labels.tsv` holds each text's key (the blake2b-64 of its
  whitespace-normalised text) and its label: an ISO 639-1 code, or `none` for names and
  brands that belong to no language.
- `catalog_set`: short messages from the machine's installed gettext translations
  (`/usr/share/locale/<lang>/LC_MESSAGES/*.mo`) for the languages real alt texts hardly
  hold (da, no, sv, nl, ca, ...), labelled by the catalog's language, chosen by rule.
"""

from __future__ import annotations

import gettext
import hashlib
import re
from pathlib import Path

import pyarrow.parquet as pq

DATA = Path(__file__).parent / "data"
LABELS = DATA / "language_labels.tsv"
SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
ALT_TEXTS = SHARED / "alt_text" / "img2dataset-test_10000.parquet"
LOCALES = Path("/usr/share/locale")
# Catalog folder -> label; each gives its first CATALOG_TEXTS messages in key order.
CATALOG_LANGUAGES = {
    "da": "da", "nb": "no", "sv": "sv", "nl": "nl", "de": "de",
    "ca": "ca", "es": "es", "pt": "pt", "it": "it", "fr": "fr",
}  # fmt: skip
CATALOG_TEXTS = 40
SKIPPED_DOMAINS = ("iso_", "xkeyboard")  # lists of names, not sentences
PLAIN_MESSAGE = re.compile(r"[^\W\d_][^%{}<>\[\]\\/_|=@#$*~`^\"]*")

LabelledText = tuple[str, str]  # (text, label)


def normalised(text: str) -> str:
    return " ".join(text.split())


def text_key(text: str) -> str:
    return hashlib.blake2b(normalised(text).encode(), digest_size=8).hexdigest()


def read_labels(path: Path = LABELS) -> dict[str, str]:
    lines = path.read_text(encoding="utf-8").splitlines()[1:]
    return dict(line.split("\t") for line in lines if line)


def alt_text_set(path: Path = ALT_TEXTS) -> list[LabelledText]:
    """The hand-labelled real alt texts, in key order; [] when the shared file is absent."""
    if not path.exists():
        return []
    labels = read_labels()
    texts = {
        text_key(t): normalised(t) for t in pq.read_table(path).column("TEXT").to_pylist() if t
    }
    missing = sorted(set(labels) - set(texts))
    if missing:
        raise ValueError(f"{len(missing)} labelled texts not in {path.name}, e.g. {missing[0]}")
    return [(texts[key], labels[key]) for key in sorted(labels)]


def catalog_messages(folder: Path) -> list[str]:
    """Translated messages of 3-12 words without markup or format codes in one language."""
    found: set[str] = set()
    for mo in sorted(folder.glob("*.mo")):
        if mo.name.startswith(SKIPPED_DOMAINS):
            continue
        try:
            with mo.open("rb") as handle:
                catalog = gettext.GNUTranslations(handle)._catalog  # type: ignore[attr-defined]
        except (OSError, UnicodeDecodeError):
            continue  # a catalog in a legacy encoding
        for msgid, msgstr in catalog.items():
            text = normalised(str(msgstr))
            if not isinstance(msgid, str) or not msgid or text == normalised(msgid):
                continue
            if 3 <= len(text.split()) <= 12 and PLAIN_MESSAGE.fullmatch(text):
                found.add(text)
    return sorted(found, key=text_key)


def catalog_set(root: Path = LOCALES, per_language: int = CATALOG_TEXTS) -> list[LabelledText]:
    """Up to `per_language` catalog messages per language of CATALOG_LANGUAGES."""
    labelled: list[LabelledText] = []
    for folder, label in CATALOG_LANGUAGES.items():
        messages = catalog_messages(root / folder / "LC_MESSAGES")
        labelled += [(text, label) for text in messages[:per_language]]
    return labelled
