"""Gradient accumulation that is exact for the contrastive loss (gradient caching).

Summing the losses of micro-batches is not the loss of the batch: InfoNCE compares every
image with every caption of the batch, so the negatives would shrink to one micro-batch's.
Gradient caching (Gao et al., 2021) keeps the full batch's loss at a micro-batch's memory:

1. embed every micro-batch without a graph and concatenate the features;
2. compute the full batch's loss on those features (detached, requiring grad) and its
   gradient with respect to each feature and to the logit scale;
3. embed each micro-batch again with a graph and backpropagate its slice of that gradient
   (`sum(features * grad)`), accumulating parameter gradients; the logit scale's gradient
   rides on the last micro-batch.

By the chain rule the accumulated gradient is the full-batch loss's, up to floating-point
order. The towers have no dropout or batch statistics, so the second pass computes the
same features as the first. Under DDP only the last micro-batch's backward synchronises.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from train.loss import ClipLoss


def autocast(device: torch.device, precision: str) -> torch.autocast:
    """bf16 autocast on `device` when `precision == "bf16"`, else a no-op."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def sync_unless_last(net: nn.Module, last: bool) -> contextlib.AbstractContextManager[None]:
    """DDP's `no_sync` for all but the last micro-batch (gradients reduced once per step)."""
    if isinstance(net, DistributedDataParallel) and not last:
        return net.no_sync()
    return contextlib.nullcontext()


def micro_batches(
    images: torch.Tensor, tokens: torch.Tensor, chunks: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    if images.shape[0] % chunks:
        raise ValueError(f"a batch of {images.shape[0]} does not split into {chunks} micro-batches")
    yield from zip(images.chunk(chunks), tokens.chunk(chunks), strict=True)


def accumulated_backward(
    net: nn.Module,
    loss_fn: ClipLoss,
    images: torch.Tensor,
    tokens: torch.Tensor,
    chunks: int,
    precision: str = "fp32",
) -> torch.Tensor:
    """Backpropagate the full batch's loss in `chunks` micro-batches; returns that loss."""
    device = images.device
    parts = list(micro_batches(images, tokens, chunks))
    # 1. features of every micro-batch, no graph
    with torch.no_grad(), autocast(device, precision):
        outputs = [net(part_images, part_tokens) for part_images, part_tokens in parts]
    image_features = torch.cat([o[0] for o in outputs]).float().requires_grad_()
    text_features = torch.cat([o[1] for o in outputs]).float().requires_grad_()
    scale = outputs[0][2].detach().float().requires_grad_()
    # 2. the full batch's loss and its gradient with respect to the features
    loss = loss_fn(image_features, text_features, scale)
    loss.backward()
    assert image_features.grad is not None and text_features.grad is not None
    assert scale.grad is not None
    image_grads, text_grads = image_features.grad.chunk(chunks), text_features.grad.chunk(chunks)
    # 3. each micro-batch again, with a graph, carrying its slice of that gradient
    for index, (part_images, part_tokens) in enumerate(parts):
        last = index == chunks - 1
        with sync_unless_last(net, last):
            with autocast(device, precision):
                part_image_features, part_text_features, part_scale = net(part_images, part_tokens)
            surrogate = (part_image_features.float() * image_grads[index]).sum()
            surrogate = surrogate + (part_text_features.float() * text_grads[index]).sum()
            if last:
                surrogate = surrogate + part_scale.float() * scale.grad
            surrogate.backward()
    return loss.detach()
