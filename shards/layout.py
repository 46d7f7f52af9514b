"""The shard folder: which pairs go to which shard, which shards are done, and summaries.

A shard folder follows img2dataset's webdataset layout: `{shard:05d}.tar` (the samples),
`{shard:05d}.parquet` (every row, failures included), `{shard:05d}_stats.json`, and our
completion marker `{shard:05d}.done`, written last. A shard without its marker is
incomplete: it is ignored by the listings here and rewritten on resume. `sizes.json`
(samples per tar, read by open_clip and webdataset) and `manifest.json` describe the
completed shards only.
"""

from __future__ import annotations

import math
import re
import tarfile
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any, BinaryIO

from core import storage
from core.io import is_done, read_json, write_json

SHARD_DIGITS = 5
INDEX_DIGITS = 4  # of img2dataset's default 10,000 samples per shard
SIZES_FILE = "sizes.json"
MANIFEST_FILE = "manifest.json"
TAR_MTIME = 0  # every member's mtime, so rewrites are byte-identical
TAR_MODE = 0o444
_MARKER = re.compile(rf"^(\d{{{SHARD_DIGITS},}})\.done$")


def tar_info(name: str, size: int) -> tarfile.TarInfo:
    """A member's `tarfile` description: a fixed mtime, mode and owner, so the same samples
    make the same bytes."""
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, TAR_MTIME, TAR_MODE
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _header_template() -> bytes:
    """tarfile's ustar header of an empty member, its checksum field blank (8 spaces)."""
    header = bytearray(tar_info("", 0).tobuf(tarfile.USTAR_FORMAT, TAR_ENCODING, TAR_ERRORS))
    header[148:156] = b" " * 8
    return bytes(header)


TAR_ENCODING, TAR_ERRORS = "utf-8", "surrogateescape"  # tarfile's, on a UTF-8 system
_TEMPLATE = _header_template()
_MAX_FAST_SIZE = 8**11  # larger sizes do not fit the 11 octal digits of a ustar header


def tar_header(name: str, size: int) -> bytes:
    """The 512-byte ustar header of `tar_info(name, size)`, as tarfile writes it: tarfile's
    own for names it splits or encodes (long, not ASCII), else its template filled in."""
    if len(name) > 100 or not name.isascii() or size >= _MAX_FAST_SIZE:
        return tar_info(name, size).tobuf(tarfile.USTAR_FORMAT, TAR_ENCODING, TAR_ERRORS)
    header = bytearray(_TEMPLATE)
    encoded = name.encode("ascii")
    header[: len(encoded)] = encoded
    header[124:136] = b"%011o\0" % size
    header[148:156] = b"%06o\0 " % sum(header)  # tarfile's: the field counted as spaces
    return bytes(header)


class TarWriter:
    """A ustar archive written member by member: byte for byte what `tarfile.open(path, "w",
    format=USTAR_FORMAT)` writes when given `tar_info(name, len(data))` and `data` (the same
    headers, padding and end of archive), without a TarInfo kept and a header built field by
    field for every member (a header costs ~5x less)."""

    def __init__(self, path: str | Path) -> None:
        self._file: BinaryIO | None = open(path, "wb")  # noqa: SIM115 (closed by close())
        self._offset = 0

    def add(self, name: str, data: bytes) -> None:
        """Append `data` as the member `name`."""
        assert self._file is not None, "the archive is closed"
        remainder = len(data) % tarfile.BLOCKSIZE
        padding = tarfile.NUL * (tarfile.BLOCKSIZE - remainder) if remainder else b""
        self._file.write(tar_header(name, len(data)))
        self._file.write(data)
        self._file.write(padding)
        self._offset += tarfile.BLOCKSIZE + len(data) + len(padding)

    def close(self) -> None:
        """End the archive as tarfile does: two zero blocks, zeros to a whole record."""
        if self._file is None:
            return
        try:
            end = self._offset + 2 * tarfile.BLOCKSIZE
            remainder = end % tarfile.RECORDSIZE
            tail = 2 * tarfile.BLOCKSIZE + (tarfile.RECORDSIZE - remainder if remainder else 0)
            self._file.write(tarfile.NUL * tail)
        finally:
            self._file.close()
            self._file = None


def shard_name(shard_id: int) -> str:
    """`00042` for shard 42."""
    if shard_id < 0:
        raise ValueError(f"shard id must not be negative, got {shard_id}")
    return f"{shard_id:0{SHARD_DIGITS}d}"


def tar_path(folder: str | Path, shard_id: int) -> str:
    return storage.join(folder, f"{shard_name(shard_id)}.tar")


def parquet_path(folder: str | Path, shard_id: int) -> str:
    return storage.join(folder, f"{shard_name(shard_id)}.parquet")


def stats_path(folder: str | Path, shard_id: int) -> str:
    return storage.join(folder, f"{shard_name(shard_id)}_stats.json")


def index_digits(samples_per_shard: int) -> int:
    """Digits of the in-shard index in a key, img2dataset's ceil(log10(samples_per_shard)):
    3 for 1,000, 4 for 10,000, 5 for 10,001."""
    if samples_per_shard <= 0:
        raise ValueError(f"samples_per_shard must be positive, got {samples_per_shard}")
    return math.ceil(math.log10(samples_per_shard))


def sample_key(shard_id: int, index: int, digits: int) -> str:
    """img2dataset's key: 10^digits x shard + index, zero-padded to digits + 5."""
    return f"{10**digits * shard_id + index:0{digits + SHARD_DIGITS}d}"


def plan_shards(uids: Iterable[str], samples_per_shard: int) -> list[list[str]]:
    """The uids sorted and cut into shards of `samples_per_shard` (the last may be short).

    Sorting makes the plan a function of the selection alone, so any number of workers,
    local or distributed, writes the same pair to the same shard at the same index.
    """
    if samples_per_shard <= 0:
        raise ValueError(f"samples_per_shard must be positive, got {samples_per_shard}")
    ordered = sorted(uids)
    return [
        ordered[start : start + samples_per_shard]
        for start in range(0, len(ordered), samples_per_shard)
    ]


def completed_shards(folder: str | Path) -> set[int]:
    """Ids of the shards in `folder` whose completion marker exists."""
    found = (_MARKER.match(name) for name in storage.list_names(folder, ".done"))
    return {int(m.group(1)) for m in found if m}


def list_shards(folder: str | Path) -> list[str]:
    """The tar files of the completed shards, in shard order."""
    return [tar_path(folder, shard) for shard in sorted(completed_shards(folder))]


def shard_stats(folder: str | Path, shard_id: int) -> dict[str, Any]:
    """The `_stats.json` of a completed shard."""
    if not is_done(folder, shard_name(shard_id)):
        raise FileNotFoundError(f"shard {shard_name(shard_id)} in {folder} is not complete")
    stats: dict[str, Any] = read_json(stats_path(folder, shard_id))
    return stats


def write_sizes_json(folder: str | Path) -> dict[str, int]:
    """Write `sizes.json`, {"00000.tar": samples, ...} over completed shards; return it."""
    sizes = {
        storage.basename(tar_path(folder, shard)): int(shard_stats(folder, shard)["samples"])
        for shard in sorted(completed_shards(folder))
    }
    write_json(storage.join(folder, SIZES_FILE), sizes)
    return sizes


def write_manifest(folder: str | Path) -> dict[str, Any]:
    """Write `manifest.json`: each completed shard's counts, and their totals; return it."""
    shards = [_manifest_entry(folder, shard) for shard in sorted(completed_shards(folder))]
    manifest = {"shards": shards, "totals": _totals(shards)}
    write_json(storage.join(folder, MANIFEST_FILE), manifest)
    return manifest


def _manifest_entry(folder: str | Path, shard_id: int) -> dict[str, Any]:
    stats = shard_stats(folder, shard_id)
    return {
        "shard": shard_id,
        "tar": storage.basename(tar_path(folder, shard_id)),
        "parquet": storage.basename(parquet_path(folder, shard_id)),
        "tar_bytes": storage.size(tar_path(folder, shard_id)),
        "count": stats["count"],
        "samples": stats["samples"],
        "successes": stats["successes"],
        "failed_to_download": stats["failed_to_download"],
        "failed_to_resize": stats["failed_to_resize"],
        "dropped": stats["dropped"],
        "status_dict": stats["status_dict"],
    }


def _totals(shards: list[dict[str, Any]]) -> dict[str, Any]:
    summed = ("count", "samples", "successes", "failed_to_download", "failed_to_resize")
    totals: dict[str, Any] = {name: sum(s[name] for s in shards) for name in summed}
    totals["dropped"] = sum(s["dropped"] for s in shards)
    totals["tar_bytes"] = sum(s["tar_bytes"] for s in shards)
    totals["shards"] = len(shards)
    statuses: Counter[str] = Counter()
    for entry in shards:
        statuses.update(entry["status_dict"])
    totals["status_dict"] = dict(sorted(statuses.items()))
    return totals
