"""The project's CLIP, built as open_clip's `CLIP` is: same modules, same parameter names.

A vision transformer (`visual`: `conv1` patch embedding without bias, `class_embedding`,
`positional_embedding`, `ln_pre`, `transformer.resblocks`, `ln_post`, `proj`) and a causal
text transformer at the top level (`token_embedding`, `positional_embedding`,
`transformer.resblocks`, `ln_final`, `text_projection`), plus a scalar `logit_scale`.
Each residual block is pre-LN: `ln_1`, `attn` (`nn.MultiheadAttention`), `ln_2`,
`mlp.c_fc`, `mlp.c_proj`, with exact GELU (open_clip's `quick_gelu=False`). Image features
are the class token after `ln_post` times `proj`; text features are read at the eot, the
largest id of each row (`pool_type="argmax"`), times `text_projection`.

So `model.state_dict()` is what `open_clip.CLIP(**spec.open_clip_cfg())` loads with
`strict=True`, and both give the same features for the same inputs. The temperature is
learned: `logit_scale` starts at log(1/0.07) and is clamped to log(100) when used.

Named architectures (`train.model`) are open_clip's, from `tiny` (tests) and `demo` (the
sandbox on two CPU cores) to `ViT-B-32`; `train.image_size` and `train.context_length`
always apply, and the vocabulary size is the trained tokenizer's.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from core.config import TrainConfig

LOGIT_SCALE_INIT = math.log(1 / 0.07)
LOGIT_SCALE_MAX = math.log(100)


@dataclass(frozen=True)
class ModelSpec:
    """One CLIP architecture, in open_clip's terms."""

    embed_dim: int
    image_size: int
    patch_size: int
    vision_width: int
    vision_layers: int
    vision_head_width: int
    context_length: int
    vocab_size: int
    text_width: int
    text_heads: int
    text_layers: int

    def open_clip_cfg(self) -> dict[str, Any]:
        """open_clip's `model_cfg`: `open_clip.CLIP(**cfg)` builds this architecture."""
        return {
            "embed_dim": self.embed_dim,
            "vision_cfg": {
                "image_size": self.image_size,
                "layers": self.vision_layers,
                "width": self.vision_width,
                "patch_size": self.patch_size,
                "head_width": self.vision_head_width,
            },
            "text_cfg": {
                "context_length": self.context_length,
                "vocab_size": self.vocab_size,
                "width": self.text_width,
                "heads": self.text_heads,
                "layers": self.text_layers,
            },
        }


# Architectures by name: (embed_dim, patch, vision width, layers, head width, text width,
# heads, layers). ViT-S-32-alt and ViT-B-32 are open_clip's configs of those names.
NAMED_MODELS: dict[str, tuple[int, int, int, int, int, int, int, int]] = {
    "tiny": (32, 8, 32, 1, 16, 32, 2, 1),
    "demo": (128, 8, 128, 3, 32, 128, 4, 2),
    "ViT-S-32-alt": (256, 32, 384, 12, 64, 256, 4, 10),
    "ViT-B-32": (512, 32, 768, 12, 64, 512, 8, 12),
}


def model_spec(config: TrainConfig, vocab_size: int) -> ModelSpec:
    """The architecture `config` names (`model`), else the one its fields describe."""
    if config.model:
        if config.model not in NAMED_MODELS:
            raise ValueError(f"unknown model {config.model!r}: one of {', '.join(NAMED_MODELS)}")
        embed, patch, v_width, v_layers, head, t_width, t_heads, t_layers = NAMED_MODELS[
            config.model
        ]
    else:
        embed, patch, v_width, v_layers = (
            config.embed_dim, config.patch_size, config.vision_width, config.vision_layers,
        )  # fmt: skip
        head, t_width, t_heads, t_layers = (
            config.vision_head_width, config.text_width, config.text_heads, config.text_layers,
        )  # fmt: skip
    spec = ModelSpec(
        embed, config.image_size, patch, v_width, v_layers, head,
        config.context_length, vocab_size, t_width, t_heads, t_layers,
    )  # fmt: skip
    check_spec(spec)
    return spec


def check_spec(spec: ModelSpec) -> None:
    """Raise ValueError for an architecture that cannot be built."""
    if spec.image_size % spec.patch_size:
        raise ValueError(f"image_size {spec.image_size} is not a multiple of {spec.patch_size}")
    if spec.vision_width % spec.vision_head_width:
        raise ValueError(f"vision width {spec.vision_width} is not a multiple of its head width")
    if spec.text_width % spec.text_heads:
        raise ValueError(f"text width {spec.text_width} is not a multiple of {spec.text_heads}")


def spec_from_open_clip(cfg: dict[str, Any]) -> ModelSpec:
    """The inverse of `ModelSpec.open_clip_cfg`."""
    vision, text = cfg["vision_cfg"], cfg["text_cfg"]
    return ModelSpec(
        cfg["embed_dim"], vision["image_size"], vision["patch_size"], vision["width"],
        vision["layers"], vision.get("head_width", 64), text["context_length"],
        text["vocab_size"], text["width"], text["heads"], text["layers"],
    )  # fmt: skip


class ResidualAttentionBlock(nn.Module):
    """Pre-LN block: x + attn(ln_1(x)), then x + mlp(ln_2(x)) (open_clip's names)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            OrderedDict(
                [
                    ("c_fc", nn.Linear(width, 4 * width)),
                    ("gelu", nn.GELU()),
                    ("c_proj", nn.Linear(4 * width, width)),
                ]
            )
        )

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        h = self.ln_1(x)
        mask = attn_mask.to(x.dtype) if attn_mask is not None else None
        x = x + self.attn(h, h, h, need_weights=False, attn_mask=mask)[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    """A stack of residual attention blocks over `[N, L, width]`."""

    def __init__(self, width: int, layers: int, heads: int) -> None:
        super().__init__()
        self.width = width
        self.layers = layers
        self.resblocks = nn.ModuleList(ResidualAttentionBlock(width, heads) for _ in range(layers))

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        for block in self.resblocks:
            x = block(x, attn_mask=attn_mask)
        return x


class VisionTransformer(nn.Module):
    """[N, 3, S, S] images -> [N, embed_dim] features (not normalised), from the class token."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        width = spec.vision_width
        grid = spec.image_size // spec.patch_size
        scale = width**-0.5
        self.image_size = spec.image_size
        self.conv1 = nn.Conv2d(3, width, spec.patch_size, stride=spec.patch_size, bias=False)
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(grid * grid + 1, width))
        self.ln_pre = nn.LayerNorm(width)
        heads = width // spec.vision_head_width
        self.transformer = Transformer(width, spec.vision_layers, heads)
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, spec.embed_dim))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.conv1(images).flatten(2).transpose(1, 2)  # [N, grid * grid, width]
        cls = self.class_embedding.to(x.dtype).view(1, 1, -1).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        x = self.transformer(self.ln_pre(x))
        return self.ln_post(x[:, 0]) @ self.proj


def causal_mask(length: int) -> torch.Tensor:
    """Additive mask: -inf above the diagonal, so a token sees only those before it."""
    return torch.full((length, length), float("-inf")).triu_(1)


class CLIP(nn.Module):
    """Image and text towers trained to agree; `forward` returns both normalised features."""

    attn_mask: torch.Tensor

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec
        self.image_size = spec.image_size
        self.context_length = spec.context_length
        self.visual = VisionTransformer(spec)
        self.transformer = Transformer(spec.text_width, spec.text_layers, spec.text_heads)
        self.token_embedding = nn.Embedding(spec.vocab_size, spec.text_width)
        self.positional_embedding = nn.Parameter(torch.empty(spec.context_length, spec.text_width))
        self.ln_final = nn.LayerNorm(spec.text_width)
        self.text_projection = nn.Parameter(torch.empty(spec.text_width, spec.embed_dim))
        self.register_buffer("attn_mask", causal_mask(spec.context_length), persistent=False)
        self.logit_scale = nn.Parameter(torch.tensor(LOGIT_SCALE_INIT))
        self.init_text_parameters()

    def init_text_parameters(self) -> None:
        """open_clip's text initialisation (scaled by width and depth)."""
        width, layers = self.transformer.width, self.transformer.layers
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        proj_std = width**-0.5 * (2 * layers) ** -0.5
        for block in self.transformer.resblocks:
            assert isinstance(block, ResidualAttentionBlock)
            nn.init.normal_(block.attn.in_proj_weight, std=width**-0.5)
            nn.init.normal_(block.attn.out_proj.weight, std=proj_std)
            c_fc, c_proj = cast(nn.Linear, block.mlp.c_fc), cast(nn.Linear, block.mlp.c_proj)
            nn.init.normal_(c_fc.weight, std=(2 * width) ** -0.5)
            nn.init.normal_(c_proj.weight, std=proj_std)
        nn.init.normal_(self.text_projection, std=width**-0.5)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.visual(images), dim=-1)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """Normalised features at each row's eot: its largest id (CLIP's argmax pooling)."""
        length = tokens.shape[1]
        x = self.token_embedding(tokens) + self.positional_embedding[:length]
        x = self.ln_final(self.transformer(x, attn_mask=self.attn_mask[:length, :length]))
        pooled = x[torch.arange(x.shape[0], device=x.device), tokens.argmax(dim=-1)]
        return F.normalize(pooled @ self.text_projection, dim=-1)

    def forward(
        self, images: torch.Tensor, tokens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        scale = self.logit_scale.clamp(max=LOGIT_SCALE_MAX).exp()
        return self.encode_image(images), self.encode_text(tokens), scale
