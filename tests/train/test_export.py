from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer

from tests.train.colour_data import TINY
from train.__main__ import main
from train.export import CHECK_TEXTS, load_trained
from train.model import CLIP, spec_from_open_clip
from train.trainer import train

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def exported(colour_shards: list[str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-step tiny run (as a pipeline run: its `train/` folder), exported by the CLI."""
    run = tmp_path_factory.mktemp("run")
    train(dataclasses.replace(TINY, samples=64), colour_shards, run / "train")
    out = run / "export"
    main(["export", str(run), str(out)])
    return out


def test_export_writes_open_clips_hub_layout(exported: Path) -> None:
    names = {p.name for p in exported.iterdir()}
    assert {
        "open_clip_config.json", "open_clip_pytorch_model.bin", "tokenizer.json",
        "tokenizer_config.json", "special_tokens_map.json", "export_check.pt",
    } <= names  # fmt: skip
    config = json.loads((exported / "open_clip_config.json").read_text())
    assert set(config) == {"model_cfg", "preprocess_cfg"}
    assert config["model_cfg"]["vision_cfg"]["patch_size"] == TINY.patch_size
    assert config["preprocess_cfg"]["size"] == TINY.image_size
    assert config["preprocess_cfg"]["interpolation"] == "bicubic"


def test_exported_weights_load_strictly_and_reproduce_the_check_batch(exported: Path) -> None:
    config = json.loads((exported / "open_clip_config.json").read_text())
    model = CLIP(spec_from_open_clip(config["model_cfg"])).eval()
    state = torch.load(exported / "open_clip_pytorch_model.bin", weights_only=True)
    model.load_state_dict(state, strict=True)
    check = torch.load(exported / "export_check.pt", weights_only=True)
    with torch.no_grad():
        assert torch.allclose(model.encode_image(check["images"]), check["image_features"])
        assert torch.allclose(model.encode_text(check["tokens"]), check["text_features"])
    tokenizer = Tokenizer.from_file(str(exported / "tokenizer.json"))
    ids = [e.ids for e in tokenizer.encode_batch(list(CHECK_TEXTS))]
    assert ids == check["tokens"].tolist()
    assert check["tokens"].argmax(-1).tolist() == [
        row.index(config["model_cfg"]["text_cfg"]["vocab_size"] - 1) for row in ids
    ]  # argmax pooling lands on eot, the last id of the vocabulary


def test_the_export_is_the_checkpoints_model(exported: Path) -> None:
    model, _ = load_trained(exported.parent)
    state = torch.load(exported / "open_clip_pytorch_model.bin", weights_only=True)
    assert all(torch.equal(value, state[name]) for name, value in model.state_dict().items())


def test_export_of_a_folder_without_a_checkpoint_is_one_line_and_exit_2(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "train", "export", str(tmp_path), str(tmp_path / "out")],
        capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip
    assert out.returncode == 2
    assert "no checkpoint.pt" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "out").exists()
