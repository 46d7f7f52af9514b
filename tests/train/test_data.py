from __future__ import annotations

import dataclasses
import functools
import io
import itertools
from pathlib import Path

import pytest
import torch
import webdataset as wds
from PIL import Image
from torch.utils.data import DataLoader

from pipeline.io import write_json
from tests.train.colour_data import TINY, write_colour_shards
from train.data import (
    StreamSlot,
    batches_per_epoch,
    count_samples,
    count_shard_samples,
    make_loader,
    resolve_shards,
    shard_stream,
)

Batches = list[tuple[torch.Tensor, torch.Tensor]]


def load(
    shards: list[str], epoch: int = 0, rank: int = 0, world: int = 1, start: int = 0, **changes: int
) -> Batches:
    """All batches of one epoch of `rank`, with `changes` made to the tiny config."""
    config = dataclasses.replace(TINY, **changes)  # type: ignore[arg-type]
    return list(make_loader(shards, config, rank, world, epoch, start_batch=start))


def same(
    a: list[tuple[torch.Tensor, torch.Tensor]], b: list[tuple[torch.Tensor, torch.Tensor]]
) -> bool:
    return len(a) == len(b) and all(
        torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) for x, y in zip(a, b, strict=True)
    )


# ---------------------------------------------------------------- finding shards


def test_resolve_folder_lists_only_finished_shards(tmp_path: Path) -> None:
    shards = write_colour_shards(tmp_path, shards=3, per_shard=2)
    (tmp_path / "00001.done").unlink()
    (tmp_path / "00003.tar").write_bytes(b"")  # being written: no marker yet
    assert resolve_shards(tmp_path) == [shards[0], shards[2]]


def test_resolve_brace_pattern_and_list_file(tmp_path: Path) -> None:
    assert resolve_shards(f"{tmp_path}/{{00000..00002}}.tar") == [
        f"{tmp_path}/{i:05d}.tar" for i in range(3)
    ]
    listing = tmp_path / "shards.txt"
    listing.write_text("# train shards\n00001.tar\n\n/abs/00007.tar\n")
    assert resolve_shards(listing) == [str(tmp_path / "00001.tar"), "/abs/00007.tar"]
    with pytest.raises(FileNotFoundError):
        resolve_shards(tmp_path / "missing")


def test_counts_come_from_sizes_json(tmp_path: Path) -> None:
    shards = write_colour_shards(tmp_path, shards=3, per_shard=5)
    write_json(tmp_path / "sizes.json", {"00000.tar": 5, "00001.tar": 5, "00002.tar": 7})
    assert count_samples(tmp_path) == 17
    assert count_shard_samples(shards[1:]) == 12


# ---------------------------------------------------------------- epochs in samples


def test_an_epoch_is_a_number_of_samples(colour_shards: list[str]) -> None:
    # 128 samples / batch 16 = 8 batches, whatever the shards hold
    assert len(load(colour_shards)) == 8
    assert batches_per_epoch(colour_shards, TINY, world_size=2) == 4
    config = dataclasses.replace(TINY, samples_per_epoch=400)  # more than one pass over files
    assert len(list(make_loader(colour_shards, config, 0, 1, 0))) == 25


def test_batches_hold_normalised_images_and_tokens(colour_shards: list[str]) -> None:
    images, tokens = load(colour_shards)[0]
    assert images.shape == (16, 3, 32, 32) and images.dtype == torch.float32
    assert tokens.shape == (16, TINY.context_length) and tokens.dtype == torch.long
    assert images.min() < -1.0 and images.max() > 1.0  # CLIP normalisation, not [0, 1]


def test_same_seed_same_order_other_epoch_or_seed_other_order(colour_shards: list[str]) -> None:
    first = load(colour_shards, epoch=0)
    assert same(first, load(colour_shards, epoch=0))
    assert not same(first, load(colour_shards, epoch=1))
    assert not same(first, load(colour_shards, epoch=0, seed=1))


def test_resume_mid_epoch_continues_exactly_with_two_workers(colour_shards: list[str]) -> None:
    full = load(colour_shards, workers=2)
    assert len(full) == 8
    assert same(load(colour_shards, workers=2, start=3), full[3:])


def test_a_corrupt_image_is_skipped_and_the_epoch_still_full(tmp_path: Path) -> None:
    shards = write_colour_shards(tmp_path, shards=2, per_shard=16)
    with wds.TarWriter(shards[1]) as sink:  # rewrite shard 1 with one broken image
        for index in range(16):
            image = io.BytesIO()
            Image.new("RGB", (8, 8), (index, 0, 0)).save(image, format="JPEG")
            data = b"not a jpeg" if index == 0 else image.getvalue()
            sink.write({"__key__": f"00001{index:04d}", "jpg": data, "txt": "red"})
    with pytest.warns(Warning):
        assert len(load(shards)) == 2


# ---------------------------------------------------------------- splitting


def shard_urls(shards: list[str], rank: int, world: int, workers: int, n: int) -> list[str]:
    """The first `n` shards each worker of `rank` opens, read through real worker processes."""
    stream = functools.partial(shard_stream, shards, StreamSlot(0, 0, rank, world))
    pipeline = wds.DataPipeline(stream, lambda src: itertools.islice(src, n))
    loader = DataLoader(pipeline, batch_size=None, num_workers=workers)
    return [item["url"] for item in loader]


def test_two_ranks_by_two_workers_open_disjoint_shards(tmp_path: Path) -> None:
    shards = [f"{tmp_path}/{i:05d}.tar" for i in range(8)]
    seen = [shard_urls(shards, rank, 2, 2, n=2) for rank in range(2)]
    assert all(len(urls) == 4 for urls in seen)
    assert sorted(seen[0] + seen[1]) == sorted(shards)  # one pass: each shard exactly once


def test_fewer_shards_than_ranks_times_workers_never_starves(tmp_path: Path) -> None:
    shards = [f"{tmp_path}/{i:05d}.tar" for i in range(3)]
    seen = [shard_urls(shards, rank, 2, 2, n=3) for rank in range(2)]
    assert all(len(urls) == 6 for urls in seen)
    assert set(seen[0] + seen[1]) == set(shards)


def colours(batches: Batches) -> list[tuple[float, ...]]:
    """The (normalised) colour of every solid-colour image in the batches, sorted."""
    return sorted(
        tuple(round(v, 3) for v in image[:, 0, 0].tolist()) for b in batches for image in b[0]
    )


def test_two_ranks_split_one_epoch_between_them(colour_shards: list[str]) -> None:
    # without a shuffle buffer each rank reads exactly its two shards of the first round
    rank0 = load(colour_shards, rank=0, world=2, shuffle_buffer=0)
    rank1 = load(colour_shards, rank=1, world=2, shuffle_buffer=0)
    assert len(rank0) == len(rank1) == 4
    assert colours(rank0 + rank1) == colours(load(colour_shards, shuffle_buffer=0))
    assert colours(rank0) != colours(rank1)
