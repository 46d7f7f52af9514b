"""`shards.layout.TarWriter`: the same bytes as `tarfile` for the same members."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from shards.layout import TarWriter, tar_header, tar_info

MEMBERS = [
    ("000000000.jpg", bytes(range(256)) * 7),
    ("000000000.json", b"{}"),
    ("000000000.txt", b""),  # empty
    ("000000001.txt", b"x" * 512),  # exactly a block
    ("n" * 100, b"longest name in the header"),
    ("f" * 120 + "/name.txt", b"split into prefix and name"),
    ("caf\u00e9 \u65e5\u672c.txt", b"not ascii"),
    ("undecodable-\udcff.txt", b"surrogate-escaped"),
]


def with_tarfile(path: Path, members: list[tuple[str, bytes]]) -> bytes:
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            tar.addfile(tar_info(name, len(data)), io.BytesIO(data))
    return path.read_bytes()


def with_writer(path: Path, members: list[tuple[str, bytes]]) -> bytes:
    writer = TarWriter(path)
    for name, data in members:
        writer.add(name, data)
    writer.close()
    writer.close()  # a second close does nothing
    return path.read_bytes()


@pytest.mark.parametrize("count", [0, 1, 3, len(MEMBERS)])
def test_the_same_bytes_as_tarfile(tmp_path: Path, count: int):
    members = MEMBERS[:count]
    expected = with_tarfile(tmp_path / "tarfile.tar", members)
    assert with_writer(tmp_path / "ours.tar", members) == expected
    with tarfile.open(tmp_path / "ours.tar") as tar:
        assert [(m.name, tar.extractfile(m).read()) for m in tar] == members  # type: ignore[union-attr]


def test_a_record_boundary_is_padded_like_tarfile(tmp_path: Path):
    for size in (10240 - 3 * 512, 10240 - 2 * 512, 10240 - 512, 10240):  # around 20 blocks
        members = [("a.bin", b"\x01" * size)]
        expected = with_tarfile(tmp_path / f"t{size}.tar", members)
        assert with_writer(tmp_path / f"o{size}.tar", members) == expected, size


def test_the_fast_header_is_tarfiles_header():
    for name in ("a", "000012345.webp", "z" * 100, "x.jpg"):
        for size in (0, 1, 511, 512, 10**9, 8**11 - 1, 8**11 + 5):
            info = tar_info(name, size)
            if size >= 8**11:  # ustar cannot say it: tarfile's own error
                with pytest.raises(ValueError):
                    tar_header(name, size)
                continue
            assert tar_header(name, size) == info.tobuf(
                tarfile.USTAR_FORMAT, "utf-8", "surrogateescape"
            ), (name, size)
