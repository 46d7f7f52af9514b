"""The sandbox's visual vocabulary: concepts, their Zipf-like frequencies and their captions.

A concept is a colour and a shape ("red circle"): 8 colours x 6 shapes = 48 classes that a
small CNN can learn from pixels. How often each concept appears on the web follows a Zipf
law over a rank order drawn from the seed, so balancing has a head to cut and a tail to
keep. Captions are English sentences from templates that contain the colour and the shape
as separate words, which is what MetaCLIP's space-padded substring matching needs.

With `sandbox.languages` naming more than English, half the captions (by a hash of the
item) are in the first language and the rest spread evenly over the others: the same
concepts described in French, German, Spanish, Italian, Dutch or Portuguese, so that a
worldwide curation (`curate.mode = "worldwide"`) keeps pairs in every language, each
caption describing its picture. The phrases use forms that need no agreement with the
shape ("de couleur rouge", "in Rot", "in de kleur rood").
"""

from __future__ import annotations

import bisect
import functools
import itertools
import re
from dataclasses import dataclass

from core.config import SandboxConfig
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


@dataclass(frozen=True)
class CaptionLanguage:
    """How one language describes a concept: "<shape> <joiner> <colour>" in templates."""

    shapes: dict[str, str]  # shape -> noun phrase with its article
    colours: dict[str, str]  # colour -> the word after the joiner
    joiner: str
    templates: tuple[str, ...]  # each holds {concept} and {background}
    backgrounds: tuple[str, ...]

    def phrase(self, concept: Concept) -> str:
        return f"{self.shapes[concept.shape]} {self.joiner} {self.colours[concept.colour]}"


CAPTION_LANGUAGES: dict[str, CaptionLanguage] = {
    "fr": CaptionLanguage(
        shapes={"circle": "un cercle", "square": "un carré", "triangle": "un triangle",
                "star": "une étoile", "hexagon": "un hexagone", "cross": "une croix"},
        colours={"red": "rouge", "orange": "orange", "yellow": "jaune", "green": "verte",
                 "blue": "bleue", "purple": "violette", "pink": "rose", "brown": "marron"},
        joiner="de couleur",
        templates=("voici {concept} sur un fond {background}",
                   "il y a {concept} au milieu de cette image, sur un fond {background}",
                   "ma fille a peint {concept} à l'école aujourd'hui",
                   "une vieille photo avec {concept} sur un mur {background}"),
        backgrounds=("gris", "blanc", "clair", "sombre", "uni"),
    ),
    "de": CaptionLanguage(
        shapes={"circle": "ein Kreis", "square": "ein Quadrat", "triangle": "ein Dreieck",
                "star": "ein Stern", "hexagon": "ein Sechseck", "cross": "ein Kreuz"},
        colours={"red": "Rot", "orange": "Orange", "yellow": "Gelb", "green": "Grün",
                 "blue": "Blau", "purple": "Lila", "pink": "Rosa", "brown": "Braun"},
        joiner="in",
        templates=("das ist {concept} auf {background} Hintergrund",
                   "auf diesem Bild ist {concept} auf {background} Hintergrund zu sehen",
                   "meine Tochter sagt, das ist {concept}, heute in der Schule gemalt",
                   "ein altes Foto: {concept} auf einer Wand mit {background} Putz"),
        backgrounds=("grauem", "weißem", "hellem", "dunklem", "schlichtem"),
    ),
    "es": CaptionLanguage(
        shapes={"circle": "un círculo", "square": "un cuadrado", "triangle": "un triángulo",
                "star": "una estrella", "hexagon": "un hexágono", "cross": "una cruz"},
        colours={"red": "rojo", "orange": "naranja", "yellow": "amarillo", "green": "verde",
                 "blue": "azul", "purple": "morado", "pink": "rosa", "brown": "marrón"},
        joiner="de color",
        templates=("foto de {concept} sobre un fondo {background}",
                   "aquí se ve {concept} en el centro de la imagen, con fondo {background}",
                   "mi hija dibujó {concept} en la escuela hoy",
                   "una foto antigua de {concept} en una pared de color {background}"),
        backgrounds=("gris", "blanco", "claro", "oscuro", "liso"),
    ),
    "it": CaptionLanguage(
        shapes={"circle": "un cerchio", "square": "un quadrato", "triangle": "un triangolo",
                "star": "una stella", "hexagon": "un esagono", "cross": "una croce"},
        colours={"red": "rosso", "orange": "arancione", "yellow": "giallo", "green": "verde",
                 "blue": "blu", "purple": "viola", "pink": "rosa", "brown": "marrone"},
        joiner="di colore",
        templates=("foto di {concept} su uno sfondo {background}",
                   "ecco {concept} al centro di questa immagine, su sfondo {background}",
                   "mia figlia ha disegnato {concept} a scuola oggi",
                   "una vecchia fotografia di {concept} su un muro {background}"),
        backgrounds=("grigio", "bianco", "chiaro", "scuro", "semplice"),
    ),
    "nl": CaptionLanguage(
        shapes={"circle": "een cirkel", "square": "een vierkant", "triangle": "een driehoek",
                "star": "een ster", "hexagon": "een zeshoek", "cross": "een kruis"},
        colours={"red": "rood", "orange": "oranje", "yellow": "geel", "green": "groen",
                 "blue": "blauw", "purple": "paars", "pink": "roze", "brown": "bruin"},
        joiner="in de kleur",
        templates=("foto van {concept} op een {background} achtergrond",
                   "hier zie je {concept} in het midden van de foto, op een {background} muur",
                   "mijn dochter tekende vandaag {concept} op school",
                   "een oude foto van {concept} op een {background} muur"),
        backgrounds=("grijze", "witte", "lichte", "donkere", "effen"),
    ),
    "pt": CaptionLanguage(
        shapes={"circle": "um círculo", "square": "um quadrado", "triangle": "um triângulo",
                "star": "uma estrela", "hexagon": "um hexágono", "cross": "uma cruz"},
        colours={"red": "vermelha", "orange": "laranja", "yellow": "amarela", "green": "verde",
                 "blue": "azul", "purple": "roxa", "pink": "rosa", "brown": "castanha"},
        joiner="de cor",
        templates=("esta é uma fotografia de {concept} com um fundo {background}",
                   "aqui podemos ver {concept} no meio desta imagem, com fundo {background}",
                   "a minha filha desenhou {concept} na escola hoje",
                   "uma fotografia antiga de {concept} numa parede {background}"),
        backgrounds=("cinzento", "branco", "claro", "escuro", "liso"),
    ),
}  # fmt: skip

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


def caption_language(key: str, seed: int, languages: tuple[str, ...] = ("en",)) -> str:
    """The language of item `key`'s caption: the first of `languages` for half the items
    (all of them when it is the only one), the others evenly for the rest."""
    if len(languages) == 1:
        return languages[0]
    draw = hash_unit("language", key, seed)
    if draw < 0.5:
        return languages[0]
    others = languages[1:]
    return others[min(int((draw - 0.5) * 2 * len(others)), len(others) - 1)]


def make_caption(
    concept: Concept, key: str, seed: int, languages: tuple[str, ...] = ("en",)
) -> str:
    """A sentence describing `concept` in the language `caption_language` picks: English
    from the templates, or one of CAPTION_LANGUAGES."""
    language = caption_language(key, seed, languages)
    if language != "en":
        return foreign_caption(CAPTION_LANGUAGES[language], concept, key, seed)
    rng = derive_random("caption", key, seed)
    template = rng.choice(TEMPLATES)
    return template.format(
        colour=concept.colour,
        shape=concept.shape,
        size=rng.choice(SIZES),
        background=rng.choice(BACKGROUNDS),
        surface=rng.choice(SURFACES),
    )


def foreign_caption(language: CaptionLanguage, concept: Concept, key: str, seed: int) -> str:
    rng = derive_random("caption", key, seed)
    template = rng.choice(language.templates)
    phrase = language.phrase(concept)
    return template.format(concept=phrase, background=rng.choice(language.backgrounds))


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
