"""Where bytes live: local paths and object storage (`s3://`, `gs://`, `hdfs://`...) alike.

Every stage names its inputs and outputs as strings: a local path (`runs/demo/crawl`) or a
URL that fsspec understands (`s3://bucket/run/crawl`). This module is the one place that
turns such a name into reads, writes and listings:

- local paths go straight to the operating system (no fsspec layer on the hot path);
- anything with a scheme goes through fsspec (`s3fs` for `s3://`; the endpoint, keys and
  region come from the usual AWS variables, `AWS_ENDPOINT_URL` included).

A write is atomic on both: `atomic_path` hands out a local temporary file and, when the
block succeeds, renames it into place (local) or uploads it in one `put` (object storage,
where an object appears only once its upload completes). A killed writer leaves at most a
`.tmp-*` file in a local folder and nothing at all in a bucket.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

TMP_PREFIX = ".tmp-"
PathLike = str | os.PathLike[str]


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once, at import: os.umask is process-wide, so reading it later could race with a
# writer thread creating a file in the instant it is 0.
FILE_MODE = 0o666 & ~_read_umask()


def name(location: PathLike) -> str:
    """The location as a string: paths as the OS writes them, URLs unchanged."""
    return os.fspath(location)


def is_remote(location: PathLike) -> bool:
    """True for URLs with a scheme other than `file://` (object storage, HDFS, HTTP...)."""
    text = name(location)
    return "://" in text and not text.startswith("file://")


def local(location: PathLike) -> str:
    text = name(location)
    return text[len("file://") :] if text.startswith("file://") else text


def join(base: PathLike, *parts: str) -> str:
    """`base/part/...`: a URL joined with `/`, a local path with the OS separator."""
    if is_remote(base):
        return posixpath.join(name(base).rstrip("/"), *parts)
    return os.path.join(local(base), *parts)


def basename(location: PathLike) -> str:
    return posixpath.basename(name(location).rstrip("/"))


def parent(location: PathLike) -> str:
    if is_remote(location):
        return posixpath.dirname(name(location).rstrip("/"))
    return os.path.dirname(local(location))


def filesystem(location: PathLike) -> Any:
    """The fsspec filesystem serving a URL (cached by fsspec per protocol and options)."""
    import fsspec

    return fsspec.core.url_to_fs(name(location))[0]


def arrow_filesystem(location: PathLike) -> Any:
    """A filesystem pyarrow can read through: None (its own) for local paths."""
    return filesystem(location) if is_remote(location) else None


def arrow_path(location: PathLike) -> str:
    """The path pyarrow is given beside `arrow_filesystem`: the URL without its scheme."""
    text = name(location)
    return text.split("://", 1)[1] if is_remote(text) else local(text)


# ---------------------------------------------------------------- reading and listing


def exists(location: PathLike) -> bool:
    if is_remote(location):
        return bool(filesystem(location).exists(name(location)))
    return os.path.exists(local(location))


def is_file(location: PathLike) -> bool:
    if is_remote(location):
        return bool(filesystem(location).isfile(name(location)))
    return os.path.isfile(local(location))


def is_dir(location: PathLike) -> bool:
    if is_remote(location):
        return bool(filesystem(location).isdir(name(location)))
    return os.path.isdir(local(location))


def size(location: PathLike) -> int:
    """The size of a file in bytes."""
    if is_remote(location):
        return int(filesystem(location).size(name(location)))
    return os.path.getsize(local(location))


def version(location: PathLike) -> tuple[int, str]:
    """(size, modification stamp) of a file: what changes when the file is rewritten."""
    if is_remote(location):
        info = filesystem(location).info(name(location))
        stamp = info.get("ETag") or info.get("LastModified") or info.get("mtime") or ""
        return int(info.get("size") or 0), str(stamp)
    stat = os.stat(local(location))
    return stat.st_size, str(stat.st_mtime_ns)


def open_input(location: PathLike, mode: str = "rb") -> IO[Any]:
    """A file opened for reading (text modes decode UTF-8)."""
    if is_remote(location):
        if "b" not in mode:
            raise ValueError("open remote files in binary mode and decode them")
        handle: IO[Any] = filesystem(location).open(name(location), mode)
        return handle
    if "b" in mode:
        return open(local(location), mode)
    return open(local(location), mode, encoding="utf-8")


def read_bytes(location: PathLike) -> bytes:
    with open_input(location, "rb") as handle:
        data: bytes = handle.read()
    return data


def read_text(location: PathLike) -> str:
    return read_bytes(location).decode("utf-8")


def list_names(folder: PathLike, suffix: str = "") -> list[str]:
    """Sorted names of the files directly in `folder` ending in `suffix`; [] if none.

    Temporary files (`.tmp-*`) are never listed.
    """
    if is_remote(folder):
        fs = filesystem(folder)
        try:
            entries = fs.ls(name(folder).rstrip("/"), detail=True, refresh=True)
        except FileNotFoundError:
            return []
        names = [basename(e["name"]) for e in entries if e.get("type") == "file"]
    else:
        try:
            with os.scandir(local(folder)) as scan:
                names = [e.name for e in scan if e.is_file()]
        except FileNotFoundError:
            return []
    return sorted(n for n in names if n.endswith(suffix) and not n.startswith(TMP_PREFIX))


def list_files(folder: PathLike, suffix: str = "") -> list[str]:
    """Like `list_names`, as full locations."""
    return [join(folder, n) for n in list_names(folder, suffix)]


# ---------------------------------------------------------------- writing


def makedirs(folder: PathLike) -> None:
    if not is_remote(folder):
        os.makedirs(local(folder), exist_ok=True)


@contextlib.contextmanager
def atomic_path(location: PathLike) -> Iterator[Path]:
    """A local temporary file that becomes `location` if the block succeeds."""
    if is_remote(location):
        with tempfile.TemporaryDirectory(prefix="openwit-upload-") as scratch:
            tmp = Path(scratch) / basename(location)
            yield tmp
            filesystem(location).put_file(str(tmp), name(location))
        return
    target = Path(local(location))
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=TMP_PREFIX + target.name + ".", dir=target.parent)
    os.fchmod(fd, FILE_MODE)  # mkstemp makes 0600; outputs get the usual mode
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_open(location: PathLike, mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary file that becomes `location` when the block exits without error."""
    encoding = None if "b" in mode else "utf-8"
    with atomic_path(location) as tmp, open(tmp, mode, encoding=encoding) as handle:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())


def write_bytes(location: PathLike, data: bytes) -> None:
    with atomic_open(location, "wb") as handle:
        handle.write(data)


def remove(location: PathLike) -> None:
    """Delete a file if it exists."""
    if is_remote(location):
        fs = filesystem(location)
        with contextlib.suppress(FileNotFoundError):
            fs.rm_file(name(location))
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(local(location))


def remove_tree(folder: PathLike) -> None:
    """Delete a folder and everything under it, if it exists."""
    if is_remote(folder):
        fs = filesystem(folder)
        with contextlib.suppress(FileNotFoundError):
            fs.rm(name(folder).rstrip("/"), recursive=True)
    else:
        shutil.rmtree(local(folder), ignore_errors=True)
