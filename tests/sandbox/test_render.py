from __future__ import annotations

import io
import time
from collections import Counter

import imagehash
import numpy as np
import pytest
from PIL import Image

from sandbox.concepts import COLOURS, SHAPES, Concept, all_concepts
from sandbox.render import (
    BOMB_SIDE,
    ImageSpec,
    bomb_png,
    image_bytes,
    placeholder_gif,
    render_bytes,
    render_concept,
)


def dominant_colour(image: Image.Image) -> tuple[str, float]:
    """The concept colour nearest to most coloured pixels, and the share it holds."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32).reshape(-1, 3) / 255.0
    chroma = pixels.max(axis=1) - pixels.min(axis=1)
    saturated = pixels[chroma > 0.28]
    palette = np.array(list(COLOURS.values()), dtype=np.float32) / 255.0
    nearest = np.argmin(((saturated[:, None, :] - palette[None]) ** 2).sum(-1), axis=1)
    name, count = Counter(nearest.tolist()).most_common(1)[0]
    return list(COLOURS)[name], count / len(saturated)


def test_same_spec_same_bytes_other_seed_other_bytes() -> None:
    spec = ImageSpec(Concept("red", "star"), "page/1#2", 256, 256, 85)
    assert render_bytes(spec, 0) == render_bytes(spec, 0)
    assert render_bytes(spec, 0) != render_bytes(spec, 1)
    assert image_bytes(spec, 0) is image_bytes(spec, 0)  # cached


@pytest.mark.parametrize("colour", list(COLOURS))
def test_concept_colour_dominates_pixels(colour: str) -> None:
    for index, shape in enumerate(SHAPES[:3]):
        image = render_concept(Concept(colour, shape), f"dom{index}", 0, 96, 96)
        found, share = dominant_colour(image)
        assert found == colour
        assert share > 0.9


def test_shape_covers_a_fair_part_of_the_picture() -> None:
    for concept in all_concepts()[:12]:
        image = render_concept(concept, "area", 0, 128, 128)
        pixels = np.asarray(image, dtype=np.int16)
        distance = np.abs(pixels - np.array(concept.rgb)).sum(-1)
        covered = float((distance < 80).mean())
        assert 0.04 < covered < 0.7, concept


def test_encoded_picture_is_a_valid_jpeg_of_its_size_over_5kb() -> None:
    data = render_bytes(ImageSpec(Concept("blue", "cross"), "k", 320, 256, 80), 0)
    image = Image.open(io.BytesIO(data))
    image.load()
    assert (image.format, image.size) == ("JPEG", (320, 256))
    assert len(data) > 5_000


def test_near_duplicate_keeps_phash_but_not_bytes() -> None:
    original = ImageSpec(Concept("green", "hexagon"), "nd", 256, 256, 85)
    copy = ImageSpec(original.concept, "nd", 256, 256, 40, variant="near_dup", scale=0.85)
    a, b = render_bytes(original, 0), render_bytes(copy, 0)
    assert a != b
    image_a, image_b = Image.open(io.BytesIO(a)), Image.open(io.BytesIO(b))
    assert image_b.size == (218, 218)
    assert imagehash.phash(image_a) - imagehash.phash(image_b) <= 3
    other = Image.open(io.BytesIO(render_bytes(ImageSpec(original.concept, "x", 256, 256), 0)))
    assert imagehash.phash(image_a) - imagehash.phash(other) > 3


def test_bomb_declares_too_many_pixels() -> None:
    data = bomb_png()
    assert len(data) < 100_000
    with pytest.raises(Image.DecompressionBombError):
        Image.open(io.BytesIO(data))
    assert BOMB_SIDE**2 > 2 * 89_478_485  # Pillow's default MAX_IMAGE_PIXELS


def test_truncated_image_opens_but_fails_to_load() -> None:
    spec = ImageSpec(Concept("pink", "circle"), "t", 256, 256, 85, variant="truncated")
    whole = render_bytes(ImageSpec(spec.concept, "t", 256, 256, 85), 0)
    data = render_bytes(spec, 0)
    assert whole.startswith(data) and len(data) < len(whole)
    image = Image.open(io.BytesIO(data))
    with pytest.raises(OSError, match="truncated"):
        image.load()


@pytest.mark.parametrize("variant", ["garbage", "jpeg_garbage", "empty"])
def test_broken_bytes_are_not_images(variant: str) -> None:
    data = render_bytes(ImageSpec(None, "b", 1, 1, variant=variant), 0)
    with pytest.raises(OSError):  # UnidentifiedImageError, or a failed load
        Image.open(io.BytesIO(data)).load()


def test_placeholder_is_a_tiny_gif() -> None:
    image = Image.open(io.BytesIO(placeholder_gif()))
    assert (image.format, image.size) == ("GIF", (1, 1))


def test_rendering_takes_a_few_milliseconds() -> None:
    start = time.perf_counter()
    for i in range(40):
        render_bytes(ImageSpec(all_concepts()[i], f"speed{i}", 256, 256, 85), 0)
    assert (time.perf_counter() - start) / 40 < 0.03
