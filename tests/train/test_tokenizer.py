from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from tokenizers import Tokenizer, models
from torch.utils.data import DataLoader, Dataset

from train.tokenizer import EOT, PAD_ID, SOT, BpeTokenizer, train_bpe

CAPTIONS = [
    f"a {size} {colour} {shape} on a plain background"
    for size in ("small", "large", "bright")
    for colour in ("red", "green", "blue", "yellow")
    for shape in ("square", "circle", "star")
] * 4
TEXTS = ["A Red Square!", "T-shirt, 2 dogs & a cat's toy", "", "Ünïcode wörds ok"]


@pytest.fixture(scope="module")
def tokenizer() -> BpeTokenizer:
    return train_bpe(CAPTIONS, 400, 12)


def test_layout_is_sot_tokens_eot_then_padding_with_eot_the_largest_id(
    tokenizer: BpeTokenizer,
) -> None:
    tokens = tokenizer(["A red square", ""])
    assert tokens.shape == (2, 12) and tokens.dtype == torch.long
    size = tokenizer.vocab_size
    assert (tokenizer.sot_id, tokenizer.eot_id) == (size - 2, size - 1)
    assert tokens[0, 0] == tokenizer.sot_id and tokens[1].tolist()[:2] == [size - 2, size - 1]
    eot_at = tokens[0].tolist().index(tokenizer.eot_id)
    assert (tokens[0, eot_at + 1 :] == PAD_ID).all() and (tokens[0, 1:eot_at] != PAD_ID).all()
    assert (tokens.argmax(dim=-1) == torch.tensor([eot_at, 1])).all()  # argmax pooling finds eot


def test_learned_words_are_single_tokens_and_unseen_ones_split(tokenizer: BpeTokenizer) -> None:
    assert len(tokenizer.encode("square")) == 3  # sot, one token, eot
    assert len(tokenizer.encode("zyxwvq")) > 4
    assert tokenizer.decode(tokenizer.encode("A Red  Square")) == "a red square"


def test_case_and_whitespace_do_not_change_ids(tokenizer: BpeTokenizer) -> None:
    assert torch.equal(tokenizer(["A RED\tsquare "]), tokenizer(["a red square"]))
    assert not torch.equal(tokenizer(["a red square"]), tokenizer(["a blue square"]))


def test_truncation_keeps_sot_and_eot(tokenizer: BpeTokenizer) -> None:
    tokens = tokenizer([" ".join(f"word{i}" for i in range(50))])[0]
    assert tokens[0] == tokenizer.sot_id and tokens[-1] == tokenizer.eot_id
    assert (tokens != PAD_ID).all()


def test_the_saved_file_alone_gives_the_same_ids(tokenizer: BpeTokenizer) -> None:
    plain = Tokenizer.from_str(tokenizer.to_json())  # what another program reads
    assert [e.ids for e in plain.encode_batch(TEXTS)] == tokenizer(TEXTS).tolist()
    assert BpeTokenizer.from_json(tokenizer.to_json())(TEXTS).tolist() == tokenizer(TEXTS).tolist()
    assert plain.token_to_id(SOT) == tokenizer.sot_id and plain.token_to_id(EOT) == tokenizer.eot_id


def test_rejects_too_small_sizes_and_other_layouts() -> None:
    with pytest.raises(ValueError):
        train_bpe(CAPTIONS, 100, 12)
    with pytest.raises(ValueError):
        train_bpe(CAPTIONS, 400, 1)
    with pytest.raises(ValueError, match="CLIP-layout"):
        swapped = Tokenizer(models.BPE())
        swapped.add_special_tokens(["<pad>", EOT, SOT])  # eot before sot: argmax misses it
        BpeTokenizer(swapped)


def test_training_is_the_same_in_another_process_with_other_hash_seed_and_threads(
    tokenizer: BpeTokenizer,
) -> None:
    code = (
        "import json, sys; from train.tokenizer import train_bpe; "
        "print(train_bpe(json.loads(sys.argv[1]), 400, 12).to_json())"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345", "TOKENIZERS_PARALLELISM": "true"}
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(CAPTIONS)],
        capture_output=True, text=True, check=True, env=env,
    )  # fmt: skip
    assert out.stdout.strip() == tokenizer.to_json()


class CaptionSet(Dataset[torch.Tensor]):
    def __init__(self, tokenizer: BpeTokenizer) -> None:
        self.tokenizer = tokenizer

    def __len__(self) -> int:
        return len(TEXTS) * 4

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.tokenizer([TEXTS[index % len(TEXTS)]] * 8)[0]  # a batch: the Rust pool's path


def test_forked_loader_workers_tokenize_after_the_parent_did(tokenizer: BpeTokenizer) -> None:
    expected = tokenizer(TEXTS * 4)  # the parent uses the tokenizer before forking
    loader = DataLoader(CaptionSet(tokenizer), batch_size=None, num_workers=2, timeout=30)
    assert torch.equal(torch.stack(list(loader)), expected)
