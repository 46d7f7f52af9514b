"""Tiny datasets for the trainer's tests: solid-colour images captioned with their colour.

Shards follow img2dataset's layout (`{shard:05d}.tar` of `{key}.jpg/.txt/.json`, a
`sizes.json`, a `.done` marker per shard); the eval folder holds a zero-shot manifest.
"""

from __future__ import annotations

import functools
import io
import json
import random
from pathlib import Path

import webdataset as wds
from PIL import Image

from core.config import TrainConfig
from core.io import mark_done, write_json
from train.tokenizer import BpeTokenizer, train_bpe

COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 200, 40),
    "blue": (30, 40, 220),
    "yellow": (235, 225, 30),
}
CAPTIONS = ("a {} square", "plain {} background", "the colour {}", "{} paint sample")
EVAL_TEMPLATES = ("a photo of a {}.", "{}")

TINY = TrainConfig(
    image_size=32,
    embed_dim=32,
    patch_size=8,
    vision_width=32,
    vision_layers=1,
    vision_head_width=16,
    text_width=32,
    text_layers=1,
    text_heads=2,
    context_length=12,
    vocab_size=512,
    batch_size=16,
    epochs=1,
    lr=3e-3,
    warmup_steps=5,
    shuffle_buffer=32,
    workers=0,
    checkpoint_every=1000,
)


@functools.cache
def colour_tokenizer() -> BpeTokenizer:
    """A BPE tokenizer learned from every colour caption, with TINY's sizes."""
    captions = [caption.format(name) for name in COLOURS for caption in CAPTIONS]
    return train_bpe(captions * 4, TINY.vocab_size, TINY.context_length)


def colour_image(rgb: tuple[int, int, int], rng: random.Random, size: int = 64) -> bytes:
    """A JPEG of one colour, shifted a little so no two images are identical."""
    shade = tuple(max(0, min(255, c + rng.randint(-20, 20))) for c in rgb)
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), shade).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def write_colour_shards(
    folder: Path, shards: int = 4, per_shard: int = 32, seed: int = 0
) -> list[str]:
    """Write `shards` tars of `per_shard` samples, cycling through the colours."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    names = list(COLOURS)
    sizes: dict[str, int] = {}
    for shard in range(shards):
        with wds.TarWriter(str(folder / f"{shard:05d}.tar")) as sink:
            for index in range(per_shard):
                name = names[(shard * per_shard + index) % len(names)]
                caption = rng.choice(CAPTIONS).format(name)
                sink.write(
                    {
                        "__key__": f"{shard:05d}{index:04d}",
                        "jpg": colour_image(COLOURS[name], rng),
                        "txt": caption,
                        "json": json.dumps({"caption": caption, "colour": name}),
                    }
                )
        sizes[f"{shard:05d}.tar"] = per_shard
        mark_done(folder, f"{shard:05d}")
    write_json(folder / "sizes.json", sizes)
    return [str(folder / f"{shard:05d}.tar") for shard in range(shards)]


def write_colour_eval(folder: Path, per_class: int = 5, seed: int = 1) -> Path:
    """A zero-shot eval folder: `per_class` images of each colour and a manifest."""
    rng = random.Random(seed)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    samples: list[dict[str, object]] = []
    for label, rgb in enumerate(COLOURS.values()):
        for _ in range(per_class):
            file = f"images/{len(samples):05d}.jpg"
            (folder / file).write_bytes(colour_image(rgb, rng))
            samples.append({"file": file, "label": label})
    manifest = {"classes": list(COLOURS), "templates": list(EVAL_TEMPLATES), "samples": samples}
    write_json(folder / "manifest.json", manifest)
    return folder
