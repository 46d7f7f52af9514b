from __future__ import annotations

import dataclasses
import functools
import io
import itertools
import traceback
from pathlib import Path

import pytest
import torch
import webdataset as wds
from PIL import Image
from torch.utils.data import DataLoader

from core.config import TrainConfig
from core.io import write_json
from tests.train.colour_data import TINY, colour_tokenizer, write_colour_shards
from train.data import (
    Handler,
    StreamSlot,
    batches_per_epoch,
    count_samples,
    count_shard_samples,
    make_loader,
    read_captions,
    resolve_shards,
    shard_stream,
)

Batches = list[tuple[torch.Tensor, torch.Tensor]]


def loader(
    shards: list[str],
    config: TrainConfig,
    rank: int = 0,
    world: int = 1,
    epoch: int = 0,
    *,
    start_batch: int = 0,
    handler: Handler = wds.warn_and_continue,
) -> DataLoader:
    slot = StreamSlot(config.seed, epoch, rank, world, start_batch)
    return make_loader(shards, config, colour_tokenizer(), slot, handler)


def load(
    shards: list[str], epoch: int = 0, rank: int = 0, world: int = 1, start: int = 0, **changes: int
) -> Batches:
    """All batches of one epoch of `rank`, with `changes` made to the tiny config."""
    config = dataclasses.replace(TINY, **changes)  # type: ignore[arg-type]
    return list(loader(shards, config, rank, world, epoch, start_batch=start))


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
    shards = write_colour_shards(tmp_path / "a", shards=3, per_shard=1)
    assert resolve_shards(f"{tmp_path}/a/{{00000..00002}}.tar") == shards
    other = write_colour_shards(tmp_path / "b", shards=1, per_shard=1)
    listing = tmp_path / "a" / "shards.txt"
    listing.write_text(f"# train shards\n00001.tar\n\n{other[0]}\nhttp://host/x.tar\n")
    assert resolve_shards(listing) == [shards[1], other[0], "http://host/x.tar"]
    with pytest.raises(FileNotFoundError):
        resolve_shards(tmp_path / "missing")


def test_resolve_names_the_first_missing_shard(tmp_path: Path) -> None:
    write_colour_shards(tmp_path, shards=2, per_shard=1)
    with pytest.raises(FileNotFoundError, match=r"00002\.tar"):
        resolve_shards(f"{tmp_path}/{{00000..00003}}.tar")
    listing = tmp_path / "shards.txt"
    listing.write_text("00001.tar\ngone/00009.tar\n00007.tar\n")
    with pytest.raises(FileNotFoundError, match=r"gone/00009\.tar"):
        resolve_shards(listing)
    remote = "pipe:curl -s http://host/{0..1}.tar"
    assert resolve_shards(remote) == [
        "pipe:curl -s http://host/0.tar",
        "pipe:curl -s http://host/1.tar",
    ]


def test_counts_come_from_sizes_json(tmp_path: Path) -> None:
    shards = write_colour_shards(tmp_path, shards=3, per_shard=5)
    write_json(tmp_path / "sizes.json", {"00000.tar": 5, "00001.tar": 5, "00002.tar": 7})
    assert count_samples(tmp_path) == 17
    assert count_shard_samples(shards[1:]) == 12
    (tmp_path / "00002.done").unlink()  # unfinished: neither trained on nor counted
    assert count_samples(tmp_path) == count_shard_samples(resolve_shards(tmp_path)) == 10


# ---------------------------------------------------------------- epochs in samples


def test_an_epoch_is_a_number_of_samples(colour_shards: list[str]) -> None:
    # 128 samples / batch 16 = 8 batches, whatever the shards hold
    assert len(load(colour_shards)) == 8
    assert batches_per_epoch(colour_shards, TINY, world_size=2) == 4
    config = dataclasses.replace(TINY, samples_per_epoch=400)  # more than one pass over files
    assert len(list(loader(colour_shards, config, 0, 1, 0))) == 25


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


FAILURES: list[Exception] = []


def skip_quietly(exn: Exception) -> bool:
    """A handler that records the failure and goes on, without warn_and_continue's sleep."""
    FAILURES.append(exn)
    return True


def break_one_image(shards: list[str], index: int) -> None:
    """Rewrite the shard the stream opens first with image `index` not a JPEG."""
    first = next(shard_stream(shards, StreamSlot(TINY.seed, 0, 0, 1)))["url"]
    with wds.TarWriter(first) as sink:
        for i in range(16):
            image = io.BytesIO()
            Image.new("RGB", (8, 8), (i * 10, 0, 0)).save(image, format="JPEG")
            data = b"not a jpeg" if i == index else image.getvalue()
            sink.write({"__key__": f"b{i:04d}", "jpg": data, "txt": f"shade {i}"})


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_is_exact_after_an_image_failed_to_decode(tmp_path: Path, workers: int) -> None:
    shards = write_colour_shards(tmp_path, shards=4, per_shard=16)
    break_one_image(shards, index=3)
    config = dataclasses.replace(
        TINY, samples_per_epoch=48, shuffle_buffer=0, workers=workers, batch_size=8
    )
    FAILURES.clear()
    full = list(loader(shards, config, 0, 1, 0, handler=skip_quietly))
    assert len(full) == 6
    assert len(FAILURES) == (1 if workers == 0 else 0)  # worker processes keep their own list
    for start in (1, 2, 3):
        resumed = list(loader(shards, config, 0, 1, 0, start_batch=start, handler=skip_quietly))
        assert same(resumed, full[start:])


# ---------------------------------------------------------------- unreadable shards


@pytest.mark.timeout(30)
def test_loader_fails_instead_of_hanging_when_no_shard_can_be_read(tmp_path: Path) -> None:
    (tmp_path / "00000.tar").write_bytes(b"not a tar file" * 100)
    shards = [str(tmp_path / "00000.tar"), str(tmp_path / "00001.tar")]  # garbage, missing
    config = dataclasses.replace(TINY, samples_per_epoch=32)
    FAILURES.clear()
    with pytest.raises(RuntimeError, match="no sample from any of the 2 shards"):
        list(loader(shards, config, 0, 1, 0, handler=skip_quietly))
    assert len(FAILURES) >= 2


@pytest.mark.timeout(30)
def test_loader_workers_fail_instead_of_hanging_too(tmp_path: Path) -> None:
    shards = [str(tmp_path / f"{i:05d}.tar") for i in range(3)]  # none exists
    config = dataclasses.replace(TINY, samples_per_epoch=32, workers=2)
    batches = iter(loader(shards, config, 0, 1, 0, handler=skip_quietly))
    with pytest.raises(RuntimeError, match="no sample from any of the 3 shards") as caught:
        next(batches)
    # stop the worker processes now: left to a later garbage collection, their shutdown
    # waits out torch's join timeout
    traceback.clear_frames(caught.tb)
    del batches


@pytest.mark.timeout(30)
def test_an_empty_shard_list_fails_at_once() -> None:
    with pytest.raises(ValueError, match="no shards"):
        loader([], dataclasses.replace(TINY, samples_per_epoch=32), 0, 1, 0)


def test_one_readable_shard_among_missing_ones_still_fills_the_epoch(tmp_path: Path) -> None:
    good = write_colour_shards(tmp_path, shards=1, per_shard=32)
    shards = good + [str(tmp_path / f"gone{i}.tar") for i in range(3)]
    config = dataclasses.replace(TINY, samples_per_epoch=64)
    assert len(list(loader(shards, config, 0, 1, 0, handler=skip_quietly))) == 4


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


def test_captions_for_the_tokenizer_come_in_shard_order_up_to_the_limit(tmp_path: Path) -> None:
    shards = write_colour_shards(tmp_path, shards=3, per_shard=4)
    captions = read_captions(list(reversed(shards)), limit=6)  # the order given does not matter
    expected = [
        sample["txt"].decode()
        for shard in shards[:2]
        for sample in wds.WebDataset(shard, shardshuffle=False)
    ]
    assert captions == expected[:6]
    assert len(read_captions(shards, limit=100)) == 12
