"""Evaluation of a trained CLIP: zero-shot classification and image-text retrieval.

Zero-shot (CLIP section 3.1.2): each class is embedded as the mean of its normalised
prompt embeddings (`templates` filled with the class name), re-normalised; an image is
assigned the class of highest cosine similarity. An eval folder holds `manifest.json`:
`{"classes": [...], "templates": ["a photo of a {}.", ...],
  "samples": [{"file": "images/00000.jpg", "label": 0}, ...]}`, files relative to it.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image

from pipeline import storage
from pipeline.io import read_json
from train.model import CLIP
from train.tokenizer import HashTokenizer
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
def embed_texts(model: CLIP, tokenizer: HashTokenizer, texts: Sequence[str]) -> torch.Tensor:
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
    with Image.open(io.BytesIO(storage.read_bytes(image))) as opened:
        return opened.convert("RGB")


def class_embeddings(
    model: CLIP, tokenizer: HashTokenizer, classes: list[str], templates: list[str]
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
    tokenizer: HashTokenizer,
    eval_dir: str | Path,
    image_size: int,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """`{"top1", "top5", "chance", "n"}` of zero-shot classification on `eval_dir`."""
    folder = storage.name(eval_dir)
    manifest = read_json(storage.join(folder, "manifest.json"))
    classes, templates = list(manifest["classes"]), list(manifest["templates"])
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
    }


def retrieval_recall(
    model: CLIP,
    tokenizer: HashTokenizer,
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
