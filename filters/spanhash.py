"""Keys for byte spans, computed for many spans at once, and a numpy hash table for them.

`span_keys` gives every span [begin, end) of a `padded` byte buffer (a run of texts, as
Arrow stores a string column) a 64-bit key. A span of up to 7 bytes is its own key: its
bytes, little-endian, with its length in the top byte; two such keys are equal exactly
when the spans are. A longer span is keyed by a polynomial hash of its 8-byte words (each
mixed by splitmix64's finaliser; base `base`, mod 2^64; its length added and the sum mixed
again) with the top five bits set, so it never equals a short span's key; unequal long
spans may collide, so whoever needs exactness compares their bytes (`same_bytes`). Both
read the buffer eight bytes at a time, with no pass over the whole buffer. `HashTable` is
an open-addressing table (linear probing, at most 5/8 full) of distinct 64-bit keys with
an int32 value each, built and probed a whole array of keys at a time.
"""

from __future__ import annotations

import math

import numpy as np

ABSENT = -2  # what `HashTable.lookup` gives for a key it does not hold
WORD = 8  # bytes read at once
SHORT = WORD - 1  # the longest span that is its own key
# LOW_BYTES[n]: the mask of a little-endian word's first n bytes.
LOW_BYTES = np.array([(1 << (8 * n)) - 1 for n in range(WORD + 1)], dtype=np.uint64)
LONG = np.uint64(0xF8 << 56)  # set in every long span's key
EMPTY = np.uint64((1 << 64) - 1)  # what an empty slot of a `HashTable` holds
FIBONACCI = np.uint64(0x9E3779B97F4A7C15)  # 2^64 / golden ratio, odd
MIX_1, MIX_2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)  # splitmix64


def text_bytes(array: object) -> tuple[np.ndarray, np.ndarray]:
    """(data, offsets) of an Arrow string or large_string array, rebased to start at 0."""
    validity, offsets_buffer, data_buffer = array.buffers()  # type: ignore[attr-defined]
    del validity
    wide = str(array.type) == "large_string"  # type: ignore[attr-defined]
    offsets = np.frombuffer(offsets_buffer, dtype=np.int64 if wide else np.int32)
    start = array.offset  # type: ignore[attr-defined]
    offsets = offsets[start : start + len(array) + 1].astype(np.int64)  # type: ignore[arg-type]
    if data_buffer is None or not len(offsets) or offsets[-1] == offsets[0]:
        return np.zeros(0, dtype=np.uint8), offsets - (offsets[0] if len(offsets) else 0)
    data = np.frombuffer(data_buffer, dtype=np.uint8)[offsets[0] : offsets[-1]]
    return data, offsets - offsets[0]


def padded(data: np.ndarray) -> np.ndarray:
    """`data` with `WORD` zero bytes after it, so every byte starts a full word."""
    return np.concatenate([data, np.zeros(WORD, dtype=np.uint8)])


def words_at(data: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """The `WORD` bytes from each start of a `padded` buffer, as little-endian uint64."""
    words = np.ndarray((len(data) - WORD + 1,), dtype="<u8", buffer=data, strides=(1,))
    return words[starts]


def masked_words(data: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The first min(length, 8) bytes from each start, the rest of the word zero."""
    return words_at(data, starts) & LOW_BYTES[np.minimum(lengths, WORD)]


def span_keys(data: np.ndarray, begin: np.ndarray, end: np.ndarray, base: int) -> np.ndarray:
    """The key of every span [begin, end) of the `padded` buffer `data`."""
    lengths = (end - begin).astype(np.int64)
    keys = masked_words(data, begin, lengths) | (lengths.astype(np.uint64) << np.uint64(56))
    long = np.flatnonzero(lengths > SHORT)
    if len(long):
        keys[long] = long_keys(data, begin[long], lengths[long], np.uint64(base | 1))
    return keys


def mixed(values: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, a bijection of uint64 that spreads every bit over all."""
    values = values ^ (values >> np.uint64(31))
    values = values * MIX_1
    values = values ^ (values >> np.uint64(27))
    values = values * MIX_2
    return values ^ (values >> np.uint64(31))


def long_keys(
    data: np.ndarray, begin: np.ndarray, lengths: np.ndarray, base: np.uint64
) -> np.ndarray:
    """Horner's rule over each span's mixed words (the last one masked), then its length,
    mixed again."""
    sums = np.zeros(len(lengths), dtype=np.uint64)
    todo = np.arange(len(lengths))
    step = 0
    while len(todo):
        word = mixed(masked_words(data, begin[todo] + step, lengths[todo] - step))
        sums[todo] = sums[todo] * base + word
        step += WORD
        todo = todo[lengths[todo] > step]
    return mixed(sums * base + lengths.astype(np.uint64)) | LONG


def same_bytes(
    data: np.ndarray, begin: np.ndarray, other: np.ndarray, other_begin: np.ndarray,
    lengths: np.ndarray,
) -> np.ndarray:  # fmt: skip
    """Where data[begin : begin + length] equals other[other_begin : other_begin + length];
    both buffers `padded`. Compared eight bytes at a time, the last word masked to the
    bytes that belong to the span."""
    same = np.ones(len(lengths), dtype=bool)
    longest = int(lengths.max()) if len(lengths) else 0
    for step in range(0, longest, WORD):
        live = np.flatnonzero(same & (lengths > step))
        mine = masked_words(data, begin[live] + step, lengths[live] - step)
        theirs = masked_words(other, other_begin[live] + step, lengths[live] - step)
        same[live] = mine == theirs
    return same


class HashTable:
    """Distinct uint64 keys (never `EMPTY`), each with an int32 value; probed a whole array
    at a time. A slot holding `EMPTY` ends a probe."""

    def __init__(self, keys: np.ndarray, values: np.ndarray) -> None:
        keys = keys.astype(np.uint64)
        if (keys == EMPTY).any():
            raise ValueError("a key equals the empty-slot marker")
        self.bits = max(4, math.ceil(math.log2(max(len(keys), 1) * 1.6)))
        size = 1 << self.bits  # at most 5/8 full: a small table stays in the cache
        self.mask = size - 1
        self.keys = np.full(size, EMPTY, dtype=np.uint64)
        self.values = np.full(size, ABSENT, dtype=np.int32)
        self.insert(keys, values.astype(np.int32))

    def home(self, keys: np.ndarray) -> np.ndarray:
        """The first slot to try: the top bits of key x `FIBONACCI` (Fibonacci hashing
        spreads even small keys, such as the hash of a one-byte span, over the table)."""
        return ((keys * FIBONACCI) >> np.uint64(64 - self.bits)).astype(np.int64)

    def insert(self, keys: np.ndarray, values: np.ndarray) -> None:
        pending = np.arange(len(keys))
        slots = self.home(keys)
        while len(pending):
            free = self.keys[slots[pending]] == EMPTY
            wanted, first = np.unique(slots[pending[free]], return_index=True)
            winners = pending[free][first]
            self.keys[wanted], self.values[wanted] = keys[winners], values[winners]
            placed = np.zeros(len(keys), dtype=bool)
            placed[winners] = True
            pending = pending[~placed[pending]]
            slots[pending] = (slots[pending] + 1) & self.mask

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """The value of every key (int32), `ABSENT` for a key not held."""
        slots = self.home(keys)
        stored = self.keys[slots]
        hit = stored == keys
        out = np.where(hit, self.values[slots], np.int32(ABSENT))
        todo = np.flatnonzero(~hit & (stored != EMPTY))
        at = (slots[todo] + 1) & self.mask
        while len(todo):  # the few keys whose home slot another key holds
            stored = self.keys[at]
            hit = stored == keys[todo]
            out[todo[hit]] = self.values[at[hit]]
            more = ~hit & (stored != EMPTY)
            todo, at = todo[more], (at[more] + 1) & self.mask
        return out

    def filled(self) -> int:
        return int(np.count_nonzero(self.keys != EMPTY))
