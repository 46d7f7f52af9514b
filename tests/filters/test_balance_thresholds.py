"""Balancing with a threshold per entry (worldwide mode) and MetaCLIP's expected size."""

from __future__ import annotations

from hashlib import md5

import numpy as np
import pyarrow as pa
import pytest

from filters.balance import EntryIndex, balance_mask, entry_probabilities, expected_kept


def test_entry_probabilities_with_one_t_or_a_t_per_entry() -> None:
    counts = np.array([10, 40, 0, 5])
    assert entry_probabilities(counts, 20).tolist() == [1.0, 0.5, 1.0, 1.0]
    per_entry = np.array([5, 20, 1, 1])
    assert entry_probabilities(counts, per_entry).tolist() == [0.5, 0.5, 1.0, 0.2]


def test_expected_kept_on_a_worked_example() -> None:
    index = EntryIndex(["a", "b", "c"])
    counts = np.array([40, 40, 3])  # t = 20: p_a = p_b = 0.5, p_c = 1
    matched = pa.array([["a", "b"], ["a"], [], ["a", "a"], ["c", "a"], ["zzz"]])
    # 1 - 0.5 * 0.5, 0.5, nothing, "a" once: 0.5, "c" sure: 1, not an entry: kept: 1
    assert expected_kept(matched, counts, index, 20) == pytest.approx(0.75 + 0.5 + 0.5 + 1 + 1)
    uids = pa.array([md5(str(i).encode()).hexdigest() for i in range(6)])
    kept = balance_mask(uids, matched, counts, index, 20, seed=0)
    assert not kept[2] and kept[4] and kept[5]  # the sure rows are kept, the empty one not


def test_a_per_entry_t_changes_only_its_entries() -> None:
    index = EntryIndex(["head", "other"])
    counts = np.array([1000, 1000])
    matched = pa.array([["head"]] * 2000 + [["other"]] * 2000)
    uids = pa.array([md5(str(i).encode()).hexdigest() for i in range(4000)])
    kept = balance_mask(uids, matched, counts, index, np.array([100, 1000]), seed=1)
    assert kept[2000:].all()  # t = c: every "other" pair kept
    assert 120 < kept[:2000].sum() < 280  # p = 0.1 of 2000
