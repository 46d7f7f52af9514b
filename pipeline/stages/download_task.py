"""The task of `python -m pipeline download`: one shard's rows downloaded, processed and
written in img2dataset's output format. It runs in the workers (whose server process
imports it first), so the command's own process imports the downloader and the image code
only when it runs the tasks itself (one process); see `pipeline.stages.download` for the
command and the output it writes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import io
import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from PIL import ExifTags, Image

from core import storage
from core.record import STATUS_FAILED_DOWNLOAD, STATUS_OPTED_OUT, STATUS_SUCCESS, Pair
from core.stats import StageStats
from pipeline.stages.download_job import DownloadJob, DownloadOptions
from pipeline.stages.shards import fetch_and_handle
from shards.formats import OutputShardWriter
from shards.images import process_or_fail
from shards.layout import index_digits, sample_key
from shards.writer import phash_hex

FAILED_TO_RESIZE = "failed_to_resize"
OPTED_OUT_MESSAGE = "Use of image disallowed by X-Robots-Tag directive"
EXIF_GROUPS = {0x8769: "EXIF", 0x8825: "GPS", 0xA005: "Interoperability"}
NO_TAGS = json.dumps({})
# pyarrow imports pandas (where it is installed) on its first conversion from Python
# objects: have that happen once here, in the workers' server process, not in every worker
# as it writes its first shard (~0.25 s of each worker's time).
pa.array([])


@dataclass
class Sample:
    """A processed image ready for the output: encoded bytes, the hash asked for, EXIF."""

    data: bytes
    digest: str | None = None
    exif: str | None = None


def download_shard(job: DownloadJob, spec: tuple[int, str]) -> dict[str, Any]:
    """One task: download, process and write shard `spec[0]` from its rows in `spec[1]`."""
    shard, location = spec
    with storage.open_input(location) as handle:
        rows = pa.ipc.open_file(handle).read_all()
    records = rows.to_pylist()
    digits = index_digits(job.options.number_sample_per_shard)
    pairs = [
        Pair(
            url=_text(record.get("url")), caption=_text(record.get("caption")),
            source="urllist", key=sample_key(shard, index, digits),
        )
        for index, record in enumerate(records)
    ]  # fmt: skip
    expected = _expected_hashes(job.options, records)
    stats = StageStats("download")
    handle_image = functools.partial(process_row, job=job, expected=expected)
    results = asyncio.run(fetch_and_handle(pairs, job.config, stats, handle_image))
    write_output(job, shard, rows.schema, records, results)  # results are in row order
    storage.remove(location)
    reasons = Counter(stats.dropped)  # the downloader's (timeout, http_404...)
    reasons.update(p.drop_reason for p, _ in results if p.drop_reason)  # after download
    statuses = Counter(output_status(p) for p, _ in results)
    return {
        "shard": shard, "rows": len(pairs), "statuses": dict(statuses),
        "reasons": dict(reasons), "dropped": dict(reasons),
    }  # fmt: skip


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _expected_hashes(options: DownloadOptions, records: list[dict[str, Any]]) -> list[str]:
    """The hash each row's image must have (--verify_hash), in row order; [] if none."""
    if options.verify_hash is None:
        return []
    return [_text(record.get(options.verify_hash[1])) for record in records]


def process_row(
    index: int, pair: Pair, data: bytes, job: DownloadJob, expected: list[str]
) -> tuple[Pair, Sample | None]:
    """In a thread: check the hash, process the image, apply img2dataset's image rules."""
    options = job.options
    digest = hashlib.new(options.compute_hash, data).hexdigest() if options.compute_hash else None
    sha256 = digest if options.compute_hash == "sha256" else None
    if expected and digest != expected[index]:
        failed = dataclasses.replace(
            pair, status=STATUS_FAILED_DOWNLOAD, error_message="hash mismatch",
            drop_reason="hash mismatch",
        )  # fmt: skip
        return failed, None
    image, status, error = process_or_fail(data, job.config, sha256)
    if image is None:
        return dataclasses.replace(
            pair, status=FAILED_TO_RESIZE, error_message=error, drop_reason=status
        ), None
    rule = image_rule(image.original_width, image.original_height, options)
    if rule is not None:
        message, reason = rule
        return dataclasses.replace(
            pair, status=FAILED_TO_RESIZE, error_message=message, drop_reason=reason
        ), None
    exif = exif_json(data) if options.extract_exif else None
    return image.annotate(pair), Sample(image.data, digest, exif)


def image_rule(width: int, height: int, options: DownloadOptions) -> tuple[str, str] | None:
    """img2dataset's rules on the decoded size: (its message, our reason) or None."""
    if min(width, height) < options.min_image_size:
        return "image too small", "image:too_small"
    if width * height > options.max_image_area:
        return "image area too large", "image:area"
    if max(width, height) / max(1, min(width, height)) > options.max_aspect_ratio:
        return "aspect ratio too large", "image:aspect"
    return None


def exif_json(data: bytes) -> str | None:
    """The EXIF tags as JSON, named as exifread names them ("Image Make"); None if none."""
    if jpeg_without_app1(data):  # no EXIF and no XMP: nothing to read, no decoder to open
        return NO_TAGS
    try:
        exif = Image.open(io.BytesIO(data)).getexif()
        tags = _named(exif.items(), "Image")
        for ifd, group in EXIF_GROUPS.items():
            if ifd in exif:
                tags.update(_named(exif.get_ifd(ifd).items(), group))
    except Exception:  # unreadable EXIF is no EXIF, as in img2dataset
        return None
    return json.dumps(tags)


def jpeg_without_app1(data: bytes) -> bool:
    """Whether `data` is a JPEG whose headers, up to the scan, have no APP1 segment (the one
    EXIF and XMP live in). False when unsure: anything but a plain run of segments."""
    if not data.startswith(b"\xff\xd8"):
        return False
    at = 2
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            return False
        marker = data[at + 1]
        if marker == 0xE1:  # APP1
            return False
        if marker == 0xDA:  # start of scan: the headers are over
            return True
        if marker in (0xFF, 0x00, 0xD8) or 0xD0 <= marker <= 0xD7 or marker == 0x01:
            return False  # fill bytes or a marker without a length: leave it to Pillow
        at += 2 + int.from_bytes(data[at + 2 : at + 4], "big")
    return False


def _named(items: Any, group: str) -> dict[str, str]:
    names = ExifTags.GPSTAGS if group == "GPS" else ExifTags.TAGS
    found = {}
    for tag, value in items:
        if tag in EXIF_GROUPS or isinstance(value, bytes):
            continue
        found[f"{group} {names.get(tag, tag)}"] = str(value).strip()
    return found


def output_status(pair: Pair) -> str:
    """img2dataset's three statuses: decode failures are failed_to_resize, opt-outs
    failed_to_download."""
    if pair.status == STATUS_OPTED_OUT:
        return STATUS_FAILED_DOWNLOAD
    if pair.status in (STATUS_SUCCESS, STATUS_FAILED_DOWNLOAD):
        return pair.status
    return FAILED_TO_RESIZE


def output_row(
    options: DownloadOptions, record: dict[str, Any], pair: Pair, sample: Sample | None
) -> dict[str, Any]:
    """img2dataset's meta for one row (its `.json` and its parquet row), then ours."""
    skip = options.verify_hash[1] if options.verify_hash else None
    row = {name: value for name, value in record.items() if name != skip}
    status = output_status(pair)
    message = OPTED_OUT_MESSAGE if pair.status == STATUS_OPTED_OUT else pair.error_message
    ok = status == STATUS_SUCCESS
    row |= {
        "key": pair.key,
        "status": status,
        "error_message": None if ok else message,
        "width": pair.width if ok else None,
        "height": pair.height if ok else None,
        "original_width": pair.original_width if ok else None,
        "original_height": pair.original_height if ok else None,
    }
    if options.extract_exif:
        row["exif"] = sample.exif if sample else None
    if options.compute_hash:
        row[options.compute_hash] = sample.digest if sample else None
    row["phash"] = phash_hex(pair.phash) if ok else None
    row["image_bytes"] = pair.image_bytes
    return row


def output_schema(options: DownloadOptions, input_schema: pa.Schema) -> pa.Schema:
    """img2dataset's parquet columns: the input's, key, status... exif, hash; then ours."""
    fields = list(input_schema)
    for name in ("key", "status", "error_message"):
        fields.append(pa.field(name, pa.string()))
    for name in ("width", "height", "original_width", "original_height"):
        fields.append(pa.field(name, pa.int32()))
    if options.extract_exif:
        fields.append(pa.field("exif", pa.string()))
    if options.compute_hash and options.compute_hash not in input_schema.names:
        fields.append(pa.field(options.compute_hash, pa.string()))
    fields += [pa.field("phash", pa.string()), pa.field("image_bytes", pa.int64())]
    return pa.schema(fields)


def write_output(
    job: DownloadJob,
    shard: int,
    input_schema: pa.Schema,
    records: list[dict[str, Any]],
    results: list[tuple[Pair, Sample | None]],
) -> None:
    options = job.options
    schema = output_schema(options, input_schema)
    with OutputShardWriter(
        options.output_folder, shard, schema, options.output_format,
        job.config.encode_format, save_caption=options.caption_col is not None,
    ) as writer:  # fmt: skip
        for record, (pair, sample) in zip(records, results, strict=True):
            row = output_row(options, record, pair, sample)
            writer.write(row, sample.data if sample and row["status"] == STATUS_SUCCESS else None)
