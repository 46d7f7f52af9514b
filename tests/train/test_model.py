from __future__ import annotations

import dataclasses
import math

import torch

from tests.train.colour_data import TINY
from train.model import CLIP, LOGIT_SCALE_MAX
from train.tokenizer import HashTokenizer


def make_model() -> CLIP:
    torch.manual_seed(0)
    return CLIP(TINY)


def test_features_have_embed_dim_and_unit_norm() -> None:
    model = make_model()
    images = torch.randn(4, 3, TINY.image_size, TINY.image_size)
    tokens = HashTokenizer(TINY.vocab_size, TINY.context_length)(["a", "b c", "d e f", ""])
    image_features, text_features, scale = model(images, tokens)
    assert image_features.shape == (4, TINY.embed_dim)
    assert text_features.shape == (4, TINY.embed_dim)
    assert torch.allclose(image_features.norm(dim=-1), torch.ones(4), atol=1e-5)
    assert torch.allclose(text_features.norm(dim=-1), torch.ones(4), atol=1e-5)
    assert math.isclose(scale.item(), 1 / 0.07, rel_tol=1e-5)


def test_default_config_builds_and_runs_at_its_image_size() -> None:
    config = dataclasses.replace(TINY, image_size=64, vision_width=64, embed_dim=128)
    model = CLIP(config).eval()
    with torch.no_grad():
        features = model.encode_image(torch.randn(2, 3, 64, 64))
    assert features.shape == (2, 128)


def test_logit_scale_is_clamped_at_100() -> None:
    model = make_model()
    with torch.no_grad():
        model.logit_scale.fill_(LOGIT_SCALE_MAX + 2)
    tokens = HashTokenizer(TINY.vocab_size, TINY.context_length)(["x", "y"])
    _, _, scale = model(torch.randn(2, 3, 32, 32), tokens)
    assert math.isclose(scale.item(), 100.0, rel_tol=1e-5)


def test_text_features_read_at_eot_ignore_padding_length() -> None:
    model = make_model().eval()
    short = HashTokenizer(TINY.vocab_size, 8)(["red square"])
    long = HashTokenizer(TINY.vocab_size, TINY.context_length)(["red square"])
    with torch.no_grad():
        assert torch.allclose(model.encode_text(short), model.encode_text(long), atol=1e-5)


def test_text_is_causal_later_words_do_not_change_earlier_prefixes() -> None:
    model = make_model().eval()
    tok = HashTokenizer(TINY.vocab_size, TINY.context_length)
    hidden = {}
    for text in ("red square", "red square with a blue border"):
        tokens = tok([text])
        x = model.text.token_embedding(tokens) + model.text.positional_embedding
        for block in model.text.blocks:
            x = block(x, model.text.causal_mask)
        hidden[text] = x[0, :3]
    assert torch.allclose(hidden["red square"], hidden["red square with a blue border"], atol=1e-5)


def test_every_parameter_gets_a_gradient() -> None:
    model = make_model()
    with torch.no_grad():  # residual branches start at zero; open them so gradient reaches in
        for name, param in model.named_parameters():
            if name.endswith("bn2.weight"):
                param.fill_(1.0)
    tokens = HashTokenizer(TINY.vocab_size, TINY.context_length)(["a b", "c d"])
    image_features, text_features, scale = model(torch.randn(2, 3, 32, 32), tokens)
    (scale * image_features @ text_features.T).logsumexp(dim=1).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert missing == []
