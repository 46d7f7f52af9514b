"""The held-out labelled images for zero-shot evaluation of a model trained on the sandbox.

`write_heldout(config, folder)` renders `heldout_per_class` pictures of every concept into
`folder/images/` and writes `folder/manifest.json`:

    {"classes": ["red circle", ...], "templates": ["a photo of a {}.", ...],
     "samples": [{"file": "images/00000.jpg", "label": 0}, ...]}

The pictures are never served by the web: their keys start with "heldout/", a render stream
the web never uses. Every file is written atomically and the folder is marked done last, so
a rerun with the same config skips the work and a killed run redoes it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core import storage
from core.config import SandboxConfig
from core.io import (
    clear_done,
    is_done,
    mark_done,
    read_json,
    remove_stale_temporaries,
    write_json,
)
from sandbox.concepts import Concept, all_concepts
from sandbox.render import encode_jpeg, render_concept
from sandbox.seeding import derive_random

MANIFEST = "manifest.json"
MARKER = "heldout"
TEMPLATES = (
    "a photo of a {}.",
    "a picture of a {}.",
    "a drawing of a {}.",
    "a {} on a plain background.",
    "a photo of a small {}.",
    "a photo of a large {}.",
)


def write_heldout(config: SandboxConfig, folder: str | Path) -> str:
    """Write the held-out set into `folder` (local or object storage; skipped if already
    complete); returns the manifest's location."""
    root = storage.name(folder)
    manifest = storage.join(root, MANIFEST)
    info = _marker_info(config)
    complete = is_done(root, MARKER) and storage.exists(manifest)
    if complete and read_json(storage.join(root, f"{MARKER}.done")) == info:
        return manifest
    clear_done(root, MARKER)
    remove_stale_temporaries(root)  # what a killed writer of this set left
    classes = [concept.name for concept in all_concepts()]
    samples: list[dict[str, Any]] = []
    for label, concept in enumerate(all_concepts()):
        for index in range(config.heldout_per_class):
            name = f"images/{len(samples):05d}.jpg"
            storage.write_bytes(storage.join(root, name), _render(concept, index, config))
            samples.append({"file": name, "label": label})
    _remove_stale(storage.join(root, "images"), {sample["file"] for sample in samples})
    write_json(manifest, {"classes": classes, "templates": list(TEMPLATES), "samples": samples})
    mark_done(root, MARKER, info)
    return manifest


def _marker_info(config: SandboxConfig) -> dict[str, Any]:
    return {
        "seed": config.seed,
        "per_class": config.heldout_per_class,
        "image_size": config.image_size,
    }


def _render(concept: Concept, index: int, config: SandboxConfig) -> bytes:
    key = f"heldout/{concept.name}/{index}"
    quality = derive_random("heldout-quality", key, config.seed).randint(75, 92)
    side = config.image_size
    return encode_jpeg(render_concept(concept, key, config.seed, side, side), quality)


def _remove_stale(images: str, keep: set[str]) -> None:
    """Delete images a previous, larger held-out set left behind."""
    for file_name in storage.list_names(images, ".jpg"):
        if f"images/{file_name}" not in keep:
            storage.remove(storage.join(images, file_name))
