"""Span hashes, the numpy hash table and the byte comparison the matcher is built on."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from filters.spanhash import (
    ABSENT,
    EMPTY,
    HashTable,
    padded,
    same_bytes,
    span_keys,
    text_bytes,
)


def test_span_keys() -> None:
    text = b"a dog, a dogma; the dogmatic dogmatics and the dogmatic"
    data = padded(np.frombuffer(text, dtype=np.uint8))
    words = [(m, m + len(w)) for m, w in ((text.find(w, 0), w) for w in text.split(b" "))]
    spans = [(b, e) for b, e in words] + [(0, 0), (2, 2), (0, 5), (len(text) - 8, len(text))]
    begin = np.array([b for b, _ in spans])
    end = np.array([e for _, e in spans])
    keys = span_keys(data, begin, end, 0x100000001B3)
    for (b1, e1), k1 in zip(spans, keys, strict=True):
        for (b2, e2), k2 in zip(spans, keys, strict=True):
            assert (k1 == k2) == (text[b1:e1] == text[b2:e2]), (text[b1:e1], text[b2:e2])
    short = [k for (b, e), k in zip(spans, keys, strict=True) if e - b <= 7]
    assert all(int(k) >> 56 <= 7 for k in short)  # a short span is its own key
    assert int(keys[0]) == ord("a") | 1 << 56
    assert keys[len(words)] == keys[len(words) + 1] == 0  # every empty span alike
    last = text.rfind(b"dogmatic")
    again = span_keys(data, np.array([last]), np.array([last + 8]), 0x100000001B3)
    first = text.find(b"dogmatic")
    assert again == span_keys(data, np.array([first]), np.array([first + 8]), 0x100000001B3)


def test_text_bytes_of_sliced_and_large_arrays() -> None:
    data, offsets = text_bytes(pa.array(["ab", "", "cde", None], type=pa.large_string()).slice(1))
    assert bytes(data) == b"cde" and offsets.tolist() == [0, 0, 3, 3]
    data, offsets = text_bytes(pa.array([], type=pa.string()))
    assert len(data) == 0 and offsets.tolist() == [0]


@pytest.mark.parametrize("count", [0, 1, 7, 5_000])
def test_hash_table_finds_every_key_and_nothing_else(count: int) -> None:
    rng = np.random.default_rng(count)
    keys = np.unique(rng.integers(0, 1 << 62, count * 2, dtype=np.int64).astype(np.uint64))
    held, other = keys[: len(keys) // 2], keys[len(keys) // 2 :]
    # small keys share their top bits: Fibonacci hashing must still spread them
    held = np.concatenate([held, np.arange(1, 50, dtype=np.uint64)])
    table = HashTable(held, np.arange(len(held)))
    assert table.lookup(held).tolist() == list(range(len(held)))
    assert (table.lookup(other) == ABSENT).all()
    assert table.filled() == len(held) <= 5 / 8 * len(table.keys)
    with pytest.raises(ValueError, match="empty-slot"):
        HashTable(np.array([EMPTY]), np.array([0]))


def test_same_bytes_compares_every_byte() -> None:
    data = padded(np.frombuffer(b"the quick brown fox jumps over", dtype=np.uint8))
    other = padded(np.frombuffer(b"quick brown foxes; the", dtype=np.uint8))
    begin = np.array([4, 4, 4, 0, 0, 16])
    other_begin = np.array([0, 0, 0, 19, 19, 12])
    lengths = np.array([5, 15, 17, 3, 4, 3])
    # "quick", "quick brown fox", "quick brown fox j" vs "...fox", "the", "the " vs "the",
    # "fox" vs "fox"
    assert same_bytes(data, begin, other, other_begin, lengths).tolist() == [
        True, True, False, True, False, True,
    ]  # fmt: skip
