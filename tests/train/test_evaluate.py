from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from tests.train.colour_data import TINY
from train.evaluate import class_embeddings, topk_accuracy, zero_shot_accuracy
from train.model import CLIP
from train.tokenizer import HashTokenizer


def tiny_model() -> CLIP:
    torch.manual_seed(0)
    return CLIP(TINY)


def test_topk_accuracy_counts_labels_among_the_k_best() -> None:
    logits = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.3, 0.5], [0.1, 0.8, 0.1]])
    labels = torch.tensor([0, 1, 2])
    assert topk_accuracy(logits, labels, 1) == pytest.approx(1 / 3)
    assert topk_accuracy(logits, labels, 2) == pytest.approx(2 / 3)
    assert topk_accuracy(logits, labels, 10) == 1.0  # k beyond the classes: every label


def test_class_embeddings_are_normalised_means_of_prompts() -> None:
    model, tokenizer = tiny_model().eval(), HashTokenizer(TINY.vocab_size, TINY.context_length)
    weights = class_embeddings(model, tokenizer, ["red", "blue"], ["a {}", "{} thing"])
    with torch.no_grad():
        red = model.encode_text(tokenizer(["a red", "red thing"])).mean(dim=0)
    assert weights.shape == (2, TINY.embed_dim)
    assert torch.allclose(weights[0], red / red.norm(), atol=1e-5)


def test_zero_shot_reports_accuracy_chance_and_count(colour_eval: Path) -> None:
    model = tiny_model()
    result = zero_shot_accuracy(model, HashTokenizer(512, 12), colour_eval, 32, "cpu")
    assert result["n"] == 20 and math.isclose(result["chance"], 0.25)
    assert 0.0 <= result["top1"] <= result["top5"] == 1.0  # 4 classes: top-5 holds them all
    assert model.training  # the mode the model came in
