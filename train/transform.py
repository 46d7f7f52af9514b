"""Image preprocessing shared by training and evaluation, in PIL and torch only.

RGB, resize so the shortest side is `image_size` (bicubic), centre crop to a square,
scale to [0, 1], normalise with CLIP's mean and standard deviation.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")


def resize_shortest_side(image: Image.Image, size: int) -> Image.Image:
    width, height = image.size
    scale = size / min(width, height)
    target = (max(size, round(width * scale)), max(size, round(height * scale)))
    if target == image.size:
        return image
    return image.resize(target, Image.Resampling.BICUBIC)


def center_crop(image: Image.Image, size: int) -> Image.Image:
    width, height = image.size
    left, top = (width - size) // 2, (height - size) // 2
    return image.crop((left, top, left + size, top + size))


def image_to_tensor(image: Image.Image, image_size: int) -> torch.Tensor:
    """A `[3, image_size, image_size]` float tensor, normalised as CLIP's inputs are."""
    image = center_crop(resize_shortest_side(image.convert("RGB"), image_size), image_size)
    pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
    mean = torch.tensor(CLIP_MEAN).view(3, 1, 1)
    std = torch.tensor(CLIP_STD).view(3, 1, 1)
    return (pixels - mean) / std


def decode_image(data: bytes, image_size: int) -> torch.Tensor:
    """Decode encoded image bytes (any format Pillow reads) into a normalised tensor."""
    with Image.open(io.BytesIO(data)) as image:
        image.draft("RGB", (image_size, image_size))  # JPEG: decode at reduced size
        return image_to_tensor(image, image_size)
