"""The streaming loader: webdataset shards -> batches of (images, tokens) for one rank.

The pipeline, and what is true after each stage (open_clip's order):

1. shard stream: the shard list, shuffled by a seed derived from (seed, epoch, round), is
   repeated round after round, so the stream never ends and every rank sees the same order;
2. split by node then by worker: rank r takes every `world_size`-th shard from position r,
   worker w of that rank every `num_workers`-th of those. Because the stream repeats, a
   rank or worker never starves, even with fewer shards than ranks x workers;
3. tar samples: dicts of raw bytes keyed by extension (`jpg`, `txt`, `json`...), one
   shard at a time. A shard that cannot be opened or read is reported by the handler; once
   every shard has been opened since the last sample came, and none gave one, the stream
   raises rather than repeating forever;
4. shuffle buffer of `shuffle_buffer` samples, seeded by (seed, epoch, rank, worker);
5. decode + transform + tokenize: `(image [3,S,S], tokens [L])`; a sample that cannot be
   decoded is reported by the handler (a warning by default) and skipped;
6. batch (full batches only, so every rank's local batch has the same size);
7. skip, then take: on resume, this worker's share of the batches already trained on this
   epoch is dropped (decoded again, so a sample skipped in step 5 is skipped again and the
   stream is exactly where it stopped), then this worker's share of the rest is taken.

An epoch is a number of samples, not a pass over files: each rank yields exactly
`samples_per_epoch // (world_size * batch_size)` batches, the DataLoader taking them from
its workers in turn, so uneven shards never hang a rank. (webdataset's `with_epoch` would
give every worker the same count; step 7 splits the count between workers instead.)

Stage 2 does what `wds.split_by_node` and `wds.split_by_worker` do, with the rank passed in
rather than read from torch.distributed, so one process can build any rank's loader. The
order of batches depends on the seed, the epoch, the rank and the number of workers.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import random
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import count, islice
from pathlib import Path
from typing import Any

import torch
import webdataset as wds
from torch.utils.data import DataLoader, get_worker_info

from core import storage
from core.config import TrainConfig
from core.errors import PipelineError
from core.io import read_json
from train.tokenizer import BpeTokenizer
from train.transform import IMAGE_EXTENSIONS, decode_image

Sample = dict[str, Any]
Handler = Callable[[Exception], bool]


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from a hash of `parts`, the same in every process and on every run."""
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


# ---------------------------------------------------------------- finding shards


def resolve_shards(spec: str | Path) -> list[str]:
    """Shard paths from a folder, a brace pattern or a list file.

    A folder gives its finished shards, sorted: every `*.tar` with its `.done` marker
    beside it (`00000.tar` + `00000.done`). A brace pattern `dir/{00000..00009}.tar` is
    expanded. A file lists one path per line; relative paths are relative to that file's
    folder and blank lines and `#` comments are skipped. Every local path returned exists:
    the first one that does not raises FileNotFoundError; remote URLs (`http://...`,
    `pipe:...`) are returned as given.
    """
    text = storage.name(spec)
    path = Path(text)
    if storage.is_remote(text) and "{" not in text and storage.is_dir(text):
        done = set(storage.list_names(text, ".done"))
        tars = storage.list_names(text, ".tar")
        return [storage.join(text, t) for t in tars if t[: -len(".tar")] + ".done" in done]
    if path.is_dir():
        return [str(p) for p in sorted(path.glob("*.tar")) if p.with_suffix(".done").exists()]
    if "{" in text:
        shards = list(wds.shardlists.expand_urls(text))  # braces, and `::` between patterns
    elif path.is_file():
        shards = _read_shard_list(path)
    else:
        raise FileNotFoundError(f"no shard folder, pattern or list file: {text}")
    missing = next((s for s in shards if not is_remote(s) and not Path(s).is_file()), None)
    if missing is not None:
        raise FileNotFoundError(f"shard {missing} (listed by {text}) does not exist")
    return shards


def open_with_fsspec(url: str, mode: str = "rb", bufsize: int = 8192, **_: Any) -> Any:
    """webdataset's opener for object storage URLs (`s3://...`): through fsspec."""
    return storage.open_input(url, mode)


# webdataset opens `s3://` and friends with a command-line tool; read them through fsspec,
# with the same credentials and endpoint as every other stage. Set at import, so loader
# worker processes have it too.
for _scheme in ("s3", "gs", "gcs", "hdfs", "abfs", "az"):
    importlib.import_module("webdataset.gopen").gopen_schemes[_scheme] = open_with_fsspec


def is_remote(url: str) -> bool:
    """Whether `url` names a stream webdataset opens itself (`scheme://...` or `pipe:...`)."""
    return "://" in url or url.startswith("pipe:")


def _read_shard_list(path: Path) -> list[str]:
    lines = (line.strip() for line in path.read_text().splitlines())
    entries = [line for line in lines if line and not line.startswith("#")]
    return [
        entry if is_remote(entry) or Path(entry).is_absolute() else str(path.parent / entry)
        for entry in entries
    ]


def count_samples(folder: str | Path) -> int:
    """The number of samples in a shard folder's finished shards, from its `sizes.json`."""
    return count_shard_samples(resolve_shards(folder))


def count_shard_samples(shards: list[str]) -> int:
    """The number of samples in the listed shards, from the `sizes.json` beside each."""
    sizes: dict[str, dict[str, int]] = {}
    total = 0
    for shard in shards:
        folder = storage.parent(shard)
        if folder not in sizes:
            sizes[folder] = read_json(storage.join(folder, "sizes.json"))
        total += int(sizes[folder][storage.basename(shard)])
    return total


def batches_per_epoch(shards: list[str], config: TrainConfig, world_size: int) -> int:
    """Batches each rank trains on per epoch: the epoch's samples over the global batch."""
    samples = config.samples_per_epoch or count_shard_samples(shards)
    batches = samples // (world_size * config.batch_size)
    if batches < 1:
        raise PipelineError(
            f"train: {samples} samples per epoch do not fill one global batch of "
            f"{world_size} x {config.batch_size}: lower train.batch_size or shard more pairs"
        )
    return batches


# ---------------------------------------------------------------- pipeline stages


def worker_share(total: int, worker: int, num_workers: int) -> int:
    """How many of `total` round-robin items fall to `worker`: items worker, worker+n, ..."""
    return total // num_workers + (1 if worker < total % num_workers else 0)


@dataclass(frozen=True)
class StreamSlot:
    """Which stream a pipeline reads: the seed, the epoch, the rank, and how far it is in.

    Worker `w` of a loader resumed after `start_batch` batches plays the part of worker
    `(w + start_batch) % num_workers` of the original loader: the DataLoader asks its
    workers in turn starting from 0, and the next batch due is the original loader's batch
    number `start_batch`, which came from that worker.
    """

    seed: int
    epoch: int
    rank: int
    world_size: int
    start_batch: int = 0

    def worker(self) -> tuple[int, int]:
        """(worker of the original loader this process plays, number of workers)."""
        info = get_worker_info()
        if info is None:
            return 0, 1
        return (info.id + self.start_batch) % info.num_workers, info.num_workers


def shard_stream(shards: list[str], slot: StreamSlot) -> Iterator[Sample]:
    """Stages 1-2: this rank's and worker's endless stream of `{"url": shard}`."""
    worker, num_workers = slot.worker()

    def rounds() -> Iterator[str]:
        for round_index in count():
            order = list(shards)
            random.Random(derive_seed(slot.seed, "shards", slot.epoch, round_index)).shuffle(order)
            yield from order

    by_node = islice(rounds(), slot.rank, None, slot.world_size)
    for url in islice(by_node, worker, None, num_workers):
        yield {"url": url}


def read_samples(src: Iterator[Sample], shard_count: int, handler: Handler) -> Iterator[Sample]:
    """Stage 3: the samples of each shard in `src`, in order.

    Raises RuntimeError once `shard_count` distinct shards (all of them) have been opened
    since the last sample came and none gave one: the stream repeats, so without this a
    loader over unreadable shards would wait forever.
    """
    expand = wds.tarfile_to_samples(handler=handler)
    barren: set[str] = set()
    for item in src:
        found = False
        for sample in expand(iter([item])):
            found = True
            yield sample
        barren = set() if found else barren | {item["url"]}
        if len(barren) >= shard_count:
            raise RuntimeError(
                f"no sample from any of the {shard_count} shards in a whole round; "
                f"unreadable, e.g. {item['url']}"
            )


def shuffle_samples(src: Iterator[Sample], bufsize: int, slot: StreamSlot) -> Iterator[Sample]:
    """Stage 4: a shuffle buffer seeded per (seed, epoch, rank, worker)."""
    if bufsize < 2:
        yield from src
        return
    worker, _ = slot.worker()
    rng = random.Random(derive_seed(slot.seed, "samples", slot.epoch, slot.rank, worker))
    yield from wds.shuffle(bufsize, bufsize, rng=rng)(src)


def to_pair(
    sample: Sample, tokenizer: BpeTokenizer, image_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stage 5: raw sample -> (normalised image tensor, token ids)."""
    ext = next((e for e in IMAGE_EXTENSIONS if e in sample), None)
    if ext is None:
        raise ValueError(f"sample {sample.get('__key__')} has no image")
    caption = sample["txt"].decode("utf-8") if "txt" in sample else ""
    return decode_image(sample[ext], image_size), tokenizer([caption])[0]


def take_remaining(src: Iterator[Any], total: int, slot: StreamSlot) -> Iterator[Any]:
    """Stage 7: this worker's share of the epoch's `total` batches, after those done."""
    worker, num_workers = slot.worker()
    done = worker_share(slot.start_batch, worker, num_workers)
    yield from islice(src, done, worker_share(total, worker, num_workers))


# ---------------------------------------------------------------- the loader


def make_dataset(
    shards: list[str],
    config: TrainConfig,
    slot: StreamSlot,
    tokenizer: BpeTokenizer,
    handler: Handler = wds.warn_and_continue,
) -> wds.DataPipeline:
    """The pipeline above for one rank and epoch, resuming after `slot.start_batch`."""
    if not shards:
        raise ValueError("no shards to read")
    total = batches_per_epoch(shards, config, slot.world_size)
    decode = functools.partial(to_pair, tokenizer=tokenizer, image_size=config.image_size)
    return wds.DataPipeline(
        functools.partial(shard_stream, shards, slot),
        functools.partial(read_samples, shard_count=len(set(shards)), handler=handler),
        functools.partial(shuffle_samples, bufsize=config.shuffle_buffer, slot=slot),
        wds.map(decode, handler=handler),
        wds.batched(config.batch_size, partial=False),
        functools.partial(take_remaining, total=total, slot=slot),
    )


def make_loader(
    shards: list[str],
    config: TrainConfig,
    tokenizer: BpeTokenizer,
    slot: StreamSlot,
    handler: Handler = wds.warn_and_continue,
) -> DataLoader:
    """Batches `(images [B,3,S,S], tokens [B,L])` of one epoch for `slot`'s rank.

    Yields `batches_per_epoch(shards, config, world_size) - slot.start_batch` batches. The
    same seed, epoch, rank and number of workers give the same batches in the same order,
    and a loader whose slot has `start_batch=k` yields exactly what the first one yields
    after `k`.
    """
    dataset = make_dataset(shards, config, slot, tokenizer, handler)
    pin = config.device.startswith("cuda")
    return DataLoader(dataset, batch_size=None, num_workers=config.workers, pin_memory=pin)


# ---------------------------------------------------------------- captions for the tokenizer


def read_captions(shards: list[str], limit: int) -> list[str]:
    """The first `limit` captions (`.txt` members) of `shards`, in shard and member order.

    Only the text members are read, so this is cheap beside decoding images; the order is
    fixed, so the BPE vocabulary learned from them is the same on every run.
    """
    captions: list[str] = []
    for shard in sorted(shards):
        with storage.open_input(shard) as handle, tarfile.open(fileobj=handle, mode="r|") as tar:
            for member in tar:
                if not member.name.endswith(".txt") or not member.isfile():
                    continue
                data = tar.extractfile(member)
                captions.append(data.read().decode("utf-8", "replace") if data else "")
                if len(captions) >= limit:
                    return captions
    return captions
