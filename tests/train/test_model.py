from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from core.config import ConfigError, load_config
from tests.train.colour_data import TINY
from train.model import CLIP, LOGIT_SCALE_MAX, ModelSpec, model_spec, spec_from_open_clip
from train.tokenizer import BpeTokenizer, train_bpe

VOCAB = 300

# open_clip.CLIP(embed_dim=32, vision_cfg={image_size 32, layers 1, width 32, patch_size 8,
# head_width 16}, text_cfg={context_length 12, vocab_size 300, width 32, heads 2, layers 1})
# .state_dict(): every name and shape.
BLOCK = {
    "ln_1.weight": (32,), "ln_1.bias": (32,),
    "attn.in_proj_weight": (96, 32), "attn.in_proj_bias": (96,),
    "attn.out_proj.weight": (32, 32), "attn.out_proj.bias": (32,),
    "ln_2.weight": (32,), "ln_2.bias": (32,),
    "mlp.c_fc.weight": (128, 32), "mlp.c_fc.bias": (128,),
    "mlp.c_proj.weight": (32, 128), "mlp.c_proj.bias": (32,),
}  # fmt: skip
OPEN_CLIP_TINY = {
    "positional_embedding": (12, 32), "text_projection": (32, 32), "logit_scale": (),
    "visual.class_embedding": (32,), "visual.positional_embedding": (17, 32),
    "visual.proj": (32, 32), "visual.conv1.weight": (32, 3, 8, 8),
    "visual.ln_pre.weight": (32,), "visual.ln_pre.bias": (32,),
    "visual.ln_post.weight": (32,), "visual.ln_post.bias": (32,),
    "token_embedding.weight": (300, 32), "ln_final.weight": (32,), "ln_final.bias": (32,),
    **{f"visual.transformer.resblocks.0.{k}": v for k, v in BLOCK.items()},
    **{f"transformer.resblocks.0.{k}": v for k, v in BLOCK.items()},
}  # fmt: skip


@pytest.fixture(scope="module")
def tokenizer() -> BpeTokenizer:
    return train_bpe(["a red square", "a blue circle with a border", "b c d e f"], VOCAB, 12)


def make_model(vocab_size: int = VOCAB) -> CLIP:
    torch.manual_seed(0)
    return CLIP(model_spec(TINY, vocab_size))


def test_parameter_names_and_shapes_are_open_clips() -> None:
    state = make_model().state_dict()
    assert {name: tuple(value.shape) for name, value in state.items()} == OPEN_CLIP_TINY


def test_named_vit_b_32_has_open_clips_parameter_count() -> None:
    config = dataclasses.replace(TINY, model="ViT-B-32", image_size=224, context_length=77)
    with torch.device("meta"):
        model = CLIP(model_spec(config, 49408))
    assert sum(p.numel() for p in model.parameters()) == 151_277_313  # open_clip's ViT-B-32
    assert model.spec.open_clip_cfg()["vision_cfg"] == {
        "image_size": 224, "layers": 12, "width": 768, "patch_size": 32, "head_width": 64,
    }  # fmt: skip
    assert spec_from_open_clip(model.spec.open_clip_cfg()) == model.spec


def test_unbuildable_architectures_are_refused() -> None:
    with pytest.raises(ValueError, match="multiple of 8"):
        model_spec(dataclasses.replace(TINY, image_size=36), VOCAB)
    with pytest.raises(ValueError, match="unknown model"):
        model_spec(dataclasses.replace(TINY, model="ViT-Q-7"), VOCAB)


def test_features_have_embed_dim_and_unit_norm(tokenizer: BpeTokenizer) -> None:
    model = make_model(tokenizer.vocab_size)
    images = torch.randn(4, 3, TINY.image_size, TINY.image_size)
    image_features, text_features, scale = model(images, tokenizer(["a", "b c", "d e f", ""]))
    assert image_features.shape == text_features.shape == (4, TINY.embed_dim)
    assert torch.allclose(image_features.norm(dim=-1), torch.ones(4), atol=1e-5)
    assert torch.allclose(text_features.norm(dim=-1), torch.ones(4), atol=1e-5)
    assert math.isclose(scale.item(), 1 / 0.07, rel_tol=1e-5)


def test_logit_scale_is_clamped_at_100(tokenizer: BpeTokenizer) -> None:
    model = make_model(tokenizer.vocab_size)
    with torch.no_grad():
        model.logit_scale.fill_(LOGIT_SCALE_MAX + 2)
    _, _, scale = model(torch.randn(2, 3, 32, 32), tokenizer(["x", "y"]))
    assert math.isclose(scale.item(), 100.0, rel_tol=1e-5)


def test_text_features_are_read_at_eot_whatever_the_padding(tokenizer: BpeTokenizer) -> None:
    model = make_model(tokenizer.vocab_size).eval()
    tokens = tokenizer(["red square"])
    eot = tokens[0].tolist().index(tokenizer.eot_id)
    with torch.no_grad():
        short = model.encode_text(tokens[:, : eot + 1])
        full = model.encode_text(tokens)
        repadded = tokens.clone()
        repadded[0, eot + 1 :] = 5  # other ids after eot: causal, so nothing reads them
        assert torch.allclose(short, full, atol=1e-5)
        assert torch.allclose(model.encode_text(repadded), full, atol=1e-5)


def test_text_is_causal_later_words_do_not_change_earlier_prefixes(
    tokenizer: BpeTokenizer,
) -> None:
    model = make_model(tokenizer.vocab_size).eval()
    hidden = {}
    for text in ("red square", "red square with a blue border"):
        x = model.token_embedding(tokenizer([text])) + model.positional_embedding
        hidden[text] = model.transformer(x, attn_mask=model.attn_mask)[0, :3]
    assert torch.allclose(hidden["red square"], hidden["red square with a blue border"], atol=1e-5)


def test_every_parameter_gets_a_gradient(tokenizer: BpeTokenizer) -> None:
    model = make_model(tokenizer.vocab_size)
    image_features, text_features, scale = model(torch.randn(2, 3, 32, 32), tokenizer(["a", "d"]))
    (scale * image_features @ text_features.T).logsumexp(dim=1).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert missing == []


def test_spec_round_trips_through_open_clip_cfg() -> None:
    spec = ModelSpec(32, 32, 8, 32, 1, 16, 12, VOCAB, 32, 2, 1)
    assert spec_from_open_clip(spec.open_clip_cfg()) == spec


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("train.patch_size=7", "train.patch_size"),
        ("train.vision_head_width=48", "train.vision_head_width"),
        ("train.vocab_size=100", "train.vocab_size"),
        ("train.accum_steps=5", "train.accum_steps"),
        ("train.precision=fp8", "train.precision"),
    ],
)
def test_the_config_refuses_what_cannot_be_built(override: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        load_config(None, [override])
