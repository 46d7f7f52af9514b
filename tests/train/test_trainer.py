from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import socket
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.multiprocessing as mp
from PIL import Image

from core.config import TrainConfig
from core.errors import PipelineError
from tests.train.colour_data import COLOURS, TINY, colour_tokenizer
from train import trainer
from train.__main__ import main
from train.evaluate import retrieval_recall
from train.export import load_trained
from train.loss import ClipLoss
from train.model import CLIP, LOGIT_SCALE_MAX, model_spec
from train.tokenizer import BpeTokenizer
from train.trainer import learning_rate, make_optimizer, train, train_step


def read_log(out_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out_dir / "log.jsonl").read_text().splitlines()]


def trained_model(out_dir: Path) -> CLIP:
    return load_trained(out_dir)[0]


@pytest.fixture(scope="module")
def colour_run(
    colour_shards: list[str], colour_eval: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Any, Path]:
    """~100 steps (12 epochs of 8 batches of 16) on the colour shards, evaluated at the end:
    zero-shot with two templates of its own, retrieval on the (training) shards."""
    out_dir = tmp_path_factory.mktemp("run")
    folder = str(Path(colour_shards[0]).parent)
    templates = ("a photo of a {}.", "{} paint")
    config = dataclasses.replace(TINY, epochs=12, templates=templates, retrieval_shards=folder)
    return train(config, colour_shards, out_dir, colour_eval, log_every=8), out_dir


def test_learning_rate_warms_up_then_decays_to_zero() -> None:
    config = dataclasses.replace(TINY, lr=1.0, warmup_steps=10)
    rates = [learning_rate(step, config, total_steps=110) for step in range(110)]
    assert rates[0] == pytest.approx(0.1) and rates[9] == pytest.approx(1.0)
    assert rates[60] == pytest.approx(0.5) and rates[-1] < 0.001
    assert all(a >= b for a, b in itertools.pairwise(rates[9:]))


def test_a_step_pulls_a_drifted_logit_scale_back_under_the_cap() -> None:
    torch.manual_seed(0)
    tokenizer = colour_tokenizer()
    model = CLIP(model_spec(TINY, tokenizer.vocab_size))
    optimizer = make_optimizer(model, TINY)
    with torch.no_grad():
        model.logit_scale.fill_(LOGIT_SCALE_MAX + 1)  # past the cap: the forward clamp's grad is 0
    tokens = tokenizer(["red", "green", "blue"])
    batch = (torch.randn(3, 3, TINY.image_size, TINY.image_size), tokens)
    train_step(model, ClipLoss(0, 1), optimizer, batch, torch.device("cpu"))
    assert model.logit_scale.item() == pytest.approx(LOGIT_SCALE_MAX)
    with torch.no_grad():
        model.logit_scale.fill_(-0.5)
    train_step(model, ClipLoss(0, 1), optimizer, batch, torch.device("cpu"))
    assert model.logit_scale.item() == 0.0


@pytest.mark.slow
def test_training_drives_loss_down_and_beats_chance(colour_run: tuple[Any, Path]) -> None:
    result, out_dir = colour_run
    assert result.steps == result.total_steps == 96 and not result.stopped_early
    assert result.samples_seen == 96 * 16
    losses = [line["loss"] for line in read_log(out_dir)]
    assert len(losses) == 12
    assert losses[0] < math.log(16) + 0.1  # starts near chance: log(batch)
    assert losses[-1] < losses[0] - 0.4  # four colours in 16: the floor is log(4) = 1.39
    assert result.zero_shot["top1"] > 0.75 > result.zero_shot["chance"]
    assert result.zero_shot["templates"] == 2 and result.retrieval is not None
    assert result.retrieval["n"] == 128  # every pair of the four shards
    # 32 pairs of each colour: the right caption is among the top 5 far above chance (5/128)
    assert result.retrieval["image_to_text_r5"] > 0.1 and result.retrieval["text_to_image_r5"] > 0.1
    saved = json.loads((out_dir / "results.json").read_text())
    assert saved["steps"] == 96 and saved["zero_shot"] == result.zero_shot
    assert result.samples_per_second > 0


@pytest.mark.slow
def test_trained_model_retrieves_held_out_pairs(colour_run: tuple[Any, Path]) -> None:
    _, out_dir = colour_run
    model, tokenizer = load_trained(out_dir)
    pairs = [(Image.new("RGB", (48, 48), rgb), f"a {name} square") for name, rgb in COLOURS.items()]
    recall = retrieval_recall(model, tokenizer, pairs)
    assert recall["image_to_text_r1"] >= 0.75 and recall["text_to_image_r1"] >= 0.75


@pytest.mark.slow
def test_the_tokenizer_is_learned_from_the_captions_and_saved_with_the_run(
    colour_run: tuple[Any, Path],
) -> None:
    _, out_dir = colour_run
    saved = BpeTokenizer.from_json((out_dir / "tokenizer.json").read_text())
    state = torch.load(out_dir / "checkpoint.pt", weights_only=True)
    assert state["tokenizer"] == saved.to_json()
    assert len(saved.encode("yellow")) == 3  # a caption word: one token between sot and eot
    assert state["model_cfg"]["text_cfg"]["vocab_size"] == saved.vocab_size
    assert [line["data_wait"] >= 0 for line in read_log(out_dir)] == [True] * 12


def test_stopped_run_resumes_exactly_where_it_stopped(
    colour_shards: list[str], tmp_path: Path
) -> None:
    config = dataclasses.replace(TINY, epochs=2, workers=2)  # 16 steps, 8 per epoch
    train(config, colour_shards, tmp_path / "straight", log_every=1)
    # stop after the first step, then after one more (mid-epoch, odd batch), then finish
    stopping = dataclasses.replace(config, max_seconds=1e-9)
    first = train(stopping, colour_shards, tmp_path / "resumed", log_every=1)
    second = train(stopping, colour_shards, tmp_path / "resumed", log_every=1)
    with open(tmp_path / "resumed" / "log.jsonl", "a") as log:  # killed after logging step 3
        log.write(json.dumps({"step": 3, "loss": 0.0}) + "\n")
    final = train(config, colour_shards, tmp_path / "resumed", log_every=1)
    assert (first.steps, second.steps, final.steps) == (1, 2, 16)
    assert first.stopped_early and not final.stopped_early
    assert [line["step"] for line in read_log(tmp_path / "resumed")] == list(range(1, 17))
    state = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)
    assert (state["step"], state["epoch"], state["batch_in_epoch"]) == (16, 2, 0)
    assert state["config"]["batch_size"] == 16
    expected = trained_model(tmp_path / "straight").state_dict()
    for name, value in trained_model(tmp_path / "resumed").state_dict().items():
        assert torch.allclose(value.float(), expected[name].float(), atol=1e-5), name
    losses = [line["loss"] for line in read_log(tmp_path / "resumed")]
    assert losses == pytest.approx([line["loss"] for line in read_log(tmp_path / "straight")])
    again = train(config, colour_shards, tmp_path / "resumed")  # finished: nothing to do
    assert again.steps == 16 and again.final_loss == pytest.approx(losses[-1])


def test_a_sample_budget_stops_mid_epoch_and_checkpoints_along_the_way(
    colour_shards: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    saved: list[int] = []
    real_save = trainer.save_checkpoint

    def spy(path: str, model: CLIP, optimizer: Any, step: int, *args: Any) -> None:
        saved.append(step)
        real_save(path, model, optimizer, step, *args)

    monkeypatch.setattr(trainer, "save_checkpoint", spy)
    # 200 samples buy 12 steps of 16 (8 per epoch); epochs are ignored; by default ten
    # checkpoints a run: every 12 // 10 = 1 step here, so check the interval with 20 steps
    config = dataclasses.replace(TINY, epochs=50, samples=200, checkpoint_every=0)
    result = train(config, colour_shards, tmp_path / "short", log_every=4)
    assert (result.steps, result.total_steps, result.samples_seen) == (12, 12, 192)
    assert not result.stopped_early and result.epochs_done == pytest.approx(1.5)
    state = torch.load(tmp_path / "short" / "checkpoint.pt", weights_only=True)
    assert (state["step"], state["epoch"], state["batch_in_epoch"]) == (12, 1, 4)
    saved.clear()
    train(dataclasses.replace(config, samples=320), colour_shards, tmp_path / "long")
    assert saved == [2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 20]  # the last one: the final state


@pytest.mark.slow
def test_the_same_seed_and_budget_give_the_same_results(
    colour_shards: list[str], colour_eval: Path, tmp_path: Path
) -> None:
    config = dataclasses.replace(TINY, samples=480, workers=2)
    for name in ("a", "b"):
        train(config, colour_shards, tmp_path / name, colour_eval, log_every=5)
    a, b = (json.loads((tmp_path / name / "results.json").read_text()) for name in "ab")
    assert a["steps"] == b["steps"] == 30 and a["zero_shot"] == b["zero_shot"]
    # one process, one thread count: CPU kernels run in the same order, bit for bit
    assert a["final_loss"] == b["final_loss"]


# ---------------------------------------------------------------- two processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_rank(rank: int, port: int, shards: list[str], out_dir: str, config: TrainConfig) -> None:
    """One torchrun-style rank: the environment torchrun would set, then `train`."""
    os.environ |= {
        "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
        "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
    }  # fmt: skip
    torch.set_num_threads(1)
    result = train(config, shards, Path(out_dir), log_every=2)
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(result.to_dict()))


@pytest.mark.slow
def test_two_ranks_under_ddp_agree_on_steps(colour_shards: list[str], tmp_path: Path) -> None:
    # a budget of 224 samples: 7 steps of 2 x 16, stopping in the middle of the second epoch
    config = dataclasses.replace(TINY, epochs=40, samples=224, samples_per_epoch=128)
    args = (free_port(), colour_shards, str(tmp_path), config)
    mp.spawn(run_rank, args=args, nprocs=2, join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert ranks[0]["steps"] == ranks[1]["steps"] == ranks[0]["total_steps"] == 7
    assert ranks[0]["world_size"] == 2 and ranks[0]["samples_seen"] == ranks[0]["steps"] * 32
    assert ranks[0]["final_loss"] == pytest.approx(ranks[1]["final_loss"])  # averaged over ranks
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["step"] == ranks[0]["steps"]
    assert read_log(tmp_path)[0]["step"] == 2


def test_module_entry_builds_the_config_from_set_overrides(
    colour_shards: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    overrides = [f"--set={k}={json.dumps(v)}" for k, v in dataclasses.asdict(TINY).items()]
    folder = str(Path(colour_shards[0]).parent)
    main(["--shards", folder, "--out", str(tmp_path), *overrides])
    printed = json.loads(capsys.readouterr().out)
    assert printed["steps"] == 8 and printed["world_size"] == 1
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["config"] == dataclasses.asdict(TINY)


def test_an_unknown_architecture_is_a_one_line_error(
    colour_shards: list[str], tmp_path: Path
) -> None:
    with pytest.raises(PipelineError, match="unknown model 'ViT-Q-7': one of tiny, demo") as error:
        train(dataclasses.replace(TINY, model="ViT-Q-7"), colour_shards, tmp_path)
    assert "\n" not in str(error.value)
    assert not (tmp_path / "checkpoint.pt").exists()
