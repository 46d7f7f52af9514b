"""Symmetric InfoNCE (CLIP's loss), computed for this rank's rows across all ranks.

With one process the logits are `scale * img @ txt.T` over the batch and the loss is the
mean of the image->text and text->image cross-entropies with the diagonal as labels.

With `world_size > 1` every rank all-gathers the features of all ranks WITH their gradient
(`GatherWithGrad`: all-gather forward; backward all-reduces and keeps its own slice) and
computes the loss for its own rows only (open_clip's `local_loss=True,
gather_with_grad=True`): its images against every rank's texts and its texts against every
rank's images, labels offset by `rank * local_batch`.
The mean of the per-rank losses equals the single-process loss over the concatenated batch,
and since the gathered copies carry gradient back to the rank that owns them, averaging
gradients over ranks (what DDP does) gives that loss's gradient. Local batches must be of
equal size on every rank (the loader drops partial batches).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


class GatherWithGrad(torch.autograd.Function):
    """All-gather whose backward hands each rank the summed gradient of its own rows."""

    @staticmethod
    def forward(ctx: Any, features: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(features) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, features.contiguous())
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)  # every rank's loss depends on every gathered row
        return grad.chunk(dist.get_world_size(), dim=0)[dist.get_rank()]


def gather_features(features: torch.Tensor) -> torch.Tensor:
    """All ranks' features concatenated in rank order; gradients flow back to their owner."""
    gathered: torch.Tensor = GatherWithGrad.apply(features)
    return gathered


class ClipLoss(nn.Module):
    """`loss(image_features, text_features, logit_scale)` for the rows of rank `rank`."""

    def __init__(self, rank: int = 0, world_size: int = 1) -> None:
        super().__init__()
        self.rank = rank
        self.world_size = world_size

    def logits(
        self, image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits_per_image, logits_per_text): local rows against all ranks' columns."""
        if self.world_size > 1:
            all_images = gather_features(image_features)
            all_texts = gather_features(text_features)
        else:
            all_images, all_texts = image_features, text_features
        return (
            logit_scale * image_features @ all_texts.T,
            logit_scale * text_features @ all_images.T,
        )

    def forward(
        self, image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor
    ) -> torch.Tensor:
        per_image, per_text = self.logits(image_features, text_features, logit_scale)
        local = image_features.shape[0]
        labels = torch.arange(local, device=image_features.device) + self.rank * local
        return (F.cross_entropy(per_image, labels) + F.cross_entropy(per_text, labels)) / 2
