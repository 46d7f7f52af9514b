"""Colour conversion of decoded images: colour keys at 16 bits, CMYK with an ICC profile.

The CMYK profile is built here, byte by byte (an ICC v2 output profile whose A2B0 is a
lut8 with a 2-point grid), so its every corner colour is known: LittleCMS must map a
CMYK corner to exactly the Lab value written there, which the test converts to sRGB
independently (CIE formulas, Bradford-adapted sRGB matrix).
"""

from __future__ import annotations

import io
import itertools
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.config import ShardsConfig
from shards.images import process_image, to_rgb

RAW = ShardsConfig(resize_mode="no", encode_format="png")

# ---------------------------------------------------------------- 16-bit colour keys


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_16bit(pixels: np.ndarray, colour_type: int, key: bytes) -> bytes:
    """A 16-bit PNG (colour type 0 grey, 2 RGB) with a `tRNS` colour key, written by hand
    (Pillow cannot write 16-bit RGB)."""
    height, width = pixels.shape[:2]
    rows = pixels.astype(">u2").reshape(height, -1)
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)
    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    return b"".join(
        [
            b"\x89PNG\r\n\x1a\n",
            png_chunk(b"IHDR", header),
            png_chunk(b"tRNS", key),
            png_chunk(b"IDAT", zlib.compress(raw)),
            png_chunk(b"IEND", b""),
        ]
    )


def decoded(data: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(data))
    image.load()
    return np.asarray(to_rgb(image))


def test_sixteen_bit_grey_colour_key_is_white_and_compared_at_full_depth():
    grey = np.array([[40000, 40001, 1000, 65535]], dtype=np.uint16).repeat(4, axis=0)
    out = decoded(png_16bit(grey, 0, struct.pack(">H", 40000)))
    assert out[0, 0].tolist() == [255, 255, 255]  # the key: transparent, on white
    # 40001 differs from the key by one 16-bit level: opaque, at its own grey (40001/257)
    assert out[0, 1].tolist() == [156, 156, 156]
    assert out[0, 2].tolist() == [4, 4, 4] and out[0, 3].tolist() == [255, 255, 255]


def test_sixteen_bit_rgb_colour_key_is_white():
    pixels = np.zeros((4, 4, 3), dtype=np.uint16)
    pixels[:2] = (40000, 1000, 2000)
    pixels[2:] = (100, 30000, 300)
    out = decoded(png_16bit(pixels, 2, struct.pack(">HHH", 40000, 1000, 2000)))
    assert out[0, 0].tolist() == [255, 255, 255]  # was the key colour (156, 3, 7)
    assert out[3, 0].tolist() == [0, 117, 1]  # opaque pixels keep their high bytes


def test_colour_key_on_a_real_photo_in_sixteen_bit_grey(shared_data: Path):
    photo = shared_data / "bad_inputs" / "pillow-Tests-images-subset" / "hopper.png"
    if not photo.is_file():
        pytest.skip(f"{photo} not found")
    grey = np.asarray(Image.open(photo).convert("L")).astype(np.uint16)
    key_level = int(np.bincount(grey.ravel()).argmax())  # the photo's commonest grey
    out = decoded(png_16bit(grey * 257, 0, struct.pack(">H", key_level * 257)))
    keyed = grey == key_level
    assert keyed.sum() > 50
    assert (out[keyed] == 255).all()
    assert (out[~keyed][:, 0] == grey[~keyed]).all()  # every other pixel exactly as it was


def test_the_sixteen_bit_key_survives_the_whole_process_as_png():
    grey = np.full((64, 64), 20000, dtype=np.uint16)
    grey[16:48, 16:48] = 50000
    result = process_image(png_16bit(grey, 0, struct.pack(">H", 50000)), RAW)
    out = np.asarray(Image.open(io.BytesIO(result.data)))
    assert out[32, 32].tolist() == [255, 255, 255] and out[0, 0].tolist() == [78, 78, 78]


# ---------------------------------------------------------------- CMYK with an ICC profile


def lab_corner(cmyk: tuple[int, int, int, int]) -> tuple[float, float, float]:
    """The profile's Lab (D50) for a CMYK corner (each 0 or 1): white paper, inks that
    darken and tint it. Deliberately unlike Pillow's naive CMYK -> RGB (cyan is no 0,255,255)."""
    c, m, y, k = cmyk
    lightness = 100.0 - 35 * c - 40 * m - 8 * y - 70 * k + 10 * (c * m + m * y + c * y)
    a = -35 * c + 70 * m - 5 * y
    b = -45 * c - 5 * m + 80 * y
    return max(lightness, 4.0), a * (1 - 0.8 * k), b * (1 - 0.8 * k)


def s15f16(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def text_description(text: str) -> bytes:
    ascii_text = text.encode("ascii") + b"\x00"
    return (
        b"desc\x00\x00\x00\x00"
        + struct.pack(">I", len(ascii_text))
        + ascii_text
        + struct.pack(">II", 0, 0)  # no Unicode description
        + struct.pack(">HB", 0, 0)
        + b"\x00" * 67  # no ScriptCode description
    )


def lut8_a2b0() -> bytes:
    """lut8Type, 4 inputs (CMYK) to 3 outputs (Lab), identity curves, a 2x2x2x2 grid."""
    identity_matrix = b"".join(s15f16(v) for v in (1, 0, 0, 0, 1, 0, 0, 0, 1))
    curve = bytes(range(256))
    grid = b""
    for corner in itertools.product((0, 1), repeat=4):  # first channel varies slowest
        lightness, a, b = lab_corner(corner)  # type: ignore[arg-type]
        grid += bytes([round(lightness * 255 / 100), round(a + 128), round(b + 128)])
    return (
        b"mft1\x00\x00\x00\x00"
        + bytes([4, 3, 2, 0])
        + identity_matrix
        + curve * 4
        + grid
        + curve * 3
    )


def cmyk_profile() -> bytes:
    """An ICC v2 CMYK output profile with the `lab_corner` colours as its A2B0."""
    tags = [
        (b"desc", text_description("test CMYK")),
        (b"cprt", b"text\x00\x00\x00\x00public domain\x00"),
        (b"wtpt", b"XYZ \x00\x00\x00\x00" + s15f16(0.9642) + s15f16(1.0) + s15f16(0.8249)),
        (b"A2B0", lut8_a2b0()),
    ]
    offset = 128 + 4 + 12 * len(tags)
    table, body = b"", b""
    for signature, data in tags:
        data += b"\x00" * (-len(data) % 4)
        table += signature + struct.pack(">II", offset + len(body), len(data))
        body += data
    size = offset + len(body)
    header = (
        struct.pack(">I", size)
        + b"lcms"
        + bytes([2, 0x10, 0, 0])
        + b"prtrCMYKLab "
        + struct.pack(">6H", 2026, 1, 1, 0, 0, 0)
        + b"acsp"
        + b"\x00" * 24  # platform, flags, manufacturer, model, attributes
        + struct.pack(">I", 0)  # perceptual intent
        + s15f16(0.9642)
        + s15f16(1.0)
        + s15f16(0.8249)
        + b"\x00" * 48  # creator, reserved
    )
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + body


def lab_to_srgb(lab: tuple[float, float, float]) -> np.ndarray:
    """CIE Lab (D50) -> 8-bit sRGB through the Bradford-adapted D50 sRGB matrix."""
    lightness, a, b = lab
    fy = (lightness + 16) / 116
    f = np.array([fy + a / 500, fy, fy - b / 200])
    xyz = np.where(f > 6 / 29, f**3, 3 * (6 / 29) ** 2 * (f - 4 / 29))
    xyz *= np.array([0.9642, 1.0, 0.8249])
    to_rgb_matrix = np.array(
        [
            [3.1338561, -1.6168667, -0.4906146],
            [-0.9787684, 1.9161415, 0.0334540],
            [0.0719453, -0.2289914, 1.4052427],
        ]
    )
    linear = np.clip(to_rgb_matrix @ xyz, 0, 1)
    encoded = np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)
    return np.rint(encoded * 255)


PATCHES = [(0, 0, 0, 0), (1, 0, 0, 0), (0, 1, 0, 0), (0, 0, 1, 0), (0, 0, 0, 1), (1, 1, 0, 0)]


def cmyk_jpeg_with_profile() -> bytes:
    """Flat 16x16 patches of the profile's corner colours, as a CMYK JPEG carrying it."""
    image = Image.new("CMYK", (16 * len(PATCHES), 16))
    for i, corner in enumerate(PATCHES):
        image.paste(tuple(255 * v for v in corner), (16 * i, 0, 16 * i + 16, 16))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=100, icc_profile=cmyk_profile())
    return buffer.getvalue()


def test_a_cmyk_jpeg_is_converted_through_its_profile_to_srgb():
    data = cmyk_jpeg_with_profile()
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    result = process_image(data, RAW)
    out = Image.open(io.BytesIO(result.data))
    assert "icc_profile" not in out.info  # the output is plain sRGB
    naive = np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)
    pixels = np.asarray(out).astype(int)
    for i, corner in enumerate(PATCHES):
        expected = lab_to_srgb(lab_corner(corner))
        got = pixels[8, 16 * i + 8]
        # LittleCMS's perceptual intent (the default) scales a v2 profile's black point, so
        # dark patches land a few levels darker than their colorimetric value.
        tolerance = 3 if lab_corner(corner)[0] > 50 else 8
        assert np.abs(got - expected).max() <= tolerance, (corner, got, expected)
    # the profile matters: Pillow's naive conversion makes the cyan patch 0,255,255
    assert naive[8, 24].tolist() == [0, 255, 255]
    assert np.abs(naive[8, 24] - pixels[8, 24]).max() > 50


def test_a_cmyk_jpeg_with_a_broken_profile_falls_back_to_the_pixels():
    image = Image.new("CMYK", (32, 32), (0, 255, 0, 0))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=100, icc_profile=cmyk_profile()[:200])
    out = np.asarray(Image.open(io.BytesIO(process_image(buffer.getvalue(), RAW).data)))
    assert np.abs(out[16, 16].astype(int) - [255, 0, 255]).max() <= 2  # naive magenta
