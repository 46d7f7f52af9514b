from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from train.tokenizer import EOT_ID, PAD_ID, SOT_ID, HashTokenizer, split_words

TEXTS = ["A Red Square!", "T-shirt, 2 dogs & a cat's toy", "", "Ünïcode wörds ok"]


def test_split_words_lowercases_and_splits_on_non_alphanumerics() -> None:
    assert split_words("T-shirt, 2 dogs & a cat's_toy") == [
        "t", "shirt", "2", "dogs", "a", "cat", "s", "toy",
    ]  # fmt: skip


def test_layout_is_sot_words_eot_then_padding() -> None:
    tokens = HashTokenizer(1000, 8)(["A red square", ""])
    assert tokens.shape == (2, 8) and tokens.dtype == torch.long
    assert tokens[0, 0] == SOT_ID and tokens[0, 4] == EOT_ID
    assert (tokens[0, 5:] == PAD_ID).all()
    assert (tokens[0, 1:4] >= 3).all() and (tokens[0, 1:4] < 1000).all()
    assert tokens[1].tolist() == [SOT_ID, EOT_ID] + [PAD_ID] * 6


def test_case_and_punctuation_do_not_change_ids() -> None:
    tok = HashTokenizer(8192, 16)
    assert torch.equal(tok(["A RED square."]), tok(["a red, square"]))
    assert not torch.equal(tok(["a red square"]), tok(["a blue square"]))


def test_truncation_keeps_eot() -> None:
    tokens = HashTokenizer(100, 5)([" ".join(f"w{i}" for i in range(50))])
    assert tokens[0, 0] == SOT_ID and tokens[0, -1] == EOT_ID
    assert (tokens[0, 1:4] != PAD_ID).all()


def test_rejects_too_small_sizes() -> None:
    with pytest.raises(ValueError):
        HashTokenizer(3, 8)
    with pytest.raises(ValueError):
        HashTokenizer(100, 1)


def test_ids_are_the_same_in_another_process_with_another_hash_seed() -> None:
    code = (
        "import json, sys; from train.tokenizer import HashTokenizer; "
        "print(json.dumps(HashTokenizer(8192, 12)(json.loads(sys.argv[1])).tolist()))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(TEXTS)],
        capture_output=True, text=True, check=True, env=env,
    )  # fmt: skip
    assert json.loads(out.stdout) == HashTokenizer(8192, 12)(TEXTS).tolist()
