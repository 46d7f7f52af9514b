"""Pixels for the sandbox web: concept pictures, and the broken bytes the real web serves.

A concept picture is the concept's shape, filled with its colour, at a random position,
scale and rotation, over a tinted grey gradient, with pixel noise, saved as JPEG. Every
random choice derives from (key, seed), so an `ImageSpec` always gives the same bytes and a
small CNN can learn colour and shape from them. The same key rendered at another size gives
the same picture at another resolution (the layout is relative), which is what `srcset`
and near-duplicates need.
"""

from __future__ import annotations

import functools
import io
import math
import random
import struct
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from sandbox.concepts import Concept
from sandbox.seeding import derive_numpy, derive_random

# Side of the PNG that declares more than twice Pillow's MAX_IMAGE_PIXELS (89,478,485),
# so `Image.open` raises DecompressionBombError instead of only warning.
BOMB_SIDE = 16_384

VARIANTS = ("plain", "near_dup", "garbage", "jpeg_garbage", "empty", "truncated", "bomb")


@dataclass(frozen=True)
class ImageSpec:
    """Everything that decides the bytes of one served image (hashable: the cache key)."""

    concept: Concept | None
    key: str  # the render stream: same key, same picture
    width: int
    height: int
    quality: int = 85
    variant: str = "plain"  # one of VARIANTS
    scale: float = 1.0  # near_dup: resize factor applied after rendering

    @property
    def content_type(self) -> str:
        return "image/png" if self.variant == "bomb" else "image/jpeg"


def render_concept(concept: Concept, key: str, seed: int, width: int, height: int) -> Image.Image:
    """The concept drawn over a noisy tinted background, as an RGB image."""
    layout = derive_random("layout", key, seed)
    image = _background(layout, width, height)
    side = min(width, height)
    radius = layout.uniform(0.22, 0.42) * side
    cx = layout.uniform(radius, width - radius)
    cy = layout.uniform(radius, height - radius)
    angle = layout.uniform(0.0, 2.0 * math.pi)
    points = [
        (
            cx + radius * (x * math.cos(angle) - y * math.sin(angle)) * layout.uniform(0.97, 1.03),
            cy + radius * (x * math.sin(angle) + y * math.cos(angle)) * layout.uniform(0.97, 1.03),
        )
        for x, y in _outline(concept.shape)
    ]
    fill = tuple(max(0, min(255, v + layout.randint(-15, 15))) for v in concept.rgb)
    ImageDraw.Draw(image).polygon(points, fill=fill)
    return _add_noise(image, derive_numpy("noise", key, seed, width, height))


def _background(rng: random.Random, width: int, height: int) -> Image.Image:
    """A tinted grey linear gradient, low in saturation so the shape's colour dominates.

    Computed on a coarse grid and resized: a linear ramp survives bilinear resizing.
    """
    grey = rng.uniform(70.0, 225.0)
    tint = np.array([rng.uniform(-10.0, 10.0) for _ in range(3)], dtype=np.float32)
    spread = rng.uniform(-30.0, 30.0)
    direction = rng.uniform(0.0, 2.0 * math.pi)
    cols, rows = min(width, 16), min(height, 16)
    across = np.linspace(0.0, math.cos(direction), cols, dtype=np.float32)
    down = np.linspace(0.0, math.sin(direction), rows, dtype=np.float32)
    level = grey + spread * (down[:, None] + across[None, :])
    pixels = np.clip(level[:, :, None] + tint[None, None, :], 0, 255).astype(np.uint8)
    return Image.fromarray(pixels).resize((width, height), Image.Resampling.BILINEAR)


def _add_noise(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    pixels = np.asarray(image, dtype=np.int16)
    noise = rng.integers(-12, 13, size=pixels.shape, dtype=np.int16)
    return Image.fromarray(np.clip(pixels + noise, 0, 255).astype(np.uint8))


@functools.lru_cache(maxsize=8)
def _outline(shape: str) -> tuple[tuple[float, float], ...]:
    """The shape's outline as unit-radius polygon vertices around (0, 0)."""
    if shape == "circle":
        return _regular(48, 1.0)
    if shape == "square":
        return _regular(4, 1.0)
    if shape == "triangle":
        return _regular(3, 1.0)
    if shape == "hexagon":
        return _regular(6, 1.0)
    if shape == "star":
        outer, inner = _regular(5, 1.0), _regular(5, 0.45, offset=math.pi / 5)
        return tuple(p for pair in zip(outer, inner, strict=True) for p in pair)
    if shape == "cross":
        arm = 0.33
        corners = [(arm, 1), (arm, arm), (1, arm), (1, -arm), (arm, -arm), (arm, -1)]
        right = [(float(x), float(y)) for x, y in corners]
        return tuple(right + [(-x, -y) for x, y in right])
    raise ValueError(f"unknown shape {shape!r}")


def _regular(sides: int, radius: float, offset: float = 0.0) -> tuple[tuple[float, float], ...]:
    step = 2.0 * math.pi / sides
    return tuple(
        (
            radius * math.cos(offset + i * step - math.pi / 2),
            radius * math.sin(offset + i * step - math.pi / 2),
        )
        for i in range(sides)
    )


def encode_jpeg(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def render_bytes(spec: ImageSpec, seed: int) -> bytes:
    """The bytes served for `spec` (uncached; see `image_bytes`)."""
    if spec.variant == "bomb":
        return bomb_png()
    if spec.variant == "empty":
        return b""
    if spec.variant == "garbage":
        return derive_random("garbage", spec.key, seed).randbytes(2048)
    if spec.variant == "jpeg_garbage":
        return b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + derive_random(
            "jpeg", spec.key, seed
        ).randbytes(4096)
    assert spec.concept is not None, f"{spec.variant} images need a concept"
    image = render_concept(spec.concept, spec.key, seed, spec.width, spec.height)
    if spec.scale != 1.0:
        size = (round(spec.width * spec.scale), round(spec.height * spec.scale))
        image = image.resize(size, Image.Resampling.BILINEAR)
    data = encode_jpeg(image, spec.quality)
    return truncate(data) if spec.variant == "truncated" else data


@functools.lru_cache(maxsize=2048)
def image_bytes(spec: ImageSpec, seed: int) -> bytes:
    """The bytes served for `spec`, rendered on first use and kept in an LRU cache."""
    return render_bytes(spec, seed)


def truncate(data: bytes, keep: float = 0.6) -> bytes:
    """The first `keep` of an encoded image: it opens, but loading its pixels fails."""
    return data[: max(1, int(len(data) * keep))]


@functools.lru_cache(maxsize=1)
def bomb_png(side: int = BOMB_SIDE) -> bytes:
    """A valid 1-bit PNG of side x side black pixels: tens of KB declaring 268 M pixels."""
    row = b"\x00" * (1 + (side + 7) // 8)  # filter byte, then the packed bits
    compressor = zlib.compressobj(9)
    chunks = [compressor.compress(row * 256) for _ in range(side // 256)]
    chunks.append(compressor.compress(row * (side % 256)))
    idat = b"".join(chunks) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", idat)
        + (_png_chunk(b"IEND", b""))
    )


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(tag + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)


@functools.lru_cache(maxsize=1)
def placeholder_gif() -> bytes:
    """The 1x1 grey GIF that lazy-loading pages put in `src` until the real image loads."""
    buffer = io.BytesIO()
    Image.new("L", (1, 1), 200).save(buffer, format="GIF")
    return buffer.getvalue()
