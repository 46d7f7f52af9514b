from __future__ import annotations

import io
import random
from pathlib import Path

import imagehash
import pytest
from PIL import Image

from filters.neardup import NearDupIndex, band_layout, hamming, remove_near_duplicates
from pipeline.record import STATUS_SUCCESS, Pair


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
