from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from tests.train.colour_data import TINY, colour_tokenizer, write_colour_shards
from train.evaluate import class_embeddings, read_shard_pairs, topk_accuracy, zero_shot_accuracy
from train.model import CLIP, model_spec


def tiny_model() -> CLIP:
    torch.manual_seed(0)
    return CLIP(model_spec(TINY, colour_tokenizer().vocab_size))


def test_topk_accuracy_counts_labels_among_the_k_best() -> None:
    logits = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.3, 0.5], [0.1, 0.8, 0.1]])
    labels = torch.tensor([0, 1, 2])
    assert topk_accuracy(logits, labels, 1) == pytest.approx(1 / 3)
    assert topk_accuracy(logits, labels, 2) == pytest.approx(2 / 3)
    assert topk_accuracy(logits, labels, 10) == 1.0  # k beyond the classes: every label


def test_class_embeddings_are_normalised_means_of_prompts() -> None:
    model, tokenizer = tiny_model().eval(), colour_tokenizer()
    weights = class_embeddings(model, tokenizer, ["red", "blue"], ["a {}", "{} thing"])
    with torch.no_grad():
        red = model.encode_text(tokenizer(["a red", "red thing"])).mean(dim=0)
    assert weights.shape == (2, TINY.embed_dim)
    assert torch.allclose(weights[0], red / red.norm(), atol=1e-5)


def test_zero_shot_reports_accuracy_chance_and_count(colour_eval: Path) -> None:
    model = tiny_model()
    result = zero_shot_accuracy(model, colour_tokenizer(), colour_eval, 32, "cpu")
    assert result["n"] == 20 and math.isclose(result["chance"], 0.25)
    assert result["templates"] == 2  # the manifest's
    assert 0.0 <= result["top1"] <= result["top5"] == 1.0  # 4 classes: top-5 holds them all
    assert model.training  # the mode the model came in


def test_zero_shot_uses_the_callers_templates(colour_eval: Path) -> None:
    model, tokenizer = tiny_model(), colour_tokenizer()
    own = zero_shot_accuracy(model, tokenizer, colour_eval, 32, "cpu", ["{}"])
    assert own["templates"] == 1
    with pytest.raises(IndexError):  # a template with two slots cannot take one class name
        zero_shot_accuracy(model, tokenizer, colour_eval, 32, "cpu", ["{} and {}"])


def test_shard_pairs_keep_each_image_with_its_caption(tmp_path: Path) -> None:
    shards = write_colour_shards(tmp_path, shards=2, per_shard=3)
    pairs = read_shard_pairs(shards, limit=5)
    assert len(pairs) == 5
    for image, caption in pairs:  # the captions name the colour that dominates the image
        red, green, blue = image.resize((1, 1)).getpixel((0, 0))
        brightest = {"red": red, "green": green, "blue": blue}
        if "yellow" not in caption:
            assert max(brightest, key=brightest.__getitem__) in caption
