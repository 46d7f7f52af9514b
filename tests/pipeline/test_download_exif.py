"""The `exif` column of `python -m pipeline download`: the JPEG header walk that skips
opening images with no APP1 segment gives what opening them gives."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from pipeline.stages import download_task
from pipeline.stages.download_task import exif_json, jpeg_without_app1

XMP = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/'
    b'22-rdf-syntax-ns#"><rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" '
    b'tiff:Orientation="6"/></rdf:RDF></x:xmpmeta>'
)


def jpeg(**save: object) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 80, 20)).save(buffer, "JPEG", **save)
    return buffer.getvalue()


def with_exif() -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "OpenWIT camera"  # Make
    exif[0x0112] = 3  # Orientation
    return jpeg(exif=exif.tobytes())


def opened(data: bytes, monkeypatch: pytest.MonkeyPatch) -> str | None:
    """exif_json without the header walk: always by opening the image."""
    with monkeypatch.context() as patch:
        patch.setattr(download_task, "jpeg_without_app1", lambda data: False)
        return exif_json(data)


def samples(shared_data: Path) -> dict[str, bytes]:
    found = {
        "plain": jpeg(),
        "progressive": jpeg(progressive=True, quality=60),
        "exif": with_exif(),
        "xmp-orientation-only": jpeg(xmp=XMP),
        "icc": jpeg(icc_profile=b"\0" * 200),
        "not a jpeg": b"GIF89a...",
        "truncated header": jpeg()[:5],
    }
    for path in sorted(shared_data.glob("images/**/*.jpg")):
        found[path.name] = path.read_bytes()
    for path in sorted(shared_data.glob("bad_inputs/**/*.jpg")):
        found[path.name] = path.read_bytes()
    return found


def test_the_header_walk_tells_jpegs_without_app1():
    assert jpeg_without_app1(jpeg())
    assert jpeg_without_app1(jpeg(progressive=True))
    assert not jpeg_without_app1(with_exif())
    assert not jpeg_without_app1(jpeg(xmp=XMP))
    assert not jpeg_without_app1(b"\xff\xd8\xff")  # cut short: unsure
    assert not jpeg_without_app1(b"\x89PNG\r\n\x1a\n")


def test_exif_is_the_same_with_or_without_the_header_walk(
    monkeypatch: pytest.MonkeyPatch, shared_data: Path
):
    found = samples(shared_data)
    assert len(found) > 10
    for name, data in found.items():
        assert exif_json(data) == opened(data, monkeypatch), name
    assert json.loads(exif_json(found["plain"]) or "null") == {}
    assert json.loads(exif_json(found["exif"]) or "{}")["Image Make"] == "OpenWIT camera"
    # XMP alone gives Pillow an orientation; the walk must not hide it
    assert json.loads(exif_json(found["xmp-orientation-only"]) or "{}") == {
        "Image Orientation": "6"
    }
