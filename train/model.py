"""The project's small CLIP: a conv image tower and a transformer text tower.

Both towers end in a linear projection to `embed_dim` and their features are L2-normalised,
so a logit is a cosine similarity times `logit_scale.exp()`. The temperature is learned:
`logit_scale` starts at log(1/0.07) (CLIP) and is clamped to log(100) when used.

Image tower: a stride-2 stem, then stages that halve the resolution and double the width
(conv-BN-ReLU down-sampling followed by a residual block), global average pooling and a
projection. Text tower: token and position embeddings, `text_layers` pre-LN blocks with a
causal mask, a final LayerNorm, the features at the eot position, a projection.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.config import TrainConfig
from train.tokenizer import PAD_ID

LOGIT_SCALE_INIT = math.log(1 / 0.07)
LOGIT_SCALE_MAX = math.log(100)
IMAGE_STAGES = 3  # stages after the stem; widths vision_width * (1, 2, 4)


def conv_bn_relu(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class ResidualBlock(nn.Module):
    """Two 3x3 conv-BN layers added to their input, then ReLU (ResNet's basic block)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1 = conv_bn_relu(width, width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        nn.init.zeros_(self.bn2.weight)  # each block starts as the identity

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.bn2(self.conv2(self.conv1(x))))


class ImageEncoder(nn.Module):
    """[N, 3, H, W] images -> [N, embed_dim] features (not normalised)."""

    def __init__(self, width: int, embed_dim: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [conv_bn_relu(3, width // 2, stride=2)]
        c_in = width // 2
        for stage in range(IMAGE_STAGES):
            c_out = width * 2**stage
            layers += [conv_bn_relu(c_in, c_out, stride=2), ResidualBlock(c_out)]
            c_in = c_out
        self.body = nn.Sequential(*layers)
        self.proj = nn.Linear(c_in, embed_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        pooled = self.body(images).mean(dim=(2, 3))
        return self.proj(pooled)


class TextBlock(nn.Module):
    """Pre-LN transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width)
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, attn_mask=mask, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class TextEncoder(nn.Module):
    """[N, L] token ids -> [N, embed_dim] features (not normalised), read at eot."""

    causal_mask: torch.Tensor

    def __init__(self, config: TrainConfig) -> None:
        super().__init__()
        width = config.text_width
        self.token_embedding = nn.Embedding(config.vocab_size, width)
        self.positional_embedding = nn.Parameter(torch.empty(config.context_length, width))
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        self.blocks = nn.ModuleList(
            TextBlock(width, config.text_heads) for _ in range(config.text_layers)
        )
        self.ln_final = nn.LayerNorm(width)
        self.proj = nn.Linear(width, config.embed_dim, bias=False)
        causal = torch.triu(torch.ones(config.context_length, config.context_length), 1).bool()
        self.register_buffer("causal_mask", causal, persistent=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        length = tokens.shape[1]
        x = self.token_embedding(tokens) + self.positional_embedding[:length]
        mask = self.causal_mask[:length, :length]
        for block in self.blocks:
            x = block(x, mask)
        x = self.ln_final(x)
        eot = (tokens != PAD_ID).sum(dim=1) - 1  # the eot is the last non-pad token
        return self.proj(x[torch.arange(x.shape[0], device=x.device), eot])


class CLIP(nn.Module):
    """Image and text towers trained to agree; `forward` returns both normalised features."""

    def __init__(self, config: TrainConfig) -> None:
        super().__init__()
        self.image_size = config.image_size
        self.context_length = config.context_length
        self.visual = ImageEncoder(config.vision_width, config.embed_dim)
        self.text = TextEncoder(config)
        self.logit_scale = nn.Parameter(torch.tensor(LOGIT_SCALE_INIT))

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.visual(images), dim=-1)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.text(tokens), dim=-1)

    def forward(
        self, images: torch.Tensor, tokens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        scale = self.logit_scale.clamp(max=LOGIT_SCALE_MAX).exp()
        return self.encode_image(images), self.encode_text(tokens), scale
