"""A hashed-word tokenizer: every word falls into one of `vocab_size` buckets.

Text is lowercased and split into words on anything that is not a letter or digit; each
word maps to a bucket by a stable hash (blake2b, the same in every process and on every
machine, unlike Python's salted `hash()`). Ids 0, 1 and 2 are reserved for padding, start
and end of text, so a sequence reads `sot w1 w2 ... eot pad pad ...`. Words that share a
bucket share an embedding; with a few thousand buckets and short alt texts that is a small
loss. A learned BPE tokenizer (CLIP's) is a later issue; it must keep this call signature.
"""

from __future__ import annotations

import hashlib
import re

import torch

PAD_ID = 0
SOT_ID = 1
EOT_ID = 2
RESERVED_IDS = 3

_WORD = re.compile(r"[^\W_]+")  # runs of letters and digits, in any script


def split_words(text: str) -> list[str]:
    """The lowercased words of `text`, split on every non-alphanumeric character."""
    return _WORD.findall(text.lower())


def word_bucket(word: str, vocab_size: int) -> int:
    """The id of `word`: a stable hash into the buckets above the reserved ids."""
    digest = hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest()
    return RESERVED_IDS + int.from_bytes(digest, "little") % (vocab_size - RESERVED_IDS)


class HashTokenizer:
    """Turns texts into `[N, context_length]` id tensors: sot, word buckets, eot, padding."""

    def __init__(self, vocab_size: int, context_length: int) -> None:
        if vocab_size <= RESERVED_IDS:
            raise ValueError(f"vocab_size must exceed {RESERVED_IDS}, got {vocab_size}")
        if context_length < 2:
            raise ValueError(f"context_length must be at least 2, got {context_length}")
        self.vocab_size = vocab_size
        self.context_length = context_length

    def encode(self, text: str) -> list[int]:
        """Ids of one text, truncated so that sot and eot always fit."""
        words = split_words(text)[: self.context_length - 2]
        return [SOT_ID, *(word_bucket(w, self.vocab_size) for w in words), EOT_ID]

    def __call__(self, texts: list[str]) -> torch.Tensor:
        tokens = torch.full((len(texts), self.context_length), PAD_ID, dtype=torch.long)
        for row, text in enumerate(texts):
            ids = self.encode(text)
            tokens[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        return tokens
