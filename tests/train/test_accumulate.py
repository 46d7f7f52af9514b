from __future__ import annotations

import pytest
import torch

from tests.train.colour_data import TINY, colour_tokenizer
from train.accumulate import accumulated_backward
from train.loss import ClipLoss
from train.model import CLIP, model_spec
from train.trainer import make_optimizer, train_step

CAPTIONS = ["a red square", "plain green background", "the colour blue", "yellow paint sample"]


def batch(size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(size, 3, TINY.image_size, TINY.image_size, generator=generator)
    return images, colour_tokenizer()([CAPTIONS[i % 4] + f" {i}" for i in range(size)])


def model() -> CLIP:
    torch.manual_seed(0)
    return CLIP(model_spec(TINY, colour_tokenizer().vocab_size))


def gradients(net: CLIP) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}


def full_batch_gradients(images: torch.Tensor, tokens: torch.Tensor) -> tuple[float, dict]:
    net = model()
    loss = ClipLoss()(*net(images, tokens))
    loss.backward()
    return loss.item(), gradients(net)


@pytest.mark.parametrize("chunks", [2, 4])
def test_accumulated_gradient_equals_the_full_batch_gradient(chunks: int) -> None:
    images, tokens = batch()
    expected_loss, expected = full_batch_gradients(images, tokens)
    net = model()
    loss = accumulated_backward(net, ClipLoss(), images, tokens, chunks)
    got = gradients(net)
    assert loss.item() == pytest.approx(expected_loss, abs=1e-6)
    assert got.keys() == expected.keys() and "logit_scale" in got
    for name, grad in expected.items():
        assert torch.allclose(got[name], grad, atol=1e-6, rtol=1e-4), name


def test_summing_micro_batch_losses_would_not_be_the_same() -> None:
    images, tokens = batch()
    _, expected = full_batch_gradients(images, tokens)
    net = model()
    for part_images, part_tokens in zip(images.chunk(2), tokens.chunk(2), strict=True):
        (ClipLoss()(*net(part_images, part_tokens)) / 2).backward()
    naive = gradients(net)
    assert not torch.allclose(naive["visual.proj"], expected["visual.proj"], atol=1e-4)


def test_a_step_with_accumulation_or_bf16_moves_the_weights_alike() -> None:
    images, tokens = batch()
    after = {}
    for name, kwargs in {
        "full": {},
        "accumulated": {"accum_steps": 4},
        "bf16": {"precision": "bf16"},
    }.items():
        net = model()
        optimizer = make_optimizer(net, TINY)
        loss = train_step(
            net, ClipLoss(), optimizer, (images, tokens), torch.device("cpu"), **kwargs
        )
        after[name] = (loss, net.visual.proj.detach().clone())
    assert after["accumulated"][0] == pytest.approx(after["full"][0], abs=1e-5)
    assert torch.allclose(after["accumulated"][1], after["full"][1], atol=1e-5)
    assert after["bf16"][0] == pytest.approx(after["full"][0], abs=0.05)  # bf16: ~3 digits


def test_a_batch_that_does_not_split_is_refused() -> None:
    images, tokens = batch(6)
    with pytest.raises(ValueError, match="does not split"):
        accumulated_backward(model(), ClipLoss(), images, tokens, 4)
