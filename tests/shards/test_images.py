"""process_image: resize modes, colour modes, orientation, hostile inputs, hashes, speed."""

from __future__ import annotations

import hashlib
import io
import json
import struct
import zlib
from itertools import combinations
from pathlib import Path

import imagehash
import numpy as np
import pytest
from PIL import Image, ImageCms

from core.config import ShardsConfig
from core.record import STATUS_FAILED_DECODE, STATUS_FAILED_RESIZE, STATUS_SUCCESS, Pair
from shards.images import (
    PHASH_INPUT_SIDE,
    ImageDecodeError,
    ImageResizeError,
    check_declared_size,
    compute_phash,
    decode_image,
    phash_to_int,
    process_image,
    process_or_fail,
)
from tests.shards.conftest import encode, photo_jpeg, photo_like

RESIZE_DIR = "images/img2dataset_resize_test_image"
BAD_DIR = "bad_inputs/pillow-Tests-images-subset"
PROBE = "bad_inputs/pillow-13.0.0-probe-subset.json"
# Files the probe's Pillow (the 13.0.0 wheel) could not decode for want of a codec that
# other builds have: Pillow-SIMD built against Debian's libtiff decodes them correctly.
CODEC_DEPENDENT = {"hopper_webp.tif": "a TIFF in WebP compression (libtiff built with WebP)"}
WEB_SUFFIXES = (".jpg", ".png", ".gif", ".webp", ".bmp", ".ico", ".tif")
RESIZE_CASES = [  # img2dataset's test_resizer cases (mode, resize_only_if_bigger)
    ("border", False),
    ("border", True),
    ("keep_ratio", False),
    ("keep_ratio", True),
    ("center_crop", False),
    ("center_crop", True),
    ("no", False),
]


def decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def rgb_at(image: Image.Image, xy: tuple[int, int]) -> tuple[int, ...]:
    """The RGB pixel at (x, y)."""
    return tuple(int(v) for v in np.asarray(image.convert("RGB"))[xy[1], xy[0]])


def expected_size(width: int, height: int, side: int, mode: str, only_bigger: bool) -> tuple:
    """img2dataset's rule, written independently of the code under test."""
    if mode == "no":
        return (width, height)
    reference = max(width, height) if mode == "border" else min(width, height)
    if only_bigger and reference <= side:
        return (width, height)
    if mode in ("border", "center_crop"):
        return (side, side)
    ratio = side / reference
    return (round(width * ratio), round(height * ratio))


# ---------------------------------------------------------------- resize modes


@pytest.mark.parametrize("side", [256, 512])
@pytest.mark.parametrize("mode, only_bigger", RESIZE_CASES)
def test_resize_modes_on_real_photos(shared_data: Path, side: int, mode: str, only_bigger: bool):
    config = ShardsConfig(image_size=side, resize_mode=mode, resize_only_if_bigger=only_bigger)
    photos = sorted((shared_data / RESIZE_DIR).glob("*.jpg"))
    assert len(photos) == 7
    for path in photos:
        width, height = (int(n) for n in path.stem.split("_"))
        result = process_image(path.read_bytes(), config)
        assert (result.original_width, result.original_height) == (width, height)
        want = expected_size(width, height, side, mode, only_bigger)
        assert (result.width, result.height) == want, path.name
        assert decoded(result.data).size == want
        assert decoded(result.data).format == "JPEG"


def test_border_pads_with_white_and_center_crop_keeps_the_middle():
    red = Image.new("RGB", (400, 100), (200, 0, 0))
    data = encode(red, "PNG")
    bordered = decoded(process_image(data, _png(resize_mode="border")).data)
    assert bordered.size == (256, 256)
    assert rgb_at(bordered, (128, 5)) == (255, 255, 255)  # padding above
    assert rgb_at(bordered, (128, 128))[0] > 150  # the image itself
    cropped = decoded(process_image(data, _png(resize_mode="center_crop")).data)
    assert cropped.size == (256, 256)
    assert rgb_at(cropped, (0, 0))[0] > 150


def test_upscales_small_images_unless_only_if_bigger():
    data = photo_jpeg(100, 80, seed=3)
    assert process_image(data, ShardsConfig(image_size=160)).height == 160
    kept = process_image(data, ShardsConfig(image_size=160, resize_only_if_bigger=True))
    assert (kept.width, kept.height) == (100, 80)


def test_downscale_is_antialiased():
    """One-pixel stripes have no frequency the target can show: they must come out grey."""
    stripes = np.zeros((480, 640, 3), dtype=np.uint8)
    stripes[:, ::2] = 255
    result = process_image(encode(Image.fromarray(stripes), "PNG"), _png(image_size=256))
    assert (result.width, result.height) == (341, 256)
    pixels = np.asarray(decoded(result.data), dtype=np.float64)
    assert abs(pixels.mean() - 127.5) < 2
    assert pixels.std() < 5  # nearest neighbour: ~127; HAMMING: ~24; cv2 INTER_AREA: ~8


def _exact_downscale(image: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """LANCZOS on float channels: no 8-bit rounding between passes."""
    pixels = np.asarray(image, dtype=np.float32)
    channels = [
        Image.fromarray(pixels[..., c]).resize(size, Image.Resampling.LANCZOS) for c in range(3)
    ]
    return np.stack([np.asarray(c) for c in channels], axis=-1)


def test_downscale_keeps_detail():
    """Close to an exact downscale (PSNR over 42 dB; a BOX filter gets ~40, nearest ~33)."""
    for seed in range(3):
        photo = photo_like(640, 480, seed=seed)
        result = process_image(encode(photo, "PNG"), _png(image_size=256))
        pixels = np.asarray(decoded(result.data), dtype=np.float64)
        mse = np.mean((pixels - _exact_downscale(photo, (341, 256))) ** 2)
        assert 10 * np.log10(255**2 / mse) > 42, seed


@pytest.mark.parametrize("fmt, pillow_format", [("jpg", "JPEG"), ("png", "PNG"), ("webp", "WEBP")])
def test_encode_formats(fmt: str, pillow_format: str):
    result = process_image(photo_jpeg(320, 240, seed=1), ShardsConfig(encode_format=fmt))
    assert result.format == fmt
    image = decoded(result.data)
    assert image.format == pillow_format
    assert image.size == (result.width, result.height) == (341, 256)


def test_encode_quality_is_applied():
    data = photo_jpeg(640, 480, seed=2)
    high = process_image(data, ShardsConfig(encode_quality=95))
    low = process_image(data, ShardsConfig(encode_quality=30))
    assert len(low.data) < len(high.data) * 0.6


# ---------------------------------------------------------------- colour modes


def _png(**overrides: object) -> ShardsConfig:
    return ShardsConfig(encode_format="png", **overrides)  # type: ignore[arg-type]


def _pixel(data: bytes, mode: str = "no", xy: tuple[int, int] = (2, 2)) -> tuple:
    result = process_image(data, _png(resize_mode=mode))
    image = decoded(result.data)
    assert image.mode == "RGB"
    return rgb_at(image, xy)


def test_rgba_is_composited_on_white():
    image = Image.new("RGBA", (64, 64), (255, 0, 0, 0))
    image.paste((0, 0, 255, 255), (32, 0, 64, 64))
    data = encode(image, "PNG")
    assert _pixel(data) == (255, 255, 255)
    assert _pixel(data, xy=(40, 2)) == (0, 0, 255)


def test_palette_with_transparency_is_composited_on_white():
    image = Image.new("P", (64, 64), 1)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    data = encode(image, "PNG", transparency=1)
    assert _pixel(data) == (255, 255, 255)
    opaque = encode(image, "PNG")
    assert _pixel(opaque) == (255, 0, 0)


def test_grey_with_alpha_is_composited_on_white():
    image = Image.new("LA", (64, 64), (0, 128))
    grey = _pixel(encode(image, "PNG"))
    assert grey[0] == grey[1] == grey[2]
    assert 120 <= grey[0] <= 135  # black at half opacity over white


def test_cmyk_jpeg_becomes_rgb():
    image = Image.new("CMYK", (64, 64), (0, 255, 255, 0))  # red
    red = _pixel(encode(image, "JPEG", quality=95))
    assert red[0] > 200 and red[1] < 60 and red[2] < 60


def test_sixteen_bit_grey_is_scaled_to_eight_bits():
    image = Image.new("I;16", (64, 64), 32896)  # 128 * 257
    data = encode(image, "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    assert _pixel(data) == (128, 128, 128)


def test_sixteen_bit_grey_is_scaled_by_its_depth_not_its_maximum():
    """Two ramps one level apart (maxima 255 and 256 of 65535) are both nearly black."""
    means = []
    for top in (255, 256):
        ramp = np.tile(np.linspace(0, top, 64).round().astype(np.uint16), (64, 1))
        result = process_image(encode(Image.fromarray(ramp), "PNG"), _png(resize_mode="no"))
        means.append(np.asarray(decoded(result.data), dtype=np.float64).mean())
    assert means[0] < 1.0 and means[1] < 1.0
    white = encode(Image.new("I;16", (64, 64), 65535), "PNG")
    assert _pixel(white) == (255, 255, 255)


def _keyed(mode: str, key: object, colour: object) -> bytes:
    """A 64x64 PNG of `mode` with a colour key (tRNS): the left half in `key` (transparent),
    the right half in `colour`."""
    image = Image.new(mode, (64, 64), key)  # type: ignore[arg-type]
    image.paste(colour, (32, 0, 64, 64))  # type: ignore[arg-type]
    return encode(image, "PNG", transparency=key)


@pytest.mark.parametrize(
    ("mode", "key", "colour", "opaque"),
    [
        ("RGB", (0, 255, 0), (200, 0, 0), (200, 0, 0)),
        ("L", 10, 90, (90, 90, 90)),
        ("1", 0, 1, (255, 255, 255)),
    ],
)
@pytest.mark.parametrize("fmt", ["png", "jpg"])
def test_colour_key_transparency_is_composited_on_white(
    mode: str, key: object, colour: object, opaque: tuple, fmt: str
):
    data = _keyed(mode, key, colour)
    assert "transparency" in Image.open(io.BytesIO(data)).info
    result = process_image(data, ShardsConfig(encode_format=fmt, resize_mode="no"))
    image = decoded(result.data)
    assert "transparency" not in image.info
    tolerance = 0 if fmt == "png" else 8
    for xy, expected in (((4, 4), (255, 255, 255)), ((56, 4), opaque)):
        assert np.abs(np.subtract(rgb_at(image, xy), expected)).max() <= tolerance, (xy, fmt)


def test_palette_colour_key_is_composited_on_white():
    image = Image.new("P", (64, 64), 3)
    image.putpalette([0, 0, 0, 255, 0, 0, 0, 0, 255, 0, 255, 0])
    image.paste(1, (32, 0, 64, 64))
    data = encode(image, "PNG", transparency=3, bits=2)
    assert _pixel(data) == (255, 255, 255) and _pixel(data, xy=(40, 2)) == (255, 0, 0)


def _swapped_primaries_profile() -> bytes:
    """An RGB ICC profile that is sRGB with its red and green primaries exchanged: pixels
    stored under it as (r, g, b) are (g, r, b) in sRGB. Built from Pillow's own sRGB."""
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    profile = bytearray(srgb)
    (count,) = struct.unpack(">I", srgb[128:132])
    entries = {srgb[132 + 12 * i : 136 + 12 * i]: 136 + 12 * i for i in range(count)}
    red, green = entries[b"rXYZ"], entries[b"gXYZ"]
    profile[red : red + 8], profile[green : green + 8] = (
        srgb[green : green + 8],
        srgb[red : red + 8],
    )
    return bytes(profile)


def test_an_embedded_profile_is_converted_to_srgb():
    icc = _swapped_primaries_profile()
    data = encode(photo_like(96, 64, seed=3), "JPEG", quality=95, icc_profile=icc)
    result = process_image(data, ShardsConfig(resize_mode="no", encode_format="png"))
    out = decoded(result.data)
    assert out.info.get("icc_profile") is None  # the output is plain sRGB
    stored = np.asarray(decoded(data).convert("RGB"), dtype=np.float64)  # profile ignored
    expected = stored[:, :, [1, 0, 2]]  # red and green exchanged
    assert np.abs(np.asarray(out, dtype=np.float64) - expected).max() <= 1  # CMS rounding
    assert np.abs(stored - expected).mean() > 20  # what ignoring the profile would cost


def test_a_grey_profile_and_a_broken_one_do_not_fail():
    grey = Image.new("L", (64, 64), 128)
    xyz = ImageCms.ImageCmsProfile(ImageCms.createProfile("XYZ")).tobytes()  # not RGB
    for icc in (b"not a profile", xyz):
        data = encode(grey.convert("RGB"), "PNG", icc_profile=icc)
        assert _pixel(data) == (128, 128, 128)


def test_unsupported_mode_is_a_decode_error():
    data = encode(Image.new("LAB", (64, 64)), "TIFF")
    with pytest.raises(ImageDecodeError) as info:
        process_image(data, ShardsConfig())
    assert info.value.reason == "unsupported mode"
    assert info.value.status == STATUS_FAILED_DECODE


def test_exif_orientation_is_applied():
    stored = Image.new("RGB", (200, 100), (255, 0, 0))
    stored.paste((0, 0, 255), (100, 0, 200, 100))  # left red, right blue
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated 90 degrees clockwise
    data = encode(stored, "JPEG", quality=95, exif=exif.tobytes())
    result = process_image(data, _png(resize_mode="no"))
    assert (result.original_width, result.original_height) == (100, 200)
    image = decoded(result.data)
    assert image.size == (100, 200)
    top, bottom = rgb_at(image, (50, 20)), rgb_at(image, (50, 180))
    assert top[0] > 200 and top[2] < 60  # the left edge is now on top
    assert bottom[2] > 200 and bottom[0] < 60


# ---------------------------------------------------------------- hostile inputs


def _png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares `width` x `height`."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    idat = zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("size", [(60_000, 60_000), (9_000, 9_000), (3, 40_000_000)])
def test_bombs_are_refused_before_decoding(size: tuple[int, int]):
    data = _png_declaring(*size)
    with pytest.raises(ImageDecodeError) as info:
        process_image(data, ShardsConfig())
    # refused on the declared size, before any pixel is allocated or decoded
    assert info.value.reason in ("decompression bomb", "implausible size")


def test_pixel_limit_comes_from_config():
    data = photo_jpeg(200, 200, seed=4)
    with pytest.raises(ImageDecodeError) as info:
        process_image(data, ShardsConfig(max_image_pixels=30_000))
    assert info.value.reason == "decompression bomb"
    assert process_image(data, ShardsConfig(max_image_pixels=40_000)).width == 256


def test_zero_size_is_refused():
    with pytest.raises(ImageDecodeError, match="zero size"):
        check_declared_size((0, 10), 1000)


def test_non_web_formats_are_not_opened():
    data = encode(photo_like(64, 64, seed=13), "PPM")
    assert Image.open(io.BytesIO(data)).format == "PPM"
    with pytest.raises(ImageDecodeError, match="unidentified image"):
        process_image(data, ShardsConfig())


@pytest.mark.parametrize("data", [b"", b"not an image", b"\x89PNG\r\n\x1a\n" + b"\x00" * 20])
def test_garbage_is_unidentified(data: bytes):
    with pytest.raises(ImageDecodeError) as info:
        process_image(data, ShardsConfig())
    assert info.value.reason in ("unidentified image", "broken image")


def test_truncated_jpeg_is_a_decode_error():
    data = photo_jpeg(640, 480, seed=5)
    with pytest.raises(ImageDecodeError) as info:
        process_image(data[: len(data) // 2], ShardsConfig())
    assert info.value.reason in ("truncated", "broken image")
    assert str(info.value)


def test_encode_failure_is_a_resize_error():
    config = ShardsConfig(encode_format="bmp")  # not validated here: load_config would refuse it
    with pytest.raises(ImageResizeError) as info:
        process_image(photo_jpeg(64, 64, seed=6), config)
    assert info.value.status == STATUS_FAILED_RESIZE


def test_pillow_bad_input_corpus(shared_data: Path):
    """Every file: a result or one of our two errors, in under a second, as the probe says.

    Bombs in formats we do not open (ICNS, FLI) are refused as unidentified instead.
    """
    probe: dict[str, str] = json.loads((shared_data / PROBE).read_text())
    assert len(probe) > 200
    config = ShardsConfig()
    for name, outcome in sorted(probe.items()):
        data = (shared_data / BAD_DIR / name).read_bytes()
        try:
            result = process_image(data, config)
        except (ImageDecodeError, ImageResizeError) as exc:
            result = None
            error = exc
        if outcome.startswith("OK") or (name in CODEC_DEPENDENT and result is not None):
            assert result is not None, f"{name}: {error}"
            assert decoded(result.data).size == (result.width, result.height)
        else:
            assert result is None, name
            assert isinstance(error, ImageDecodeError)
        if outcome.startswith("BOMB") and Path(name).suffix in WEB_SUFFIXES:
            assert error.reason == "decompression bomb", name
        if outcome.startswith("UNIDENTIFIED"):
            assert error.reason == "unidentified image", name


# ---------------------------------------------------------------- hashes


def test_sha256_is_of_the_downloaded_bytes():
    data = photo_jpeg(300, 200, seed=7)
    assert process_image(data, ShardsConfig()).sha256 == hashlib.sha256(data).hexdigest()


def test_phash_bit_order_matches_imagehash_hex():
    value = imagehash.phash(photo_like(200, 150, seed=8))
    assert phash_to_int(value) == int(str(value), 16)
    assert 0 <= phash_to_int(value) < 2**64


def _distance(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def test_phash_survives_recompression_and_resize(shared_data: Path):
    photos = sorted((shared_data / RESIZE_DIR).glob("*.jpg"))
    photos += sorted((shared_data / "images/sklearn").glob("*.jpg"))
    config = ShardsConfig()
    hashes = []
    for path in photos:
        original = Image.open(path).convert("RGB")
        reference = process_image(encode(original, "JPEG", quality=95), config).phash
        recompressed = process_image(encode(original, "JPEG", quality=60), config).phash
        half = original.resize(
            (original.width // 2, original.height // 2), Image.Resampling.LANCZOS
        )
        smaller = process_image(encode(half, "PNG"), config).phash
        assert _distance(reference, recompressed) <= 3, path.name
        assert _distance(reference, smaller) <= 3, path.name
        hashes.append(reference)
    for a, b in combinations(hashes, 2):
        assert _distance(a, b) > 10


def test_phash_is_of_the_original_not_the_crop():
    data = photo_jpeg(600, 300, seed=9)
    hashes = {process_image(data, ShardsConfig(resize_mode=m)).phash for m in ("no", "border")}
    hashes.add(process_image(data, ShardsConfig(resize_mode="center_crop")).phash)
    assert len(hashes) == 1
    full = phash_to_int(imagehash.phash(photo_like(600, 300, seed=9)))
    assert _distance(full, hashes.pop()) <= 3


def test_compute_phash_matches_plain_imagehash_closely():
    image = photo_like(1600, 1200, seed=10)
    assert _distance(compute_phash(image), phash_to_int(imagehash.phash(image))) <= 2


def test_compute_phash_is_imagehash_below_the_box_reduction():
    """Up to a smaller side of 511 no box reduction applies: the folded LANCZOS-and-DCT
    product gives imagehash's own hash, but where imagehash's 8-bit thumbnail rounds a
    frequency across the median (2 of these 38 images, by 2 bits)."""
    rng = np.random.default_rng(5)
    distances = []
    for seed, (width, height) in enumerate(rng.integers(12, 700, size=(40, 2))):
        if min(width, height) >= 2 * PHASH_INPUT_SIDE:
            continue
        image = photo_like(int(width), int(height), seed=seed)
        distances.append(_distance(compute_phash(image), phash_to_int(imagehash.phash(image))))
    assert len(distances) >= 30 and max(distances) <= 2
    assert sum(d == 0 for d in distances) >= 0.9 * len(distances)


def test_compute_phash_of_flat_images_is_imagehash_exactly():
    for value in (0, 1, 37, 128, 255):
        for size in ((300, 200), (31, 5), (1200, 900)):
            image = Image.new("RGB", size, (value, value, value))
            assert compute_phash(image) == phash_to_int(imagehash.phash(image)), (value, size)


def test_process_or_fail_returns_failures_as_data():
    image, status, error = process_or_fail(photo_jpeg(300, 200, seed=13), ShardsConfig())
    assert image is not None and (image.width, image.height) == (384, 256)
    assert (status, error) == (STATUS_SUCCESS, "")
    image, status, error = process_or_fail(b"not an image at all", ShardsConfig())
    assert image is None and status == STATUS_FAILED_DECODE
    assert error.startswith("unidentified image")


def test_annotate_fills_the_pair():
    result = process_image(photo_jpeg(300, 200, seed=11), ShardsConfig())
    pair = result.annotate(Pair(url="http://127.0.0.1/a.jpg", caption="a red disc"))
    assert pair.status == STATUS_SUCCESS
    assert (pair.width, pair.height, pair.original_width) == (384, 256, 300)
    assert pair.phash == result.phash and pair.sha256 == result.sha256


# ---------------------------------------------------------------- draft decoding


def test_draft_decode_reads_fewer_pixels_and_gives_the_same_size():
    data = photo_jpeg(3000, 2000, seed=12, quality=92)
    config = ShardsConfig(image_size=256)
    drafted, original = decode_image(data, config)
    full, _ = decode_image(data, config, draft=False)
    assert original == full.size == (3000, 2000)
    assert drafted.size == (750, 500)  # DCT-scaled by 1/4: the last scale >= the 384x256 target
    fast = process_image(data, config)
    slow = process_image(data, config, draft=False)
    assert (fast.width, fast.height) == (slow.width, slow.height) == (384, 256)
    assert (fast.original_width, fast.original_height) == (3000, 2000)
    assert _distance(fast.phash, slow.phash) <= 3
    a = np.asarray(decoded(fast.data), dtype=np.int16)
    b = np.asarray(decoded(slow.data), dtype=np.int16)
    assert np.abs(a - b).mean() < 6  # the same picture


def test_photo_like_jpegs_come_out_at_the_keep_ratio_size(photos_640x480: list[bytes]):
    config = ShardsConfig(image_size=256, resize_mode="keep_ratio")
    for data in photos_640x480:
        image = process_image(data, config)
        assert (image.width, image.height, image.original_width) == (341, 256, 640)


def test_keep_ratio_largest_brings_the_largest_side_to_the_size():
    config = ShardsConfig(image_size=256, resize_mode="keep_ratio_largest")
    image = process_image(photo_jpeg(640, 480, seed=3), config)
    assert (image.width, image.height) == (256, 192)


def test_fast_jpeg_decoding_gives_the_same_pixels(
    shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """simplejpeg's decoder (`_decode_turbo`) and libjpeg-turbo's RGBX output
    (`_decode_to_rgbx`) change the speed, not a pixel nor a verdict: real photos,
    progressive, 4:4:4, rotated, greyscale, CMYK, damaged and draft-reduced JPEGs decode
    alike with them and with Pillow's plain decoder."""
    import shards.images as images

    samples = [p.read_bytes() for p in sorted(shared_data.glob("images/**/*.jpg"))]
    photo = photo_like(900, 700, seed=21)
    exif = photo.getexif()
    exif[0x0112] = 6  # rotated 90 degrees
    plain_jpeg = encode(photo, "JPEG")
    samples += [plain_jpeg, encode(photo, "JPEG", progressive=True)]
    samples.append(encode(photo, "JPEG", subsampling=0))  # 4:4:4
    samples += [encode(photo, "JPEG", exif=exif), encode(photo.convert("L"), "JPEG")]
    samples += [encode(photo.convert("CMYK"), "JPEG"), plain_jpeg[: len(plain_jpeg) // 2]]
    samples.append(plain_jpeg[:600] + b"\0" * 9 + plain_jpeg[600:])  # libjpeg warns, Pillow decodes
    assert len(samples) > 10
    opened = Image.open(io.BytesIO(samples[0]))
    images._decode_to_rgbx(opened)
    assert opened.tile[0].args == (("RGBX", "") if images.LIBJPEG_TURBO else ("RGB", ""))

    def outcome(data: bytes, config: ShardsConfig, draft: bool) -> object:
        try:
            image, size = decode_image(data, config, draft)
        except ImageDecodeError as exc:
            return exc.reason
        return size, image.size, np.asarray(image.convert("RGB")).tobytes()

    turbo = images._decode_turbo
    used: list[bool] = []

    def counted(image: Image.Image, data: bytes) -> Image.Image | None:
        found = turbo(image, data)
        used.append(found is not None)
        return found

    monkeypatch.setattr(images, "_decode_turbo", counted)
    small = ShardsConfig(image_size=64)
    for config, draft in ((ShardsConfig(), False), (ShardsConfig(), True), (small, True)):
        fast = [outcome(d, config, draft) for d in samples]
        with monkeypatch.context() as patch:
            patch.setattr(images, "LIBJPEG_TURBO", False)
            patch.setattr(images, "_decode_turbo", lambda *a: None)
            plain = [outcome(d, config, draft) for d in samples]
        assert fast == plain
    assert sum(used) >= 3 * 6 and not all(used)  # taken for the plain RGB ones only
    assert isinstance(fast[-2], str)  # the truncated one fails either way
