from __future__ import annotations

import io
import random
import time
from pathlib import Path

import imagehash
import numpy as np
import pytest
from PIL import Image

from core.record import STATUS_SUCCESS, Pair
from filters import neardup
from filters.neardup import (
    NearDupIndex,
    band_keys,
    band_layout,
    greedy_drops,
    hamming,
    near_duplicate_slots,
    near_pairs,
    remove_near_duplicates,
    visit_order,
)

CODE_MASK_U64 = (1 << 64) - 1


def flip_bits(code: int, count: int, rng: random.Random) -> int:
    for bit in rng.sample(range(64), count):
        code ^= 1 << bit
    return code


def brute_force(codes: dict[str, int], code: int, radius: int) -> list[tuple[str, int]]:
    found = [(key, hamming(code, other)) for key, other in codes.items()]
    return sorted((item for item in found if item[1] <= radius), key=lambda i: (i[1], i[0]))


@pytest.mark.parametrize("bands", [1, 4, 5, 7, 64])
def test_band_layout_covers_64_bits(bands: int) -> None:
    layout = band_layout(bands)
    assert len(layout) == bands
    covered = 0
    for shift, mask in layout:
        assert covered & (mask << shift) == 0
        covered |= mask << shift
    assert covered == (1 << 64) - 1


@pytest.mark.parametrize("radius", [3, 4, 6])
def test_query_is_exact_against_brute_force(radius: int) -> None:
    rng = random.Random(radius)
    codes = {f"r{i}": rng.getrandbits(64) for i in range(2000)}
    queries = []
    for i, base in enumerate(list(codes.values())[:60]):  # planted neighbours at 0..radius+1
        for distance in range(radius + 2):
            codes[f"p{i}-{distance}"] = flip_bits(base, distance, rng)
        queries.append(base)
    queries += [rng.getrandbits(64) for _ in range(40)]
    index = NearDupIndex(radius)
    for key, code in codes.items():
        index.add(key, code)
    assert len(index.layout) == radius + 1
    for code in queries:
        assert index.query(code) == brute_force(codes, code, radius)
        assert index.query(code, radius - 1) == brute_force(codes, code, radius - 1)
    planted = index.query(queries[0])
    assert sorted(d for _, d in planted) == [0, *range(radius + 1)]


def test_query_radius_above_index_is_refused() -> None:
    with pytest.raises(ValueError, match="radius"):
        NearDupIndex(3).query(0, 4)


def hashed_pairs(codes: list[int]) -> list[Pair]:
    return [
        Pair(url=f"http://img/{i}.jpg", caption=f"image {i}", status=STATUS_SUCCESS, phash=code)
        for i, code in enumerate(codes)
    ]


def test_remove_near_duplicates_keeps_first_by_uid() -> None:
    rng = random.Random(11)
    base, other = rng.getrandbits(64), rng.getrandbits(64)
    codes = [base, flip_bits(base, 2, rng), flip_bits(base, 3, rng), flip_bits(base, 9, rng), other]
    pairs = hashed_pairs(codes)
    out = list(remove_near_duplicates(pairs, radius=3))
    assert len(out) == len(pairs)
    cluster = [p for p in out if p.phash is not None and hamming(p.phash, base) <= 3]
    first = min(cluster, key=lambda p: p.uid)
    assert [p.uid for p in cluster if p.kept] == [first.uid]
    assert all(p.drop_reason == "neardup:phash" for p in cluster if p is not first)
    assert out[3].kept and out[4].kept


def test_remove_near_duplicates_independent_of_order() -> None:
    rng = random.Random(5)
    bases = [rng.getrandbits(64) for _ in range(50)]
    codes = [flip_bits(rng.choice(bases), rng.randrange(5), rng) for _ in range(400)]
    pairs = hashed_pairs(codes)
    expected = {p.uid for p in remove_near_duplicates(pairs, 3) if p.kept}
    for seed in range(3):
        shuffled = pairs[:]
        random.Random(seed).shuffle(shuffled)
        assert {p.uid for p in remove_near_duplicates(shuffled, 3) if p.kept} == expected
    kept_codes = [p.phash for p in pairs if p.uid in expected]
    for i, a in enumerate(kept_codes):  # no two kept codes are near duplicates
        assert all(hamming(a or 0, b or 0) > 3 for b in kept_codes[i + 1 :])


def test_unhashed_and_dropped_pairs_pass() -> None:
    pairs = hashed_pairs([7, 7, 7])
    pairs[0] = pairs[0].dropped("image:too_small")
    pairs[1].phash = None
    out = list(remove_near_duplicates(pairs))
    assert out[0] is pairs[0] and out[1] is pairs[1] and out[2].kept


def phash_code(image: Image.Image) -> int:
    return int(str(imagehash.phash(image)), 16)


def test_real_photos_recompressed_and_resized_are_near(shared_data: Path) -> None:
    folder = shared_data / "images" / "img2dataset_resize_test_image"
    photos = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    assert len(photos) >= 3
    originals, copies = [], []
    for path in photos:
        with Image.open(path) as image:
            rgb = image.convert("RGB")
        small = rgb.resize((max(1, rgb.width // 2), max(1, rgb.height // 2)))
        buffer = io.BytesIO()
        small.save(buffer, "JPEG", quality=60)
        buffer.seek(0)
        originals.append(phash_code(rgb))
        copies.append(phash_code(Image.open(buffer)))
    for original, copy in zip(originals, copies, strict=True):
        assert hamming(original, copy) <= 3
    pairs = hashed_pairs(originals + copies)
    kept = [p for p in remove_near_duplicates(pairs, 3) if p.kept]
    assert len(kept) == len(set(originals))  # distinct photos survive once


# ---- columnar search -----------------------------------------------------------------


def brute_force_pairs(ids: np.ndarray, codes: np.ndarray, radius: int) -> set[tuple[int, int]]:
    found = set()
    for i in range(len(ids)):
        distance = np.bitwise_count(codes[i] ^ codes[i + 1 :])
        for j in np.flatnonzero(distance <= radius) + i + 1:
            a, b = int(ids[i]), int(ids[j])
            if a != b:
                found.add((min(a, b), max(a, b)))
    return found


def planted_codes(count: int, radius: int, seed: int) -> np.ndarray:
    """Random codes, then near copies of some of them at distances 0..radius+1."""
    rng = random.Random(seed)
    codes = [rng.getrandbits(64) for _ in range(count)]
    for base in codes[: count // 10]:
        codes += [flip_bits(base, rng.randrange(radius + 2), rng) for _ in range(3)]
    codes += [codes[0]] * 5  # a small run of identical codes
    return np.array(codes, dtype=np.uint64)


def old_near_duplicate_slots(codes: list[int], radius: int) -> set[int]:
    """The dict-based greedy loop `near_duplicate_slots` ran before (visit = list order)."""
    index = NearDupIndex(radius)
    dropped = set()
    for slot, code in enumerate(codes):
        if index.query(code):
            dropped.add(slot)
        else:
            index.add(str(slot), code)
    return dropped


def test_band_keys_one_entry_per_code_and_band() -> None:
    codes = np.array([0, CODE_MASK_U64, 0x0123456789ABCDEF], dtype=np.uint64)
    band, value, row = band_keys(codes, 3)
    assert band.dtype == np.int64 and value.dtype == np.uint64 and row.dtype == np.int64
    assert band.tolist() == [0] * 3 + [1] * 3 + [2] * 3 + [3] * 3
    assert row.tolist() == [0, 1, 2] * 4
    assert value[2::3].tolist() == [0xCDEF, 0x89AB, 0x4567, 0x0123]
    assert value[1::3].tolist() == [0xFFFF] * 4
    assert len(band_keys(codes, 6)[0]) == 3 * 7


@pytest.mark.parametrize("radius", [0, 1, 3, 4, 6])
def test_near_pairs_is_exact_against_brute_force(radius: int) -> None:
    codes = planted_codes(1500, radius, seed=radius)
    ids = np.arange(len(codes), dtype=np.int64) * 7 - 50  # any int64 ids, not positions
    got = near_pairs(ids, codes, radius)
    assert got.dtype == np.int64 and got.shape[1] == 2
    assert {tuple(pair) for pair in got.tolist()} == brute_force_pairs(ids, codes, radius)
    assert len({tuple(pair) for pair in got.tolist()}) == len(got)  # each pair once
    assert np.all(got[:, 0] < got[:, 1])


def test_near_pairs_repeated_ids_and_identical_codes() -> None:
    codes = np.array([5, 5, 5, 7, 1 << 40, 5], dtype=np.uint64)
    ids = np.array([1, 1, 2, 3, 4, 9], dtype=np.int64)  # id 1 holds two codes
    got = {tuple(pair) for pair in near_pairs(ids, codes, 1).tolist()}
    assert got == {(1, 2), (1, 3), (2, 3), (1, 9), (2, 9), (3, 9)}
    assert near_pairs(ids[:0], codes[:0], 3).shape == (0, 2)


def test_near_pairs_big_run_of_identical_codes_is_fast() -> None:
    rng = np.random.default_rng(0)
    codes = np.concatenate(
        [np.full(2000, 12345, np.uint64), rng.integers(0, 2**63, 20_000, np.uint64)]
    )
    ids = np.arange(len(codes), dtype=np.int64)
    started = time.perf_counter()
    pairs = near_pairs(ids, codes, 3)
    assert len(pairs) >= 2000 * 1999 // 2
    assert time.perf_counter() - started < 10


def sequential_drops(ids: list[int], pairs: np.ndarray) -> list[int]:
    neighbours: dict[int, set[int]] = {i: set() for i in ids}
    for a, b in pairs.tolist():
        neighbours[a].add(b)
        neighbours[b].add(a)
    kept: set[int] = set()
    dropped = []
    for node in sorted(ids):
        if any(n < node and n in kept for n in neighbours[node]):
            dropped.append(node)
        else:
            kept.add(node)
    return dropped


@pytest.mark.parametrize("rounds", [0, 1, 64])
def test_greedy_drops_equals_sequential_visit(rounds: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(neardup, "GREEDY_ROUNDS", rounds)
    codes = planted_codes(800, 3, seed=9)
    ids = np.arange(len(codes), dtype=np.int64)
    pairs = near_pairs(ids, codes, 3)
    assert greedy_drops(ids, pairs).tolist() == sequential_drops(ids.tolist(), pairs)
    chain = np.array([[i, i + 1] for i in range(200)], dtype=np.int64)  # a path: 0-1-2-...
    assert greedy_drops(np.arange(201), chain).tolist() == list(range(1, 201, 2))
    shuffled = chain[np.random.default_rng(1).permutation(len(chain))][:, ::-1]
    assert greedy_drops(np.arange(201), shuffled).tolist() == list(range(1, 201, 2))
    assert greedy_drops(ids, np.zeros((0, 2), np.int64)).tolist() == []


def test_greedy_drops_refuses_unknown_ids() -> None:
    with pytest.raises(ValueError, match="ids"):
        greedy_drops(np.array([1, 2]), np.array([[1, 3]]))


def test_slots_equal_old_loop() -> None:
    for seed in range(3):
        codes = planted_codes(600, 3, seed).tolist()
        pairs = hashed_pairs(codes)
        order = sorted(range(len(pairs)), key=lambda i: visit_order(pairs[i]))
        old = {order[slot] for slot in old_near_duplicate_slots([codes[i] for i in order], 3)}
        assert near_duplicate_slots(pairs, 3) == old
