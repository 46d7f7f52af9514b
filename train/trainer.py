"""The training loop: one function, `train`, readable top to bottom.

Runs as one process, or as one rank of a torchrun job (DDP) when `WORLD_SIZE > 1` is in the
environment: gloo on CPU, NCCL on CUDA. Everything a rerun needs is in
`out_dir/checkpoint.pt` (model, optimizer, step, epoch, config, RNG state): a run that was
stopped (by `max_seconds`, or killed) continues from its last checkpoint at the exact batch
it had reached, since the loader can start any epoch after any number of batches.

The budget is a number of samples (`samples`, else `epochs` x `samples_per_epoch`), so the
same seed and budget give the same steps and the same model on any machine, however busy;
`max_seconds` is only a safety cap. A checkpoint is written every `checkpoint_every` steps
(by default ten times a run). Rank 0 holds `out_dir/train.lock` while it trains, and under
torchrun every rank exits once its launcher is gone (see `train.guard`).

The tokenizer is learned first, by rank 0, from the captions of the shards (byte-level
BPE, see `train.tokenizer`) and shared with the other ranks; it is saved as
`tokenizer.json` and inside every checkpoint, so a resumed run reads the same ids.

A step can run as `accum_steps` micro-batches whose loss and gradient are exactly the full
batch's (`train.accumulate`); `precision = "bf16"` runs the towers under autocast, and
`compile = true` wraps the model in `torch.compile`.

Files in `out_dir` (written by rank 0): `tokenizer.json`, `log.jsonl` (one line every
`log_every` steps: step, epoch, loss, lr, logit scale, samples/s, and the seconds per step
spent waiting for data and computing), `checkpoint.pt`, `results.json`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from core import storage
from core.config import TrainConfig
from core.errors import PipelineError
from core.io import atomic_path, remove_stale_temporaries, write_json, write_text
from train.accumulate import accumulated_backward, autocast
from train.data import (
    StreamSlot,
    batches_per_epoch,
    derive_seed,
    make_loader,
    read_captions,
    resolve_shards,
)
from train.evaluate import read_shard_pairs, retrieval_recall, zero_shot_accuracy
from train.guard import RunLock, exit_with_launcher
from train.loss import ClipLoss
from train.model import CLIP, LOGIT_SCALE_MAX, model_spec
from train.tokenizer import BpeTokenizer, train_bpe

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
LOG_FILE = "log.jsonl"
RESULTS = "results.json"
TOKENIZER = "tokenizer.json"
RETRIEVAL_PAIRS = 1000  # pairs of the held-out shards used for recall@k


@dataclass
class TrainResult:
    """What a run achieved; saved as `results.json`."""

    steps: int  # optimizer steps taken, in total (resumed runs included)
    total_steps: int  # steps the budget buys: samples (or epochs x per epoch) / global batch
    samples_seen: int  # steps x global batch
    epochs_done: float  # steps / batches per epoch
    final_loss: float | None  # mean loss of the last logging window, across ranks
    samples_per_second: float  # global training throughput of this invocation
    seconds: float  # wall time of this invocation's training loop
    stopped_early: bool  # max_seconds ran out before total_steps
    zero_shot: dict[str, Any] | None = None
    world_size: int = 1
    data_wait_per_step: float = 0.0  # mean seconds a step waited for its batch
    retrieval: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Processes:
    """This process's place in the job."""

    rank: int
    world_size: int
    device: torch.device
    owns_group: bool  # this call initialised the process group and must destroy it

    @property
    def is_main(self) -> bool:
        return self.rank == 0


# ---------------------------------------------------------------- setup


def start_processes(config: TrainConfig) -> Processes:
    """Join the torchrun job if the environment describes one (WORLD_SIZE > 1)."""
    device = torch.device(config.device)
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Processes(0, 1, device, owns_group=False)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    owns_group = not dist.is_initialized()
    if owns_group:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Processes(dist.get_rank(), dist.get_world_size(), device, owns_group)


def wrap_for_ranks(model: CLIP, procs: Processes) -> nn.Module:
    """DDP around the model when there are several ranks (gradients averaged over them)."""
    if procs.world_size == 1:
        return model
    device_ids = [procs.device.index] if procs.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def budget_steps(config: TrainConfig, steps_per_epoch: int, world_size: int) -> int:
    """Steps the budget buys: `samples` over the global batch, else whole epochs."""
    if config.samples:
        return max(1, config.samples // (config.batch_size * world_size))
    return config.epochs * steps_per_epoch


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW (CLIP's betas and eps); no weight decay on norms, biases and logit_scale."""
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.98), eps=1e-6)


def learning_rate(step: int, config: TrainConfig, total_steps: int) -> float:
    """Linear warmup over `warmup_steps`, then cosine decay to zero at `total_steps`."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, total_steps - config.warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress))) * config.lr


# ---------------------------------------------------------------- checkpoints


def save_checkpoint(
    path: str,
    model: CLIP,
    optimizer: torch.optim.Optimizer,
    step: int,
    steps_per_epoch: int,
    config: TrainConfig,
    tokenizer: BpeTokenizer,
) -> None:
    """Write the checkpoint atomically: a reader sees the old one or the new one, whole."""
    state = {
        "model": model.state_dict(),
        "model_cfg": model.spec.open_clip_cfg(),
        "tokenizer": tokenizer.to_json(),
        "optimizer": optimizer.state_dict(),
        "step": step,
        "epoch": step // steps_per_epoch,  # the data position: epoch and batch within it
        "batch_in_epoch": step % steps_per_epoch,
        "config": dataclasses.asdict(config),
        "world_size": dist.get_world_size() if dist.is_initialized() else 1,
        "rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


# Fields whose change moves the data stream: a resumed run with other values is not exact.
DATA_ORDER_FIELDS = ("seed", "batch_size", "samples_per_epoch", "shuffle_buffer", "workers")


def read_checkpoint(path: str, procs: Processes) -> dict[str, Any] | None:
    """The checkpoint at `path`, or None if there is none yet."""
    if not storage.exists(path):
        return None
    with storage.open_input(path) as handle:
        state: dict[str, Any] = torch.load(handle, map_location=procs.device, weights_only=True)
    return state


def restore_checkpoint(
    state: dict[str, Any] | None,
    model: CLIP,
    optimizer: torch.optim.Optimizer,
    config: TrainConfig,
    procs: Processes,
) -> int:
    """Restore model, optimizer and RNG from `state` if there is one; returns its step."""
    if state is None:
        return 0
    changed = [k for k in DATA_ORDER_FIELDS if state["config"].get(k) != getattr(config, k)]
    if state["world_size"] != procs.world_size:
        changed.append("world_size")
    if changed:
        log.warning("resuming with other %s: the data order is not the stopped run's", changed)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng"].cpu())
    if state["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda_rng"]])
    log.info("resumed at step %d", state["step"])
    return int(state["step"])


def prepare_tokenizer(
    config: TrainConfig, shards: list[str], state: dict[str, Any] | None, procs: Processes
) -> BpeTokenizer:
    """The checkpoint's tokenizer, else one rank 0 learns from the captions and shares."""
    if state is not None and "tokenizer" not in state:
        raise PipelineError("the checkpoint is an older model's (no tokenizer): train anew")
    text: str | None = state["tokenizer"] if state is not None else None
    if text is None and procs.is_main:
        captions = read_captions(shards, config.tokenizer_captions)
        if not captions:
            log.warning("no captions in the shards: the tokenizer knows only bytes")
        text = train_bpe(captions, config.vocab_size, config.context_length).to_json()
        log.info("tokenizer: learned from %d captions", len(captions))
    if procs.world_size > 1 and state is None:
        shared = [text]
        dist.broadcast_object_list(shared, src=0)
        text = shared[0]
    if text is None:
        raise RuntimeError("no tokenizer reached this rank")
    return BpeTokenizer.from_json(text)


# ---------------------------------------------------------------- agreement between ranks


def mean_over_ranks(value: float, procs: Processes) -> float:
    """The mean of `value` over all ranks (every rank must call this at the same step)."""
    if procs.world_size == 1:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=procs.device)
    dist.all_reduce(tensor)
    return tensor.item() / procs.world_size


def out_of_time(started: float, config: TrainConfig, procs: Processes) -> bool:
    """Whether `max_seconds` is spent; rank 0 decides and every rank gets its answer."""
    if config.max_seconds <= 0:
        return False
    spent = time.monotonic() - started > config.max_seconds
    stop = torch.tensor([float(spent)], device=procs.device)
    if procs.world_size > 1:
        dist.broadcast(stop, src=0)
    return bool(stop.item())


# ---------------------------------------------------------------- one step


def train_step(
    model: nn.Module,
    loss_fn: ClipLoss,
    optimizer: torch.optim.Optimizer,
    batch: tuple[torch.Tensor, torch.Tensor],
    device: torch.device,
    *,
    accum_steps: int = 1,
    precision: str = "fp32",
) -> float:
    """Forward, symmetric InfoNCE, backward (DDP averages gradients), update; returns the loss.

    With `accum_steps > 1` the batch goes through in that many micro-batches with the
    full batch's loss and gradient (`accumulated_backward`). After the update the logit
    scale is clamped to [0, LOGIT_SCALE_MAX] in place (as
    open_clip does): the forward clamp alone has zero gradient above the cap, so the
    parameter could drift past it and never come back.
    """
    images, tokens = (t.to(device, non_blocking=True) for t in batch)
    optimizer.zero_grad(set_to_none=True)
    if accum_steps > 1:
        loss = accumulated_backward(model, loss_fn, images, tokens, accum_steps, precision)
    else:
        with autocast(device, precision):
            image_features, text_features, scale = model(images, tokens)
        loss = loss_fn(image_features.float(), text_features.float(), scale.float())
        loss.backward()
    optimizer.step()
    with torch.no_grad():
        bare_model(model).logit_scale.clamp_(0, LOGIT_SCALE_MAX)
    return loss.item()


def bare_model(net: nn.Module) -> CLIP:
    """The CLIP inside `net`: `net` itself, or the module its compile or DDP wrapper holds."""
    model = getattr(net, "_orig_mod", net)  # torch.compile's wrapper
    model = model.module if isinstance(model, DistributedDataParallel) else model
    if not isinstance(model, CLIP):
        raise TypeError(f"expected a CLIP, got {type(model).__name__}")
    return model


class LogWriter:
    """One JSON line per logging window in `log.jsonl` (rank 0 only).

    The whole file is rewritten, atomically, at every window: object storage has no
    append, and the log is small (a line every `log_every` steps).
    """

    def __init__(self, path: str, enabled: bool) -> None:
        self.path = path
        self.enabled = enabled
        self.window_start = time.monotonic()
        self.losses: list[float] = []
        self.waits: list[float] = []  # seconds each step of the window waited for data
        self.total_wait = 0.0
        self.records: list[dict[str, Any]] = []

    def trim(self, step: int) -> float | None:
        """Drop lines logged after `step` (by a run killed before its next checkpoint).

        Returns the loss of the last line kept, if any.
        """
        if not self.enabled or not storage.exists(self.path):
            return None
        lines = storage.read_text(self.path).splitlines()
        self.records = [json.loads(line) for line in lines if json.loads(line)["step"] <= step]
        if len(self.records) < len(lines):
            self.write()
        return float(self.records[-1]["loss"]) if self.records else None

    def write(self) -> None:
        write_text(self.path, "".join(json.dumps(record) + "\n" for record in self.records))

    def add(self, loss: float, waited: float) -> None:
        self.losses.append(loss)
        self.waits.append(waited)
        self.total_wait += waited

    def flush(self, record: dict[str, Any], global_batch: int, procs: Processes) -> float:
        """Write the window's mean loss (over steps and ranks) and speed; returns the loss."""
        steps = max(1, len(self.losses))
        loss = mean_over_ranks(sum(self.losses) / steps, procs)
        seconds = time.monotonic() - self.window_start
        wait = sum(self.waits) / steps
        record |= {
            "loss": loss,
            "samples_per_second": len(self.losses) * global_batch / seconds,
            "data_wait": wait,  # seconds per step waiting for the loader
            "compute": seconds / steps - wait,  # seconds per step in the step itself
        }
        if self.enabled:
            self.records.append(record)
            self.write()
        self.window_start, self.losses, self.waits = time.monotonic(), [], []
        return loss


# ---------------------------------------------------------------- the run


@dataclass
class TrainingRun:
    """Everything the loop touches, so the loop reads as the schedule it follows."""

    config: TrainConfig
    shards: list[str]
    out_dir: str
    procs: Processes
    model: CLIP  # the bare model: checkpoints and evaluation
    net: nn.Module  # what the step calls: the model, or its DDP wrapper
    optimizer: torch.optim.Optimizer
    logger: LogWriter
    steps_per_epoch: int
    tokenizer: BpeTokenizer
    step: int = 0
    final_loss: float | None = None
    started: float = field(default_factory=time.monotonic)

    @property
    def total_steps(self) -> int:
        return budget_steps(self.config, self.steps_per_epoch, self.procs.world_size)

    @property
    def checkpoint_every(self) -> int:
        return self.config.checkpoint_every or max(1, self.total_steps // 10)

    @property
    def global_batch(self) -> int:
        return self.config.batch_size * self.procs.world_size

    def checkpoint(self) -> None:
        if self.procs.is_main:
            path = storage.join(self.out_dir, CHECKPOINT)
            save_checkpoint(
                path, self.model, self.optimizer, self.step, self.steps_per_epoch, self.config,
                self.tokenizer,
            )  # fmt: skip

    def log(self) -> None:
        record = {
            "step": self.step,
            "epoch": (self.step - 1) // self.steps_per_epoch,  # of the last step trained
            "lr": self.optimizer.param_groups[0]["lr"],
            "logit_scale": self.model.logit_scale.clamp(max=LOGIT_SCALE_MAX).exp().item(),
        }
        self.final_loss = self.logger.flush(record, self.global_batch, self.procs)


def run_epoch(run: TrainingRun, log_every: int) -> bool:
    """Train from `run.step` to the end of its epoch or the budget; False if time ran out."""
    epoch, start_batch = divmod(run.step, run.steps_per_epoch)
    config, procs = run.config, run.procs
    loss_fn = ClipLoss(procs.rank, procs.world_size)
    slot = StreamSlot(config.seed, epoch, procs.rank, procs.world_size, start_batch)
    loader = make_loader(run.shards, config, run.tokenizer, slot)
    batches = iter(loader)
    while True:
        asked = time.monotonic()
        batch = next(batches, None)
        if batch is None:
            break
        waited = time.monotonic() - asked
        for group in run.optimizer.param_groups:
            group["lr"] = learning_rate(run.step, config, run.total_steps)
        loss = train_step(
            run.net, loss_fn, run.optimizer, batch, procs.device,
            accum_steps=config.accum_steps, precision=config.precision,
        )  # fmt: skip
        run.logger.add(loss, waited)
        run.step += 1
        if run.step % log_every == 0:
            run.log()
        if run.step % run.checkpoint_every == 0:
            run.checkpoint()
        if run.step >= run.total_steps:
            break
        if out_of_time(run.started, config, procs):
            return False
    return True


def train(
    config: TrainConfig,
    shards: list[str],
    out_dir: str | Path,
    eval_dir: str | Path | None = None,
    *,
    log_every: int = 10,
) -> TrainResult:
    """Train a CLIP on `shards` into `out_dir`, resuming from its checkpoint if present.

    Raises PipelineError if another process is training in `out_dir`.
    """
    out_dir = storage.name(out_dir)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        exit_with_launcher(os.getppid())  # torchrun's workers would outlive a killed agent
    procs = start_processes(config)
    storage.makedirs(out_dir)
    with RunLock(out_dir) if procs.is_main else contextlib.nullcontext():
        if procs.is_main:
            remove_stale_temporaries(out_dir)  # what a killed run was writing
        return run_training(config, shards, out_dir, procs, eval_dir, log_every)


def run_training(
    config: TrainConfig,
    shards: list[str],
    out_dir: str,
    procs: Processes,
    eval_dir: str | Path | None,
    log_every: int,
) -> TrainResult:
    """The loop `train` runs once this process has joined the job and holds the folder."""
    # 1. the checkpoint, if any, and the tokenizer: the saved one, else learned and shared
    state = read_checkpoint(storage.join(out_dir, CHECKPOINT), procs)
    tokenizer = prepare_tokenizer(config, shards, state, procs)
    if procs.is_main:
        write_text(storage.join(out_dir, TOKENIZER), tokenizer.to_json())
    # 2. seeds: every rank builds the same initial weights; model and AdamW
    torch.manual_seed(derive_seed(config.seed, "init"))
    try:
        spec = model_spec(config, tokenizer.vocab_size)
    except ValueError as error:  # an unknown name or a shape that does not fit
        raise PipelineError(f"train: {error}") from None
    model = CLIP(spec).to(procs.device)
    optimizer = make_optimizer(model, config)
    # 3. resume: the step reached fixes the epoch and the batch within it
    step = restore_checkpoint(state, model, optimizer, config, procs)
    net = wrap_for_ranks(model, procs)
    run = TrainingRun(
        config=config,
        shards=list(shards),
        out_dir=out_dir,
        procs=procs,
        model=model,
        net=cast(nn.Module, torch.compile(net)) if config.compile else net,
        optimizer=optimizer,
        logger=LogWriter(storage.join(out_dir, LOG_FILE), procs.is_main),
        steps_per_epoch=batches_per_epoch(shards, config, procs.world_size),
        tokenizer=tokenizer,
        step=step,
    )
    run.final_loss = run.logger.trim(step)
    # 4. epochs of a fixed number of steps, each epoch's data order set by its number
    finished = True
    while run.step < run.total_steps and finished:
        finished = run_epoch(run, log_every)
    seconds = time.monotonic() - run.started
    if run.logger.losses:
        run.log()
    # 5. final checkpoint, zero-shot evaluation, results
    run.checkpoint()
    result = TrainResult(
        steps=run.step,
        total_steps=run.total_steps,
        samples_seen=run.step * run.global_batch,
        epochs_done=run.step / run.steps_per_epoch,
        final_loss=run.final_loss,
        samples_per_second=(run.step - step) * run.global_batch / max(seconds, 1e-9),
        seconds=seconds,
        stopped_early=run.step < run.total_steps,
        world_size=procs.world_size,
        data_wait_per_step=run.logger.total_wait / max(1, run.step - step),
    )
    return finish(run, result, eval_dir or config.eval_set or None)


def finish(run: TrainingRun, result: TrainResult, eval_dir: str | Path | None) -> TrainResult:
    """Rank 0 evaluates and writes `results.json`; then every rank leaves the group."""
    procs, config = run.procs, run.config
    if procs.is_main:
        if eval_dir is not None:
            result.zero_shot = zero_shot_accuracy(
                run.model, run.tokenizer, eval_dir, config.image_size, procs.device,
                config.templates,
            )  # fmt: skip
        if config.retrieval_shards:
            pairs = read_shard_pairs(resolve_shards(config.retrieval_shards), RETRIEVAL_PAIRS)
            result.retrieval = retrieval_recall(run.model, run.tokenizer, pairs)
        write_json(storage.join(run.out_dir, RESULTS), result.to_dict())
    if procs.world_size > 1:
        dist.barrier()
        if procs.owns_group:
            dist.destroy_process_group()
    return result
