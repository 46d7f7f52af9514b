"""Stage 4: stream the run's shards into the contrastive trainer.

Runs in every rank when launched under torchrun; the trainer itself splits shards by node
and worker and makes rank 0 the only writer of logs, checkpoints and results.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from pipeline.config import PipelineConfig
from pipeline.errors import PipelineError
from pipeline.layout import RunLayout
from train.data import count_samples, resolve_shards
from train.trainer import TrainResult, train

log = logging.getLogger(__name__)


def eval_dir(config: PipelineConfig, layout: RunLayout) -> Path | None:
    if config.train.eval_set:
        return Path(config.train.eval_set)
    manifest = layout.heldout_dir / "manifest.json"
    return layout.heldout_dir if manifest.exists() else None


def run_train(config: PipelineConfig) -> TrainResult:
    layout = RunLayout(config.root)
    spec = config.train.shards or str(layout.shards_dir)
    try:
        shards = resolve_shards(spec)
    except FileNotFoundError:
        shards = []
    if not shards:
        raise PipelineError(f"no finished shards in {spec}: run `make shards` first")
    train_config = config.train
    if train_config.samples_per_epoch == 0 and Path(spec).is_dir():
        samples = count_samples(Path(spec))
        train_config = dataclasses.replace(train_config, samples_per_epoch=samples)
    log.info("train: %d shards, %d samples per epoch", len(shards), train_config.samples_per_epoch)
    return train(train_config, shards, layout.train_dir, eval_dir(config, layout))
