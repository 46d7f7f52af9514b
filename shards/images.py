"""Downloaded bytes to a processed image: safe decode, RGB, orientation, resize, encode, hashes.

`process_image` is the only entry point. It either returns a `ProcessedImage` or raises one
of two errors, whose `status` is the pair status the caller records:

- `ImageDecodeError` (`failed_to_decode`): not an image, truncated, a decompression bomb, zero
  size, a mode that has no RGB form, or any other failure of the decoder;
- `ImageResizeError` (`failed_to_resize`): resizing or encoding failed.

Only web formats are opened (JPEG, PNG, GIF, WebP, AVIF, BMP, ICO, TIFF). The declared size
is checked against the pixel limit, and against the file's length, before any pixel is
decoded, so a bomb never allocates. A JPEG at least twice the target size is decoded at a
reduced DCT scale (`Image.draft`: 1/2, 1/4 or 1/8); img2dataset decodes every pixel. A
plain RGB JPEG is decoded by simplejpeg (libjpeg-turbo, the same pixels as Pillow's). Resize
modes follow img2dataset: `keep_ratio` brings the smallest side to `image_size`,
`center_crop` does that then crops the centre square, `keep_ratio_largest` brings the
largest side to `image_size`, `border` does that and pads with white to a square, `no`
keeps the size; `resize_only_if_bigger` never enlarges.
Downscaling is antialiased (Pillow's BILINEAR, a triangle scaled to the reduction),
upscaling is LANCZOS.

Colour: every output is sRGB without an embedded profile. An image with an ICC profile is
converted from it to sRGB with LittleCMS (`PIL.ImageCms`); a profile that cannot be read or
does not fit the pixels is ignored. Transparency, an alpha channel or a colour key (`tRNS`
on an RGB, greyscale, 1-bit or palette PNG), is composited on white. 16-bit greyscale is
scaled by its bit depth (65535 -> 255), never by the image's own maximum.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import warnings
from dataclasses import dataclass

import imagehash
import numpy as np
import simplejpeg
import threadpoolctl
from PIL import Image, ImageCms, ImageFile, features

from core.config import ShardsConfig
from core.record import STATUS_FAILED_DECODE, STATUS_FAILED_RESIZE, STATUS_SUCCESS, Pair

WHITE = (255, 255, 255)
EXIF_ORIENTATION = 0x0112
TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)  # orientations that swap width and height
TRANSPOSES = {  # EXIF orientation -> the transpose that shows the image upright
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
SMALL_IMAGE_PIXELS = 1_000_000  # never refused as implausibly large for their bytes
MAX_PIXELS_PER_BYTE = 1024
# Draft-decode down to no less than DRAFT_GAP x the target (libjpeg scales in the DCT domain).
DRAFT_GAP = 1.0
# Downscaling filter: Pillow's BILINEAR widens its triangle with the scale, so it is fully
# antialiased (1-pixel stripes come out flat grey, as with BICUBIC; HAMMING and cv2's
# INTER_AREA, img2dataset's choice, leave moire). It is a little softer than BICUBIC, at
# 60% of its cost, which was half the time of a 640x480 -> 256 image.
DOWNSCALE = Image.Resampling.BILINEAR
UPSCALE = Image.Resampling.LANCZOS
REDUCING_GAP = 3.0  # Image.resize first box-reduces by an integer factor to >= 3x the target
PHASH_INPUT_SIDE = 256  # pHash box-reduces a larger image to a smaller side of 256-511 first
ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")
DIRECT_RGB_MODES = ("RGB", "1", "L", "CMYK", "YCbCr", "RGBX", "HSV")
HIGH_DEPTH_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N", "F")
CMS_MODES = ("RGB", "CMYK", "L")  # converted from their ICC profile straight to sRGB
SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
# Formats tried when opening: what browsers show, plus TIFF. Anything else (EPS, which runs
# Ghostscript, PSD, the FLI/BLP/DDS fuzz crashes...) is an unidentified image.
WEB_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "AVIF", "BMP", "ICO", "TIFF")
SAVE_FORMATS = {"jpg": "JPEG", "png": "PNG", "webp": "WEBP"}
LIBJPEG_TURBO = bool(features.check_feature("libjpeg_turbo"))


class ImageProcessError(Exception):
    """An image that cannot become a sample; `status` is the pair status to record."""

    status = STATUS_FAILED_DECODE

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class ImageDecodeError(ImageProcessError):
    """The bytes are not a decodable, safe, non-empty image with an RGB form."""

    status = STATUS_FAILED_DECODE


class ImageResizeError(ImageProcessError):
    """The decoded image could not be resized or encoded."""

    status = STATUS_FAILED_RESIZE


@dataclass(frozen=True)
class ProcessedImage:
    """An encoded image ready for a shard, with its sizes and hashes."""

    data: bytes  # encoded in `format`
    width: int  # as written
    height: int
    original_width: int  # as decoded, after EXIF orientation
    original_height: int
    sha256: str  # hex, of the downloaded bytes
    # 64-bit unsigned pHash of the decoded image (see `phash_to_int`). A JPEG decoded in
    # draft mode is hashed at its reduced size, which can move a bit or two.
    phash: int
    format: str  # file extension: jpg, png or webp

    def annotate(self, pair: Pair) -> Pair:
        """`pair` with the image's sizes and hashes set and its status `success`."""
        return dataclasses.replace(
            pair,
            status=STATUS_SUCCESS,
            error_message=None,
            width=self.width,
            height=self.height,
            original_width=self.original_width,
            original_height=self.original_height,
            sha256=self.sha256,
            phash=self.phash,
        )


def process_image(
    data: bytes,
    config: ShardsConfig,
    *,
    draft: bool = True,
    max_pixels_per_byte: int = MAX_PIXELS_PER_BYTE,
    sha256: str | None = None,
) -> ProcessedImage:
    """Decode, orient, hash, resize and encode `data` as `config` asks.

    `draft=False` decodes every pixel of a JPEG (as img2dataset does); the output has the
    same size either way. `sha256` is the hex digest of `data` when the caller has it.
    """
    image, original_size = decode_image(data, config, draft, max_pixels_per_byte)
    try:
        scaled = scale_image(image, config, original_size)
        # pHash of the whole picture (before any crop or pad) at the smaller of the sizes
        phash = compute_phash(scaled if scaled.width < image.width else image)
        resized = crop_or_pad(scaled, config, original_size)
        encoded = encode_image(resized, config.encode_format, config.encode_quality)
    except ImageProcessError:
        raise
    except Exception as exc:  # Pillow raises many types; all are a failed resize here
        raise ImageResizeError("resize failed", _describe(exc)) from exc
    return ProcessedImage(
        data=encoded,
        width=resized.width,
        height=resized.height,
        original_width=original_size[0],
        original_height=original_size[1],
        sha256=sha256 or hashlib.sha256(data).hexdigest(),
        phash=phash,
        format=config.encode_format,
    )


def process_or_fail(
    data: bytes, config: ShardsConfig, sha256: str | None = None
) -> tuple[ProcessedImage | None, str, str]:
    """`process_image` as (image, success, "") or, on a failure, (None, status, message).

    The entry point of a worker process: it lives here so that a worker imports this
    module and its dependencies only.
    """
    try:
        return process_image(data, config, sha256=sha256), STATUS_SUCCESS, ""
    except ImageProcessError as exc:
        return None, exc.status, str(exc)


def compute_phash(image: Image.Image) -> int:
    """imagehash.phash of the image: greyscale, a 32x32 LANCZOS thumbnail, its 8x8 lowest
    DCT-II frequencies (as `scipy.fftpack.dct` along each axis) above their median.

    The thumbnail and the DCT are linear along each axis, so they are one small matrix per
    axis (`phash_rows`: the DCT rows times Pillow's LANCZOS weights) and two products with
    the grey pixels, 3x faster than Pillow's resize to 32x32 (which, on one band, has no
    SIMD path). The thumbnail is not rounded to 8 bits on the way; the frequencies are
    rounded to whole numbers instead (finer than the thumbnail's rounding, and it makes the
    float32 products' last-bit noise vanish: a flat image hashes as imagehash hashes it).
    An image whose smaller side is over 2x PHASH_INPUT_SIDE is box-reduced first, which can
    move a bit or two from imagehash's hash of the full image.
    """
    _blas_on_one_thread()
    grey = image.convert("L")
    factor = min(grey.size) // PHASH_INPUT_SIDE
    if factor > 1:
        grey = grey.reduce(factor)
    pixels = np.asarray(grey, dtype=np.float32)
    height, width = pixels.shape
    low = np.rint(phash_rows(height) @ (pixels @ phash_rows(width).T)).ravel()
    middle = np.partition(low, PHASH_MIDDLE)  # np.median's own method, without its overhead
    bits = low > (middle[PHASH_MIDDLE[0]] + middle[PHASH_MIDDLE[1]]) / 2
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


@functools.cache
def _blas_on_one_thread() -> None:
    """Keep numpy's BLAS (OpenBLAS) on the calling thread, for good, in a process that
    hashes images: it would otherwise split pHash's product over every core, and its idle
    threads spin, which doubled the CPU time of a download with one process per core. The
    parallelism is already the image threads and the worker processes."""
    threadpoolctl.threadpool_limits(1, user_api="blas")


def phash_rows(size: int) -> np.ndarray:
    """(8, size) float32: pHash's 8 DCT rows applied to Pillow's LANCZOS weights from `size`
    pixels to PHASH_THUMBNAIL, so `phash_rows(h) @ grey @ phash_rows(w).T` is the 8x8 DCT of
    `grey.resize((32, 32), LANCZOS)`. Cached for the sizes images usually have."""
    return _cached_phash_rows(size) if size <= PHASH_CACHED_SIDE else _phash_rows(size)


def _phash_rows(size: int) -> np.ndarray:
    # Pillow's precompute_coeffs (Resample.c): output pixel i is centred at (i + 0.5) x scale
    # in the input, reads the pixels in [centre - support + 0.5, centre + support + 0.5),
    # weighs them by lanczos((x - centre + 0.5) / stretch) and normalises the weights.
    scale = size / PHASH_THUMBNAIL
    stretch = max(scale, 1.0)
    support = LANCZOS_SUPPORT * stretch
    centre = (np.arange(PHASH_THUMBNAIL) + 0.5)[:, None] * scale
    first = np.maximum((centre - support + 0.5).astype(int), 0)
    end = np.minimum((centre + support + 0.5).astype(int), size)
    x = np.arange(size)[None, :]
    t = (x - centre + 0.5) / stretch
    inside = (x >= first) & (x < end) & (t >= -LANCZOS_SUPPORT) & (t < LANCZOS_SUPPORT)
    weights = np.where(inside, np.sinc(t) * np.sinc(t / LANCZOS_SUPPORT), 0.0)
    weights /= weights.sum(axis=1, keepdims=True)
    return np.ascontiguousarray(PHASH_DCT @ weights, dtype=np.float32)


_cached_phash_rows = functools.lru_cache(maxsize=512)(_phash_rows)


def _dct_rows(size: int, rows: int) -> np.ndarray:
    """The first `rows` rows of the unnormalised DCT-II matrix (scipy.fftpack's)."""
    k = np.arange(rows)[:, None]
    n = np.arange(size)[None, :]
    return 2.0 * np.cos(np.pi * k * (2 * n + 1) / (2 * size))


PHASH_THUMBNAIL = 32
PHASH_DCT = _dct_rows(PHASH_THUMBNAIL, 8)
PHASH_MIDDLE = (31, 32)  # the two middle positions of the 64 sorted frequencies
LANCZOS_SUPPORT = 3.0  # Pillow's LANCZOS is sinc(x) sinc(x / 3) on [-3, 3)
PHASH_CACHED_SIDE = 2048  # 512 cached sizes of at most 64 KiB each


def phash_to_int(value: imagehash.ImageHash) -> int:
    """The hash's bits read row by row, first bit most significant: `int(str(value), 16)`."""
    bits = np.asarray(value.hash, dtype=bool).flatten()
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


# ---------------------------------------------------------------- decoding


def decode_image(
    data: bytes,
    config: ShardsConfig,
    draft: bool = True,
    max_pixels_per_byte: int = MAX_PIXELS_PER_BYTE,
) -> tuple[Image.Image, tuple[int, int]]:
    """An RGB image (RGBX where libjpeg-turbo decoded it: the same pixels, Pillow's 4-byte
    layout), oriented, possibly draft-reduced, and the oriented original size."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # bomb and EXIF warnings become our checks
            return _decode(data, config, draft, max_pixels_per_byte)
    except ImageProcessError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError("decompression bomb", str(exc)) from exc
    except Image.UnidentifiedImageError as exc:
        raise ImageDecodeError("unidentified image") from exc
    except MemoryError as exc:
        raise ImageDecodeError("out of memory") from exc
    except Exception as exc:  # a broken file can raise nearly anything from a plugin
        raise ImageDecodeError(_decode_reason(exc), _describe(exc)) from exc


def _decode(
    data: bytes, config: ShardsConfig, draft: bool, max_pixels_per_byte: int
) -> tuple[Image.Image, tuple[int, int]]:
    image = Image.open(io.BytesIO(data), formats=WEB_FORMATS)
    check_declared_size(image.size, config.max_image_pixels)
    check_plausible_size(image.size, len(data), max_pixels_per_byte)
    declared = image.size
    if draft and image.format in ("JPEG", "MPO"):
        _draft(image, config)
    fast = _decode_turbo(image, data)  # None: Pillow decodes it
    if fast is None:
        _decode_to_rgbx(image)
        image.load()  # before EXIF: some plugins load pixels to find it, and must fail here
        check_declared_size(image.size, config.max_image_pixels)  # some resize on load
    orientation = _orientation(image)  # before to_rgb, which may clear the file's info
    rgb = to_rgb(image) if fast is None else fast
    if orientation:
        rgb = rgb.transpose(TRANSPOSES[orientation])
    return rgb, _oriented(declared, orientation)


def check_plausible_size(size: tuple[int, int], n_bytes: int, max_pixels_per_byte: int) -> None:
    """Refuse a file far too small for the pixels it declares (a cheap allocation bomb).

    Deflate expands at most ~1032x, so even a flat image needs about a byte per thousand
    pixels; images up to a megapixel are always allowed.
    """
    pixels = size[0] * size[1]
    if pixels > SMALL_IMAGE_PIXELS and pixels > n_bytes * max_pixels_per_byte:
        raise ImageDecodeError("implausible size", f"{size[0]}x{size[1]} in {n_bytes} bytes")


def check_declared_size(size: tuple[int, int], max_pixels: int) -> None:
    """Refuse an empty image or one declaring more than `max_pixels` pixels."""
    width, height = size
    if width <= 0 or height <= 0:
        raise ImageDecodeError("zero size", f"{width}x{height}")
    if width * height > max_pixels:
        raise ImageDecodeError("decompression bomb", f"{width}x{height} > {max_pixels} pixels")


def _orientation(image: Image.Image) -> int:
    try:
        value = image.getexif().get(EXIF_ORIENTATION, 1)
    except Exception:  # unreadable EXIF: show the pixels as stored
        return 0
    return value if isinstance(value, int) and 2 <= value <= 8 else 0


def _oriented(size: tuple[int, int], orientation: int) -> tuple[int, int]:
    return (size[1], size[0]) if orientation in TRANSPOSING_ORIENTATIONS else size


def _draft(image: Image.Image, config: ShardsConfig) -> None:
    """Ask the JPEG decoder for a DCT-reduced image no smaller than DRAFT_GAP x the target.

    The resize rules are symmetric in width and height, so the target of the stored
    (unoriented) size is the target of the oriented size, transposed.
    """
    target = target_size(image.size, config)
    if target == image.size:
        return
    image.draft("RGB", (int(target[0] * DRAFT_GAP), int(target[1] * DRAFT_GAP)))


def _decode_turbo(image: ImageFile.ImageFile, data: bytes) -> Image.Image | None:
    """A plain RGB JPEG (no ICC profile, one tile) decoded by simplejpeg's libjpeg-turbo
    at the size Pillow would decode it (after any draft), into an RGBX buffer that Pillow
    maps without a copy: the same pixels as Pillow's own decoder, 10-15% less decode time.
    None where that does not apply, or where simplejpeg refuses the data (it also refuses
    what libjpeg only warns about): Pillow then decodes it, and its verdict stands."""
    if image.format != "JPEG" or "icc_profile" in image.info or not _rgb_jpeg_tile(image):
        return None
    width, height = image.size
    try:
        pixels = simplejpeg.decode_jpeg(data, colorspace="RGBX", min_width=width, min_height=height)
    except ValueError:
        return None
    if pixels.shape != (height, width, 4):
        return None
    return Image.frombuffer("RGBX", (width, height), pixels, "raw", "RGBX", 0, 1)


def _decode_to_rgbx(image: ImageFile.ImageFile) -> None:
    """Have libjpeg-turbo write an RGB JPEG's pixels in Pillow's own 4-byte layout (its
    JCS_EXT_RGBX output), so that Pillow copies them as they are instead of widening each
    3-byte pixel: the same pixels, ~5% less decode time. Only for a single-tile RGB decode
    and where Pillow's libjpeg is libjpeg-turbo (plain libjpeg has no RGBX output)."""
    if LIBJPEG_TURBO and _rgb_jpeg_tile(image):
        image.tile = [image.tile[0]._replace(args=("RGBX", ""))]


def _rgb_jpeg_tile(image: ImageFile.ImageFile) -> bool:
    """One JPEG tile that libjpeg decodes to RGB (from YCbCr, or RGB as stored)."""
    tiles = image.tile
    return (
        image.mode == "RGB"
        and len(tiles) == 1
        and tiles[0].codec_name == "jpeg"
        and tiles[0].args == ("RGB", "")
    )


def to_rgb(image: Image.Image) -> Image.Image:
    """The image in sRGB, without `info` (so no profile or colour key is written out):
    converted from its ICC profile if it has a usable one, transparency over white, 16-bit
    and float scaled to 8 bits."""
    icc = image.info.get("icc_profile")
    direct = image.mode in CMS_MODES and "transparency" not in image.info
    source = image if direct else _pixels_to_rgb(image)
    converted = _to_srgb(source, icc) if icc else None
    if converted is None:
        converted = _pixels_to_rgb(source) if direct else source
    converted.info = {}
    return converted


def _pixels_to_rgb(image: Image.Image) -> Image.Image:
    """RGB from the pixel values alone (no colour management)."""
    mode = image.mode
    if "transparency" in image.info and mode in ("P", "RGB", "L", "1"):
        return _over_white(_with_key_alpha(image))  # a colour key (tRNS) or a palette alpha
    if mode == "P":
        return image.convert("RGB")
    if mode in ALPHA_MODES:
        return _over_white(image.convert("RGBA"))
    if mode in DIRECT_RGB_MODES:
        return image if mode == "RGB" else image.convert("RGB")
    if mode in HIGH_DEPTH_MODES:
        return _high_depth_to_rgb(image)
    raise ImageDecodeError("unsupported mode", mode)


def _to_srgb(image: Image.Image, icc: bytes) -> Image.Image | None:
    """`image` converted from the profile `icc` to sRGB, or None if the profile is unusable
    (unreadable, or for another colour space than the pixels')."""
    transform = _srgb_transform(icc, image.mode)
    if transform is None:
        return None
    try:
        return transform.apply(image)
    except (ImageCms.PyCMSError, OSError, ValueError):
        return None


@functools.lru_cache(maxsize=32)
def _srgb_transform(icc: bytes, mode: str) -> ImageCms.ImageCmsTransform | None:
    """The LittleCMS transform from `icc` (for pixels in `mode`) to sRGB, built once per
    profile: web images share a handful of profiles."""
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        return ImageCms.buildTransform(source, SRGB, mode, "RGB")
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return None


def _with_key_alpha(image: Image.Image) -> Image.Image:
    """RGBA of an image with a colour key. A 16-bit RGB PNG is decoded to its high bytes
    while its key stays 16-bit; a key with a component over 255 is compared at that depth
    (its high bytes), instead of matching nothing and leaving the key colour visible."""
    key = image.info.get("transparency")
    if image.mode == "RGB" and isinstance(key, tuple) and max(key, default=0) > 255:
        high = tuple(int(v) >> 8 for v in key)
        rgba = image.convert("RGBA")
        pixels = np.asarray(image)
        alpha = np.where(np.all(pixels == np.array(high, np.uint8), axis=-1), 0, 255)
        rgba.putalpha(Image.fromarray(alpha.astype(np.uint8), mode="L"))
        return rgba
    return image.convert("RGBA")


def _over_white(rgba: Image.Image) -> Image.Image:
    canvas = Image.new("RGB", rgba.size, WHITE)
    canvas.paste(rgba, mask=rgba.getchannel("A"))
    return canvas


def _high_depth_to_rgb(image: Image.Image) -> Image.Image:
    """Integer images are taken as 16-bit (65535 is white, 257 levels per 8-bit step)
    whatever their own maximum; floats are clipped to 0..255. A colour key (the 16-bit
    grey value of a `tRNS` chunk) is compared at full depth and shown white."""
    values = np.asarray(image)
    pixels = values.astype(np.float64)
    if image.mode != "F":
        pixels = pixels / 257.0
    grey = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
    key = image.info.get("transparency")
    if image.mode != "F" and isinstance(key, int) and not isinstance(key, bool):
        grey[values == key] = 255
    return Image.fromarray(grey, mode="L").convert("RGB")


def _decode_reason(exc: Exception) -> str:
    text = str(exc).lower()
    if "truncated" in text or "not enough" in text or isinstance(exc, EOFError):
        return "truncated"
    return "broken image"


def _describe(exc: BaseException) -> str:
    message = str(exc).strip() or "no message"
    return f"{type(exc).__name__}: {message}"[:300]


# ---------------------------------------------------------------- resizing


def should_resize(size: tuple[int, int], config: ShardsConfig) -> bool:
    """Whether the resize mode applies to an image of `size` (img2dataset's rule)."""
    side = config.image_size
    if config.resize_mode in ("keep_ratio", "center_crop"):
        return not config.resize_only_if_bigger or min(size) > side
    if config.resize_mode in ("border", "keep_ratio_largest"):
        return not config.resize_only_if_bigger or max(size) > side
    return False


def target_size(size: tuple[int, int], config: ShardsConfig) -> tuple[int, int]:
    """The size the image is scaled to, before any crop or pad; `size` if left alone."""
    if not should_resize(size, config):
        return size
    width, height = size
    reference = max(size) if config.resize_mode in ("border", "keep_ratio_largest") else min(size)
    scale = config.image_size / reference
    return (max(1, round(width * scale)), max(1, round(height * scale)))


def resize_image(
    image: Image.Image, config: ShardsConfig, original: tuple[int, int] | None = None
) -> Image.Image:
    """The image scaled per `config.resize_mode`, then cropped or padded to a square.

    `original` is the size before any draft reduction: sizes are computed from it so a
    draft-decoded image comes out exactly as large as a fully decoded one.
    """
    original = original or image.size
    return crop_or_pad(scale_image(image, config, original), config, original)


def scale_image(image: Image.Image, config: ShardsConfig, original: tuple[int, int]) -> Image.Image:
    """The image at `target_size(original)`, antialiased down or LANCZOS up."""
    size = target_size(original, config)
    if size == image.size:
        return image
    resample = DOWNSCALE if size[0] < image.width else UPSCALE
    return image.resize(size, resample, reducing_gap=REDUCING_GAP)


def crop_or_pad(image: Image.Image, config: ShardsConfig, original: tuple[int, int]) -> Image.Image:
    """A scaled image cropped (center_crop) or padded (border) to the square."""
    if not should_resize(original, config):
        return image
    if config.resize_mode == "center_crop":
        return center_crop(image, config.image_size)
    if config.resize_mode == "border":
        return pad_square(image, config.image_size)
    return image


def center_crop(image: Image.Image, side: int) -> Image.Image:
    """The centre `side` x `side` square (the image must be at least that big)."""
    left = (image.width - side) // 2
    top = (image.height - side) // 2
    return image.crop((left, top, left + side, top + side))


def pad_square(image: Image.Image, side: int) -> Image.Image:
    """The image centred on a white `side` x `side` square."""
    if image.size == (side, side):
        return image
    canvas = Image.new("RGB", (side, side), WHITE)
    canvas.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
    return canvas


def encode_image(image: Image.Image, encode_format: str, quality: int) -> bytes:
    """The image encoded as jpg or webp at `quality`, or as png (lossless, quality unused)."""
    if encode_format not in SAVE_FORMATS:
        raise ImageResizeError("unsupported encode format", encode_format)
    buffer = io.BytesIO()
    if encode_format == "png":
        image = image.convert("RGB") if image.mode == "RGBX" else image  # PNG has no RGBX
        image.save(buffer, "PNG", compress_level=6)
    else:
        image.save(buffer, SAVE_FORMATS[encode_format], quality=quality)
    return buffer.getvalue()
