"""Read webdataset tars in place: an index of each sample's members, then single members
read by offset, from local disk or object storage, with nothing extracted to disk.

    index = index_shards("runs/demo/shards")      # every tar's samples, in shard order
    sample = index.samples[0]
    meta = index.read_json(sample)                 # {"caption": ..., "matched": [...], ...}
    jpeg = index.read(sample, "jpg")
"""

from __future__ import annotations

import json
import logging
import tarfile
from dataclasses import dataclass, field
from typing import Any

from core import storage
from core.progress import track

log = logging.getLogger("shards.tars")
END_BLOCKS = 2 * tarfile.BLOCKSIZE  # the two zero blocks that close every tar


@dataclass(frozen=True)
class Member:
    offset: int  # of the member's data in the tar
    size: int


@dataclass
class TarSample:
    """One sample of a tar: its key and where each of its members (jpg, txt, json) lies."""

    tar: str
    key: str
    members: dict[str, Member] = field(default_factory=dict)


@dataclass
class ShardIndex:
    tars: list[str]
    samples: list[TarSample]

    def read(self, sample: TarSample, ext: str) -> bytes:
        member = sample.members[ext]
        with storage.open_input(sample.tar, "rb") as handle:
            handle.seek(member.offset)
            data: bytes = handle.read(member.size)
        return data

    def read_json(self, sample: TarSample) -> dict[str, Any]:
        if "json" not in sample.members:
            return {}
        meta: dict[str, Any] = json.loads(self.read(sample, "json"))
        return meta


def split_name(name: str) -> tuple[str, str]:
    """`dir/000000012.jpg` -> ("dir/000000012", "jpg"), webdataset's rule: the key ends at
    the first dot of the file name."""
    folder, _, base = name.rpartition("/")
    stem, _, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), ext


def index_tar(location: str) -> list[TarSample]:
    """The samples of one tar in file order, reading its headers only. A truncated or
    corrupt tar gives the samples before the damage (a warning says where it stopped)."""
    samples: dict[str, TarSample] = {}
    with storage.open_input(location, "rb") as handle:
        end = handle.seek(0, 2)
        handle.seek(0)
        try:
            with tarfile.open(fileobj=handle) as tar:
                for info in tar:
                    if info.isfile() and info.offset_data + info.size <= end:
                        key, ext = split_name(info.name)
                        sample = samples.setdefault(key, TarSample(location, key))
                        sample.members[ext] = Member(info.offset_data, info.size)
                if end < tar.offset + END_BLOCKS:  # tarfile stops quietly at a cut header
                    raise tarfile.ReadError("no end-of-archive marker: the tar is cut short")
        except (tarfile.TarError, EOFError) as exc:
            reason = str(exc).splitlines()[0]
            log.warning("%s: unreadable after %d samples (%s)", location, len(samples), reason)
    return [s for s in samples.values() if s.members]


def shard_tars(path: str) -> list[str]:
    """A tar, or the sorted tars of a folder."""
    if path.endswith(".tar") and storage.is_file(path):
        return [storage.name(path)]
    if not storage.is_dir(path):
        raise FileNotFoundError(f"no shard tars at {path}")
    return storage.list_files(path, ".tar")


def index_shards(path: str, quiet: bool = True) -> ShardIndex:
    """The samples of every tar at `path`, in order (a progress bar per tar unless `quiet`)."""
    tars = shard_tars(path)
    return ShardIndex(
        tars, [s for tar in track(tars, "shards", "index tars", quiet) for s in index_tar(tar)]
    )
