"""Export a trained run in open_clip's hub layout: `python -m train export RUN_DIR OUT`.

`OUT` receives:

- `open_clip_config.json`: `{"model_cfg": ..., "preprocess_cfg": ...}`; the model config
  is what `open_clip.CLIP(**model_cfg)` takes, the preprocessing the project's own
  (shortest side to `image_size`, bicubic, centre crop, CLIP's mean and std);
- `open_clip_pytorch_model.bin`: the model's state dict, which that CLIP loads with
  `strict=True`;
- `tokenizer.json` (the BPE tokenizer with its CLIP conventions, readable by
  `tokenizers.Tokenizer.from_file`), with `tokenizer_config.json` and
  `special_tokens_map.json` for Hugging Face readers;
- `export_check.pt`: a fixed batch of images and token ids and the project's normalised
  features for them, so another implementation can prove it computes the same.

`RUN_DIR` is a train folder (holding `checkpoint.pt`) or a pipeline run (its `train/`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from core import storage
from core.io import atomic_path, write_json, write_text
from train.model import CLIP, spec_from_open_clip
from train.tokenizer import EOT, PAD, SOT, BpeTokenizer
from train.transform import CLIP_MEAN, CLIP_STD

log = logging.getLogger(__name__)

CONFIG_FILE = "open_clip_config.json"
WEIGHTS_FILE = "open_clip_pytorch_model.bin"
CHECK_FILE = "export_check.pt"
CHECK_IMAGES = 8
CHECK_TEXTS = (
    "a photo of a red circle.",
    "A Blue Square on a plain background",
    "two green stars and a yellow hexagon",
    "",
    "ünïcode caption, with punctuation!",
    "a very long caption " + "that goes on " * 20,
)


def checkpoint_path(run_dir: str | Path) -> str:
    """`run_dir/checkpoint.pt`, or `run_dir/train/checkpoint.pt` for a pipeline run."""
    root = storage.name(run_dir)
    candidates = (storage.join(root, "checkpoint.pt"), storage.join(root, "train", "checkpoint.pt"))
    for candidate in candidates:
        if storage.exists(candidate):
            return candidate
    raise FileNotFoundError(f"no checkpoint.pt in {root} or {root}/train: train a model first")


def load_trained(run_dir: str | Path) -> tuple[CLIP, BpeTokenizer]:
    """The model and tokenizer of a run's last checkpoint, in eval mode on the CPU."""
    with storage.open_input(checkpoint_path(run_dir)) as handle:
        state = torch.load(handle, map_location="cpu", weights_only=True)
    if "model_cfg" not in state or "tokenizer" not in state:
        raise ValueError(f"{run_dir}: the checkpoint predates open_clip export; retrain it")
    model = CLIP(spec_from_open_clip(state["model_cfg"]))
    model.load_state_dict(state["model"])
    return model.eval(), BpeTokenizer.from_json(state["tokenizer"])


def preprocess_cfg(image_size: int) -> dict[str, Any]:
    """open_clip's `PreprocessCfg` for the project's image transform."""
    return {
        "size": image_size,
        "mode": "RGB",
        "mean": list(CLIP_MEAN),
        "std": list(CLIP_STD),
        "interpolation": "bicubic",
        "resize_mode": "shortest",
        "fill_color": 0,
    }


@torch.no_grad()
def check_batch(model: CLIP, tokenizer: BpeTokenizer) -> dict[str, torch.Tensor]:
    """Seeded images, fixed captions' ids, and the model's normalised features for them."""
    generator = torch.Generator().manual_seed(0)
    size = model.image_size
    images = torch.randn(CHECK_IMAGES, 3, size, size, generator=generator)
    tokens = tokenizer(list(CHECK_TEXTS))
    return {
        "images": images,
        "tokens": tokens,
        "image_features": model.encode_image(images),
        "text_features": model.encode_text(tokens),
        "logit_scale": model.logit_scale.detach().clone(),
    }


def write_tokenizer_files(out: str, tokenizer: BpeTokenizer) -> None:
    write_text(storage.join(out, "tokenizer.json"), tokenizer.to_json())
    special = {"bos_token": SOT, "eos_token": EOT, "pad_token": PAD, "unk_token": EOT}
    write_json(storage.join(out, "special_tokens_map.json"), special)
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": tokenizer.context_length,
        "do_lower_case": True,
        **special,
    }
    write_json(storage.join(out, "tokenizer_config.json"), config)


def export_run(run_dir: str | Path, out_dir: str | Path) -> str:
    """Write the hub layout above for `run_dir`'s model into `out_dir`; returns `out_dir`."""
    model, tokenizer = load_trained(run_dir)
    out = storage.name(out_dir)
    storage.makedirs(out)
    config = {
        "model_cfg": model.spec.open_clip_cfg(),
        "preprocess_cfg": preprocess_cfg(model.image_size),
    }
    with atomic_path(storage.join(out, WEIGHTS_FILE)) as tmp:
        torch.save(model.state_dict(), tmp)
    with atomic_path(storage.join(out, CHECK_FILE)) as tmp:
        torch.save(check_batch(model, tokenizer), tmp)
    write_tokenizer_files(out, tokenizer)
    write_json(storage.join(out, CONFIG_FILE), config)  # last: its presence means complete
    log.info("exported %s to %s", run_dir, out)
    return out
