"""CLIP's text conventions on a byte-level BPE vocabulary learned from the run's captions.

Texts are NFC-normalised, their whitespace collapsed and lower-cased, split GPT-2 style
into byte-level words and merged by BPE (the `tokenizers` library). A sequence reads
`sot t1 t2 ... eot pad pad ...`, truncated so that sot and eot always fit in
`context_length`. The ids follow CLIP's layout: padding is 0 and the two markers come
last, sot at `vocab_size - 2` and eot at `vocab_size - 1`, so eot is the largest id of
every row and the text tower reads its features at `tokens.argmax(-1)` (open_clip's
`pool_type="argmax"`).

The whole convention lives in the saved `tokenizer.json` (normaliser, byte-level
pre-tokeniser, the sot/eot template, truncation and padding), so any reader of that file
(`tokenizers.Tokenizer.from_file`) gets the same ids as training did.

Training is deterministic: the captions are fed in a fixed order on one thread
(`TOKENIZERS_PARALLELISM=false`, set at import). That also makes the tokenizer safe in
forked loader workers: a Rust thread pool started before a fork would deadlock them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
from tokenizers.processors import TemplateProcessing
from tokenizers.trainers import BpeTrainer

PAD = "<pad>"
SOT = "<start_of_text>"
EOT = "<end_of_text>"
PAD_ID = 0
MIN_VOCAB = 256 + 3  # the byte alphabet and the three special tokens


def clip_normalizer() -> normalizers.Normalizer:
    """NFC, whitespace runs to one space, trimmed, lower-cased (CLIP's text cleaning)."""
    return normalizers.Sequence(
        [
            normalizers.NFC(),
            normalizers.Replace(Regex(r"\s+"), " "),
            normalizers.Strip(),
            normalizers.Lowercase(),
        ]
    )


def train_bpe(texts: Iterable[str], vocab_size: int, context_length: int) -> BpeTokenizer:
    """Learn at most `vocab_size` ids (markers included) from `texts`, in their order."""
    if vocab_size < MIN_VOCAB:
        raise ValueError(f"vocab_size must be at least {MIN_VOCAB}, got {vocab_size}")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = clip_normalizer()
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = BpeTrainer(
        vocab_size=vocab_size - 2,  # room for sot and eot, added after the merges
        special_tokens=[PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    tokenizer.add_special_tokens([SOT, EOT])  # the last two ids: eot is the largest
    return BpeTokenizer(configure(tokenizer, context_length))


def configure(tokenizer: Tokenizer, context_length: int) -> Tokenizer:
    """Add the sot/eot template, truncation and padding to `context_length`."""
    if context_length < 2:
        raise ValueError(f"context_length must be at least 2, got {context_length}")
    sot, eot = tokenizer.token_to_id(SOT), tokenizer.token_to_id(EOT)
    tokenizer.post_processor = TemplateProcessing(
        single=f"{SOT} $A {EOT}", special_tokens=[(SOT, sot), (EOT, eot)]
    )
    tokenizer.enable_truncation(max_length=context_length)
    tokenizer.enable_padding(pad_id=PAD_ID, pad_token=PAD, length=context_length)
    return tokenizer


class BpeTokenizer:
    """Turns texts into `[N, context_length]` id tensors: sot, BPE ids, eot, padding."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        sot, eot = tokenizer.token_to_id(SOT), tokenizer.token_to_id(EOT)
        size = tokenizer.get_vocab_size()
        if tokenizer.token_to_id(PAD) != PAD_ID or (sot, eot) != (size - 2, size - 1):
            raise ValueError("not a CLIP-layout tokenizer: pad must be 0, sot and eot last")
        padding = tokenizer.padding
        if padding is None or padding["length"] is None:
            raise ValueError("the tokenizer pads to no fixed context length")
        self.tokenizer = tokenizer
        self.vocab_size = size
        self.context_length = int(padding["length"])
        self.sot_id, self.eot_id = sot, eot

    @classmethod
    def from_json(cls, text: str) -> BpeTokenizer:
        return cls(Tokenizer.from_str(text))

    def to_json(self) -> str:
        return str(self.tokenizer.to_str())

    def encode(self, text: str) -> list[int]:
        """Ids of one text without padding: sot, tokens, eot."""
        encoding = self.tokenizer.encode(text)
        return [i for i, keep in zip(encoding.ids, encoding.attention_mask, strict=True) if keep]

    def decode(self, ids: list[int]) -> str:
        return str(self.tokenizer.decode(ids, skip_special_tokens=True)).strip()

    def __call__(self, texts: list[str]) -> torch.Tensor:
        encodings = self.tokenizer.encode_batch(list(texts))
        return torch.tensor([e.ids for e in encodings], dtype=torch.long).reshape(
            len(texts), self.context_length
        )
