"""Evaluation of a trained CLIP: zero-shot classification and image-text retrieval.

Zero-shot (CLIP section 3.1.2): each class is embedded as the mean of its normalised
prompt embeddings (`templates` filled with the class name), re-normalised; an image is
assigned the class of highest cosine similarity. An eval folder holds `manifest.json`:
`{"classes": [...], "templates": ["a photo of a {}.", ...],
  "samples": [{"file": "images/00000.jpg", "label": 0}, ...]}`, files relative to it; the
templates can be replaced by the caller's (`train.templates`).

Retrieval: the image and caption of each pair of held-out shards, embedded; recall@k of
image->text is the share of images whose own caption is among the k most similar, and
text->image the other way round.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image

from core import storage
from core.io import read_json
from train.model import CLIP
from train.tokenizer import BpeTokenizer
from train.transform import image_to_tensor

EVAL_BATCH = 256


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def embed_images(
    model: CLIP, images: Sequence[Image.Image | Path | str], image_size: int
) -> torch.Tensor:
    """Normalised image features `[N, D]`, computed in batches in eval mode."""
    device = model_device(model)
    chunks = []
    for start in range(0, len(images), EVAL_BATCH):
        batch = [
            image_to_tensor(load_image(im), image_size) for im in images[start : start + EVAL_BATCH]
        ]
        chunks.append(model.encode_image(torch.stack(batch).to(device)))
    return torch.cat(chunks)


@torch.no_grad()
def embed_texts(model: CLIP, tokenizer: BpeTokenizer, texts: Sequence[str]) -> torch.Tensor:
    """Normalised text features `[N, D]`."""
    device = model_device(model)
    chunks = [
        model.encode_text(tokenizer(list(texts[start : start + EVAL_BATCH])).to(device))
        for start in range(0, len(texts), EVAL_BATCH)
    ]
    return torch.cat(chunks)


def load_image(image: Image.Image | Path | str) -> Image.Image:
    if isinstance(image, Image.Image):
        return image
    return load_image_bytes(storage.read_bytes(image))


def class_embeddings(
    model: CLIP, tokenizer: BpeTokenizer, classes: list[str], templates: list[str]
) -> torch.Tensor:
    """`[C, D]`: per class, the re-normalised mean of its normalised prompt embeddings."""
    prompts = [template.format(name) for name in classes for template in templates]
    features = embed_texts(model, tokenizer, prompts).view(len(classes), len(templates), -1)
    return F.normalize(features.mean(dim=1), dim=-1)


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    """Share of rows whose label is among the `k` highest logits."""
    k = min(k, logits.shape[1])
    hits = (logits.topk(k, dim=1).indices == labels[:, None]).any(dim=1)
    return hits.float().mean().item()


def zero_shot_accuracy(
    model: CLIP,
    tokenizer: BpeTokenizer,
    eval_dir: str | Path,
    image_size: int,
    device: str | torch.device = "cpu",
    templates: Sequence[str] = (),
) -> dict[str, Any]:
    """`{"top1", "top5", "chance", "n", "templates"}` of zero-shot classification on
    `eval_dir`, with the given prompt templates (default: the manifest's)."""
    folder = storage.name(eval_dir)
    manifest = read_json(storage.join(folder, "manifest.json"))
    classes = list(manifest["classes"])
    templates = list(templates) or list(manifest["templates"])
    files = [storage.join(folder, s["file"]) for s in manifest["samples"]]
    labels = torch.tensor([int(s["label"]) for s in manifest["samples"]])
    was_training = model.training
    model.eval().to(device)
    try:
        weights = class_embeddings(model, tokenizer, classes, templates)
        logits = (embed_images(model, files, image_size) @ weights.T).cpu()
    finally:
        model.train(was_training)
    return {
        "top1": topk_accuracy(logits, labels, 1),
        "top5": topk_accuracy(logits, labels, 5),
        "chance": 1 / len(classes),
        "n": len(files),
        "templates": len(templates),
    }


def retrieval_recall(
    model: CLIP,
    tokenizer: BpeTokenizer,
    pairs: Sequence[tuple[Image.Image | Path | str, str]],
) -> dict[str, float]:
    """Image->text and text->image recall at 1 and 5; pair i's caption is image i's match."""
    was_training = model.training
    model.eval()
    try:
        images = embed_images(model, [image for image, _ in pairs], model.image_size)
        texts = embed_texts(model, tokenizer, [caption for _, caption in pairs])
    finally:
        model.train(was_training)
    similarity = (images @ texts.T).cpu()
    labels = torch.arange(len(pairs))
    return {
        "image_to_text_r1": topk_accuracy(similarity, labels, 1),
        "image_to_text_r5": topk_accuracy(similarity, labels, 5),
        "text_to_image_r1": topk_accuracy(similarity.T, labels, 1),
        "text_to_image_r5": topk_accuracy(similarity.T, labels, 5),
        "n": float(len(pairs)),
    }


def read_shard_pairs(shards: Sequence[str], limit: int) -> list[tuple[Image.Image, str]]:
    """Up to `limit` (image, caption) pairs of webdataset shards, in shard and key order."""
    pairs: list[tuple[Image.Image, str]] = []
    for shard in shards:
        members: dict[str, dict[str, bytes]] = {}
        with storage.open_input(shard) as handle, tarfile.open(fileobj=handle, mode="r|") as tar:
            for member in tar:
                data = tar.extractfile(member) if member.isfile() else None
                key, _, ext = member.name.partition(".")
                if data is not None:
                    members.setdefault(key, {})[ext] = data.read()
        for files in members.values():
            image = next((files[e] for e in ("jpg", "jpeg", "png", "webp") if e in files), None)
            if image is None or "txt" not in files:
                continue
            pairs.append((load_image_bytes(image), files["txt"].decode("utf-8", "replace")))
            if len(pairs) >= limit:
                return pairs
    return pairs


def load_image_bytes(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as opened:
        return opened.convert("RGB")
