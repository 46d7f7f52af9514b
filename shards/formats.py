"""img2dataset's output, shard by shard: webdataset, parquet or files, written atomically.

    with OutputShardWriter(folder, 3, columns, "webdataset", "jpg", save_caption=True) as out:
        out.write(row, image)        # row: the columns' values; image: encoded bytes or None

Every row becomes a row of `00003.parquet` (img2dataset's columns, then ours); a row with
an image also becomes a sample, with img2dataset's names:

- webdataset: `00003.tar` holding `{key}.jpg`, `{key}.json`, `{key}.txt` (members sorted
  by extension, as webdataset's TarWriter writes them);
- files: the folder `00003/` holding the same three files per sample;
- parquet: the image in a column named by the format (`jpg`), the caption in `txt`.

`.txt` members (and the `txt` column) exist only when there is a caption column, as in
img2dataset. `00003_stats.json` has img2dataset's fields (count, successes,
failed_to_download, failed_to_resize, duration, start_time, end_time, status_dict: the
error messages and "success", counted). The tar, parquet and folder are written under
temporary names and renamed into place, then the stats, then the marker `00003.done`:
a kill leaves no partial output under a final name.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import pyarrow as pa

from core import storage
from core.io import TMP_PREFIX, atomic_path, clear_done, mark_done, write_json, write_table
from shards.layout import TarWriter, parquet_path, shard_name, stats_path, tar_path

OUTPUT_FORMATS = ("webdataset", "parquet", "files")
SUCCESS = "success"
FAILED_TO_DOWNLOAD = "failed_to_download"
FAILED_TO_RESIZE = "failed_to_resize"


class OutputShardWriter:
    """One shard in one of img2dataset's output formats; see the module docstring."""

    def __init__(
        self,
        folder: str | Path,
        shard_id: int,
        schema: pa.Schema,
        output_format: str,
        encode_format: str,
        *,
        save_caption: bool,
    ) -> None:
        if output_format not in OUTPUT_FORMATS:
            raise ValueError(f"output_format must be one of {', '.join(OUTPUT_FORMATS)}")
        self.folder = storage.name(folder)
        self.shard_id = shard_id
        self.name = shard_name(shard_id)
        self.schema = schema
        self.output_format = output_format
        self.encode_format = encode_format
        self.save_caption = save_caption
        self.rows: list[dict[str, Any]] = []
        self.written: list[bool] = []  # whether each row is a sample
        self.images: list[bytes | None] = []  # each row's image, for the parquet format only
        self.start_time = 0.0
        self._stack = contextlib.ExitStack()
        self._tar: TarWriter | None = None
        self._files: Path | None = None

    def __enter__(self) -> OutputShardWriter:
        storage.makedirs(self.folder)
        clear_done(self.folder, self.name)
        self.start_time = time.time()
        if self.output_format == "webdataset":
            tmp = self._stack.enter_context(atomic_path(tar_path(self.folder, self.shard_id)))
            self._tar = TarWriter(tmp)
        elif self.output_format == "files":
            target = storage.join(self.folder, self.name)
            storage.remove_tree(target)
            self._files = self._stack.enter_context(atomic_folder(target))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._tar is not None:
            self._tar.close()
        if exc is not None:
            self._stack.__exit__(exc_type, exc, tb)  # the temporaries go
            return
        self._stack.close()  # the tar or the folder into place
        self._write_parquet()
        write_json(stats_path(self.folder, self.shard_id), self.stats())
        mark_done(self.folder, self.name, {"count": len(self.rows), "samples": self.samples})

    @property
    def samples(self) -> int:
        return sum(self.written)

    def write(self, row: dict[str, Any], image: bytes | None) -> None:
        """Record `row` (the schema's values) and, with an image, its sample."""
        self.rows.append(row)
        self.written.append(image is not None)
        if self.output_format == "parquet":
            self.images.append(image)  # into the shard's parquet at the end
            return
        if image is None:
            return
        members = {self.encode_format: image, "json": sample_json(row)}
        if self.save_caption:
            members["txt"] = str(row.get("caption") or "").encode("utf-8")
        for extension in sorted(members):
            self._add(f"{row['key']}.{extension}", members[extension])

    def _add(self, name: str, data: bytes) -> None:
        if self._files is not None:
            (self._files / name).write_bytes(data)
            return
        assert self._tar is not None
        self._tar.add(name, data)

    def _write_parquet(self) -> None:
        columns = {name: [row.get(name) for row in self.rows] for name in self.schema.names}
        table = pa.table(columns, schema=self.schema)
        if self.output_format == "parquet":
            table = table.append_column(
                pa.field(self.encode_format, pa.binary()), pa.array(self.images, pa.binary())
            )
            if self.save_caption:
                captions = [
                    row.get("caption") if written else None
                    for row, written in zip(self.rows, self.written, strict=True)
                ]
                table = table.append_column("txt", pa.array(captions, pa.string()))
        write_table(parquet_path(self.folder, self.shard_id), table)

    def stats(self) -> dict[str, Any]:
        """img2dataset's `_stats.json` fields, then ours."""
        statuses = Counter(str(row["status"]) for row in self.rows)
        messages = Counter(
            SUCCESS if row["status"] == SUCCESS else str(row.get("error_message"))
            for row in self.rows
        )
        end_time = time.time()
        return {
            "count": len(self.rows),
            "successes": statuses[SUCCESS],
            "failed_to_download": statuses[FAILED_TO_DOWNLOAD],
            "failed_to_resize": statuses[FAILED_TO_RESIZE],
            "duration": end_time - self.start_time,
            "start_time": self.start_time,
            "end_time": end_time,
            "status_dict": dict(messages.most_common()),
            "shard": self.shard_id,
            "samples": self.samples,
        }


def sample_json(row: dict[str, Any]) -> bytes:
    """The `.json` member: every column of the row, in order (img2dataset's indent)."""
    return json.dumps(row, indent=4).encode("utf-8")


@contextlib.contextmanager
def atomic_folder(location: str) -> Iterator[Path]:
    """A local temporary folder that becomes `location` if the block succeeds (uploaded
    whole to object storage)."""
    if storage.is_remote(location):
        with tempfile.TemporaryDirectory(prefix="openwit-upload-") as scratch:
            yield Path(scratch)
            storage.filesystem(location).put(scratch + "/", storage.name(location), recursive=True)
        return
    target = Path(storage.local(location))
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX + target.name + ".", dir=target.parent))
    tmp.chmod(0o755)  # mkdtemp makes 0700; outputs get the usual mode
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def remove_stale_folders(folder: str) -> None:
    """Delete the temporary sample folders a killed `files` writer left in a local folder."""
    if storage.is_remote(folder) or not os.path.isdir(storage.local(folder)):
        return
    for entry in Path(storage.local(folder)).iterdir():
        if entry.is_dir() and entry.name.startswith(TMP_PREFIX):
            shutil.rmtree(entry, ignore_errors=True)
