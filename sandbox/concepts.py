"""The sandbox's visual vocabulary: concepts, their Zipf-like frequencies and their captions.

A concept is a colour and a shape ("red circle"): 8 colours x 6 shapes = 48 classes that a
small CNN can learn from pixels. How often each concept appears on the web follows a Zipf
law over a rank order drawn from the seed, so balancing has a head to cut and a tail to
keep. Captions are English sentences from templates that contain the colour and the shape
as separate words, which is what MetaCLIP's space-padded substring matching needs.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import re
from dataclasses import dataclass

from pipeline.config import SandboxConfig
from sandbox.seeding import derive_random, hash_int, hash_unit

# Colour name -> RGB of its pure form; all saturated, so a grey background never competes.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 35),
    "orange": (245, 135, 20),
    "yellow": (240, 215, 25),
    "green": (40, 165, 60),
    "blue": (35, 80, 215),
    "purple": (135, 50, 185),
    "pink": (245, 110, 180),
    "brown": (125, 70, 30),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "hexagon", "cross")

ZIPF_EXPONENT = 1.0

# English caption templates; each holds {colour} and {shape} as separate words.
TEMPLATES: tuple[str, ...] = (
    "a {colour} {shape} on a {background} background",
    "photo of a {size} {colour} {shape} drawn by hand",
    "a close up photo of a {colour} {shape} painted on {surface}",
    "there is a {size} {colour} {shape} in the middle of this picture",
    "a simple {colour} {shape} printed on a sheet of {surface}",
    "my daughter drew this {colour} {shape} at school today",
    "the {colour} {shape} stands out against the {background} wall",
    "an old photograph of a {colour} {shape} sign on the street",
    "a {size} {colour} {shape} cut out of paper and glued on a card",
    "picture of the {colour} {shape} we made for the class project",
    "here you can see a {colour} {shape} with a {background} background",
    "this is a {size} {colour} {shape} that I found in the garden",
)
SIZES: tuple[str, ...] = ("small", "large", "big", "tiny", "bright")
BACKGROUNDS: tuple[str, ...] = ("grey", "white", "light", "dark", "plain")
SURFACES: tuple[str, ...] = ("paper", "wood", "canvas", "cardboard", "fabric")

# Full sentences in other languages that langdetect flags reliably.
FOREIGN_ALTS: tuple[tuple[str, str], ...] = (
    ("fr", "une photo d'un cercle rouge posé sur la table de la cuisine"),
    ("de", "ein Foto von einem roten Kreis auf dem Tisch in der Küche"),
    ("es", "una foto de un círculo rojo encima de la mesa de la cocina"),
    ("it", "una fotografia di un cerchio rosso sul tavolo della cucina"),
    ("pt", "uma fotografia de um círculo vermelho em cima da mesa da cozinha"),
    ("nl", "een foto van een rode cirkel op de houten tafel in de keuken"),
    ("fr", "dessin d'une étoile bleue fait par les enfants de la classe"),
    ("de", "ein gelbes Dreieck, das die Kinder in der Schule gemalt haben"),
)
# Alt texts that say nothing about the picture.
JUNK_ALTS: tuple[str, ...] = (
    "IMG_1234.jpg",
    "DSC_0042.JPG",
    "logo",
    "image",
    "",
    "click here",
    "banner.png",
    "spacer",
)
# Alt texts of one or two words (text rules drop them: DataComp wants more than two words).
SHORT_ALTS: tuple[str, ...] = ("star", "blue square", "circle", "green triangle", "red")

# Ordinary caption words left out of the query list (too common to be worth an entry).
_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "of",
        "on",
        "in",
        "at",
        "by",
        "and",
        "for",
        "to",
        "is",
        "this",
        "that",
        "there",
        "here",
        "we",
        "you",
        "my",
        "can",
        "with",
        "out",
        "i",
        "it",
    ]
)


@dataclass(frozen=True, order=True)
class Concept:
    """A visual concept: a shape in a colour."""

    colour: str
    shape: str

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"

    @property
    def rgb(self) -> tuple[int, int, int]:
        return COLOURS[self.colour]


def all_concepts() -> list[Concept]:
    """Every concept, colour-major: the class list of the held-out set."""
    return [Concept(c, s) for c, s in itertools.product(COLOURS, SHAPES)]


def concept_by_name(name: str) -> Concept:
    colour, _, shape = name.partition(" ")
    if colour not in COLOURS or shape not in SHAPES:
        raise KeyError(f"not a sandbox concept: {name!r}")
    return Concept(colour, shape)


@functools.lru_cache(maxsize=16)
def concept_ranking(seed: int) -> tuple[Concept, ...]:
    """The concepts from most to least frequent; the order is drawn from the seed."""
    return tuple(sorted(all_concepts(), key=lambda c: hash_int("rank", c.name, seed)))


@functools.lru_cache(maxsize=16)
def _cumulative_weights(count: int, exponent: float) -> tuple[float, ...]:
    weights = [1.0 / (rank + 1) ** exponent for rank in range(count)]
    total = sum(weights)
    return tuple(itertools.accumulate(w / total for w in weights))


def sample_concept(key: str, seed: int) -> Concept:
    """The concept of item `key`: Zipf-distributed over `concept_ranking(seed)`."""
    ranking = concept_ranking(seed)
    cumulative = _cumulative_weights(len(ranking), ZIPF_EXPONENT)
    index = bisect.bisect_right(cumulative, hash_unit("concept", key, seed))
    return ranking[min(index, len(ranking) - 1)]


def make_caption(concept: Concept, key: str, seed: int) -> str:
    """An English sentence describing `concept`, chosen and filled from the templates."""
    rng = derive_random("caption", key, seed)
    template = rng.choice(TEMPLATES)
    return template.format(
        colour=concept.colour,
        shape=concept.shape,
        size=rng.choice(SIZES),
        background=rng.choice(BACKGROUNDS),
        surface=rng.choice(SURFACES),
    )


def caption_words() -> list[str]:
    """The ordinary English words of the templates (not colours, shapes or stopwords)."""
    words: set[str] = set(SIZES) | set(BACKGROUNDS) | set(SURFACES)
    for template in TEMPLATES:
        plain = re.sub(r"\{\w+\}", " ", template)
        words.update(w for w in re.findall(r"[a-z]+", plain) if w not in _STOPWORDS)
    return sorted(words - set(COLOURS) - set(SHAPES))


def query_list(config: SandboxConfig | None = None) -> list[str]:
    """Query entries for curating the sandbox: colours, shapes, their bigrams, caption words.

    The vocabulary is the same for every seed; `config` is accepted so that callers treat
    the sandbox like any other source of a query list.
    """
    del config  # the vocabulary does not depend on the seed or the sizes
    entries = list(COLOURS) + list(SHAPES) + [c.name for c in all_concepts()]
    return entries + [w for w in caption_words() if w not in entries]
