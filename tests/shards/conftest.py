"""Images and pairs built in memory for the shards tests (seeded, so every run is the same)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image


def photo_like(width: int, height: int, seed: int) -> Image.Image:
    """A smooth colour field with shapes and sensor-like noise: compresses like a photo."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    channels = []
    for _ in range(3):
        fx, fy, phase = rng.uniform(0.5, 4.0), rng.uniform(0.5, 4.0), rng.uniform(0, 6.3)
        wave = np.sin(xs / width * fx * 6.28 + phase) * np.cos(ys / height * fy * 6.28)
        channels.append(128 + 90 * wave)
    pixels = np.stack(channels, axis=-1)
    for _ in range(6):  # a few discs of flat colour
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        radius = rng.uniform(0.05, 0.3) * min(width, height)
        inside = (xs - cx) ** 2 + (ys - cy) ** 2 < radius**2
        pixels[inside] = rng.uniform(0, 255, size=3)
    pixels += rng.normal(0, 6, size=pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="RGB")


def encode(image: Image.Image, fmt: str = "JPEG", **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def photo_jpeg(width: int = 640, height: int = 480, seed: int = 0, quality: int = 90) -> bytes:
    return encode(photo_like(width, height, seed), "JPEG", quality=quality)


@pytest.fixture(scope="session")
def photos_640x480() -> list[bytes]:
    """Forty distinct photo-like 640x480 JPEGs."""
    return [photo_jpeg(640, 480, seed=seed) for seed in range(40)]
