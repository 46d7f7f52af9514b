"""Stage 4: stream the run's shards into the contrastive trainer.

Runs in every rank when launched under torchrun; the trainer itself splits shards by node
and worker and makes rank 0 the only writer of logs, checkpoints and results (holding
`train/train.lock`, so a second run on the same folder fails at once). A training run that
spent its budget (`train.samples`, else `train.epochs` passes; or the optional safety cap
`train.max_seconds`) leaves `train/train.done`; a killed one resumes from its last
checkpoint. To train further, raise `train.samples` (or `train.epochs`) and delete the
marker: the checkpoint carries on. The folder also holds the run's BPE tokenizer
(`tokenizer.json`); `python -m train export RUN_DIR OUT` turns the run into open_clip's
hub layout.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any

from core import storage
from core.config import PipelineConfig, save_config
from core.errors import PipelineError
from core.io import is_done, mark_done, read_json
from core.layout import RunLayout
from train.data import count_samples, resolve_shards
from train.trainer import RESULTS, train

log = logging.getLogger(__name__)


def eval_dir(config: PipelineConfig, layout: RunLayout) -> str | None:
    if config.train.eval_set:
        return config.train.eval_set
    manifest = storage.join(layout.heldout_dir, "manifest.json")
    return layout.heldout_dir if storage.exists(manifest) else None


def shard_list(spec: str) -> list[str]:
    try:
        shards = resolve_shards(spec)
    except FileNotFoundError:
        shards = []
    if not shards:
        raise PipelineError(f"no finished shards in {spec}: run `make shards` first")
    return shards


def run_train(config: PipelineConfig) -> dict[str, Any]:
    layout = RunLayout(config.root)
    if is_done(layout.train_dir, "train"):
        log.info("train: already done in %s", layout.train_dir)
        results: dict[str, Any] = read_json(storage.join(layout.train_dir, RESULTS))
        return results
    spec = config.train.shards or str(layout.shards_dir)
    shards = shard_list(spec)
    train_config = config.train
    if train_config.samples_per_epoch == 0 and storage.is_dir(spec):
        samples = count_samples(spec)
        train_config = dataclasses.replace(train_config, samples_per_epoch=samples)
    log.info("train: %d shards, %d samples per epoch", len(shards), train_config.samples_per_epoch)
    result = train(train_config, shards, layout.train_dir, eval_dir(config, layout))
    if int(os.environ.get("RANK", "0")) == 0:
        save_config(config, storage.join(layout.train_dir, "config.toml"))
        mark_done(layout.train_dir, "train", {"steps": result.steps})
    return result.to_dict()
