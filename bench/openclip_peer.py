"""The open_clip side of `bench/openclip.py`; runs in the bench's own venv, not the project's.

`python openclip_peer.py EXPORT_DIR HELDOUT_DIR` loads an export the way an open_clip user
would (`open_clip.CLIP(**model_cfg)`, `load_state_dict(strict=True)`, open_clip's own
preprocessing from `preprocess_cfg`, the exported `tokenizer.json` read by `tokenizers`),
then prints one JSON object: the largest absolute differences between open_clip's
features and the project's on the export's check batch, and the zero-shot accuracy on the
held-out set. It imports nothing from the project.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import open_clip
import torch
import torch.nn.functional as F
from PIL import Image
from tokenizers import Tokenizer


def load_export(folder: Path) -> tuple[Any, dict[str, Any], Tokenizer]:
    config = json.loads((folder / "open_clip_config.json").read_text())
    model = open_clip.CLIP(**config["model_cfg"])
    state = torch.load(folder / "open_clip_pytorch_model.bin", map_location="cpu")
    model.load_state_dict(state, strict=True)
    return model.eval(), config, Tokenizer.from_file(str(folder / "tokenizer.json"))


@torch.no_grad()
def feature_differences(model: Any, folder: Path) -> dict[str, float]:
    check = torch.load(folder / "export_check.pt", map_location="cpu")
    images = model.encode_image(check["images"], normalize=True)
    texts = model.encode_text(check["tokens"], normalize=True)
    return {
        "image_max_abs_diff": (images - check["image_features"]).abs().max().item(),
        "text_max_abs_diff": (texts - check["text_features"]).abs().max().item(),
        "logit_scale_diff": abs(model.logit_scale.item() - check["logit_scale"].item()),
    }


@torch.no_grad()
def zero_shot(model: Any, config: dict[str, Any], tokenizer: Tokenizer, heldout: Path) -> float:
    pp = config["preprocess_cfg"]
    preprocess = open_clip.image_transform(
        pp["size"], is_train=False, mean=pp["mean"], std=pp["std"],
        interpolation=pp["interpolation"], resize_mode=pp["resize_mode"],
    )  # fmt: skip
    manifest = json.loads((heldout / "manifest.json").read_text())
    prompts = [t.format(c) for c in manifest["classes"] for t in manifest["templates"]]
    tokens = torch.tensor([e.ids for e in tokenizer.encode_batch(prompts)])
    text = model.encode_text(tokens, normalize=True)
    text = text.view(len(manifest["classes"]), len(manifest["templates"]), -1).mean(dim=1)
    weights = F.normalize(text, dim=-1)
    hits = 0
    for start in range(0, len(manifest["samples"]), 256):
        chunk = manifest["samples"][start : start + 256]
        images = torch.stack(
            [preprocess(Image.open(heldout / s["file"]).convert("RGB")) for s in chunk]
        )
        predicted = (model.encode_image(images, normalize=True) @ weights.T).argmax(dim=-1)
        hits += sum(int(p) == s["label"] for p, s in zip(predicted.tolist(), chunk, strict=True))
    return hits / len(manifest["samples"])


def main() -> None:
    folder, heldout = Path(sys.argv[1]), Path(sys.argv[2])
    torch.set_num_threads(1)
    model, config, tokenizer = load_export(folder)
    result = feature_differences(model, folder)
    result["zero_shot_top1"] = zero_shot(model, config, tokenizer, heldout)
    result["open_clip_version"] = open_clip.__version__
    print(json.dumps(result))


if __name__ == "__main__":
    main()
