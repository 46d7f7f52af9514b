from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from train.loss import ClipLoss

WORLD = 2
LOCAL_BATCH = 3
DIM = 5


def test_loss_equals_a_hand_computed_value() -> None:
    images = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    texts = torch.tensor([[0.8, 0.6], [0.0, 1.0]])
    scale = torch.tensor(2.0)
    sims = [
        [sum(a * b for a, b in zip(i, t, strict=True)) for t in texts.tolist()]
        for i in images.tolist()
    ]

    def cross_entropy(rows: list[list[float]]) -> float:
        return sum(
            -2.0 * row[k] + math.log(sum(math.exp(2.0 * v) for v in row))
            for k, row in enumerate(rows)
        ) / len(rows)

    columns = [list(col) for col in zip(*sims, strict=True)]
    expected = (cross_entropy(sims) + cross_entropy(columns)) / 2
    assert math.isclose(ClipLoss()(images, texts, scale).item(), expected, rel_tol=1e-6)


def test_matched_pairs_give_a_lower_loss_than_shuffled_ones() -> None:
    features = F.normalize(torch.randn(8, 16, generator=torch.Generator().manual_seed(0)), dim=-1)
    scale = torch.tensor(10.0)
    loss = ClipLoss()
    assert loss(features, features, scale) < loss(features, features.roll(1, dims=0), scale)


def make_inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Raw image and text inputs for the whole global batch, and a shared projection."""
    gen = torch.Generator().manual_seed(7)
    raw_images = torch.randn(WORLD * LOCAL_BATCH, DIM, generator=gen)
    raw_texts = torch.randn(WORLD * LOCAL_BATCH, DIM, generator=gen)
    return raw_images, raw_texts, torch.randn(DIM, DIM, generator=gen)


def loss_and_grads(
    raw_images: torch.Tensor, raw_texts: torch.Tensor, weight: torch.Tensor, rank: int, world: int
) -> dict[str, torch.Tensor]:
    """Loss of (projected, normalised) features and the gradients of inputs and projection."""
    raw_images, raw_texts = raw_images.clone().requires_grad_(), raw_texts.clone().requires_grad_()
    weight = weight.clone().requires_grad_()
    scale = torch.tensor(1 / 0.07, requires_grad=True)
    loss = ClipLoss(rank, world)(
        F.normalize(raw_images @ weight, dim=-1), F.normalize(raw_texts @ weight, dim=-1), scale
    )
    loss.backward()
    assert raw_images.grad is not None and raw_texts.grad is not None
    assert weight.grad is not None and scale.grad is not None
    return {
        "loss": loss.detach(),
        "image_grad": raw_images.grad,
        "text_grad": raw_texts.grad,
        "weight_grad": weight.grad,
        "scale_grad": scale.grad,
    }


def run_rank(rank: int, store: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD)
    try:
        raw_images, raw_texts, weight = make_inputs()
        rows = slice(rank * LOCAL_BATCH, (rank + 1) * LOCAL_BATCH)
        result = loss_and_grads(raw_images[rows], raw_texts[rows], weight, rank, WORLD)
        torch.save(result, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_ranks_on_gloo_match_one_process_over_the_whole_batch(tmp_path: Path) -> None:
    mp.spawn(run_rank, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    single = loss_and_grads(*make_inputs(), rank=0, world=1)
    # the loss: the mean of the per-rank losses is the loss over the concatenated batch
    assert torch.allclose(torch.stack([r["loss"] for r in ranks]).mean(), single["loss"], atol=1e-6)
    # shared parameters: DDP's average of the per-rank gradients is the full gradient
    for name in ("weight_grad", "scale_grad"):
        average = torch.stack([r[name] for r in ranks]).mean(dim=0)
        assert torch.allclose(average, single[name], atol=1e-5), name
    # inputs: each rank's rows get the gradient of every rank's loss (gathered WITH grad)
    for name in ("image_grad", "text_grad"):
        gathered = torch.cat([r[name] for r in ranks]) / WORLD
        assert torch.allclose(gathered, single[name], atol=1e-6), name
