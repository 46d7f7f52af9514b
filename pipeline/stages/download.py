"""`python -m pipeline download`: img2dataset's command line and output, on the shards stage's
machinery (the async downloader, the image threads, the executors), curation off.

    python -m pipeline download --url_list urls.parquet --input_format parquet \\
        --url_col url --caption_col caption --output_format webdataset \\
        --output_folder out --processes_count 2 --image_size 256 --resize_mode keep_ratio

Flags are img2dataset's, spelled and defaulted as img2dataset does (`--flag value` or
`--flag=value`; lists as `'["a","b"]'`), plus `--config FILE` and `--set key=value`. A flag
of img2dataset's that this command does not carry out is one error line unless given its
img2dataset default (which is what runs).

    1. plan (driver): each input file is read once and cut into shards of
       `number_sample_per_shard` rows in input order; shard ids run on across files.
       Each shard's rows go to `_tmp/{shard}.feather`, as img2dataset does.
    2. download (map, one task per shard, `download_task`): the rows are fetched and
       processed as in the shards stage; img2dataset's image rules (min_image_size,
       max_image_area, max_aspect_ratio) and hash check apply; the shard is written in the
       output format (`shards.formats`), its temporary input removed.

The workers' server process starts first and imports the task while this process reads
the input: this module imports neither the downloader nor the image code.

Output is img2dataset's: key = 10^ceil(log10(samples per shard)) x shard + row index,
padded to that many digits plus 5; every input row in the shard's parquet with `status`
(success, failed_to_download, failed_to_resize) and `error_message`; img2dataset's
columns and `.json` fields, then ours: `phash` (16 hex digits, `imagehash.hex_to_hash`
reads it) and `image_bytes` (the downloaded size). `exif` is read with Pillow, keyed as
exifread's `details=False` names them ("Image Make", "EXIF ExposureTime").

The resolved config and the run's totals go to `_run/` (`config.toml`,
`download_stats.json`). Incremental modes: `incremental` skips the shards whose
`_stats.json` exists, `overwrite` empties the output folder first, `extend` numbers new
shards after the highest existing one. Every output is written under a temporary name and
renamed (a kill leaves no partial tar; the next run removes the temporaries). A run where
nothing could be downloaded ends with one error line naming the main reason and its fix
(exit 2); most rows failing for one reason is a warning.
"""

from __future__ import annotations

import argparse
import ast
import functools
import json
import logging
import math
import os
import re
import time
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from core import storage
from core.config import PipelineConfig, load_config, save_config
from core.errors import PipelineError
from core.failures import failure_summary
from core.io import clear_done, remove_stale_temporaries
from core.progress import Progress
from core.record import STATUS_FAILED_DOWNLOAD, STATUS_SUCCESS
from core.stats import StageStats
from executors import make_executor
from pipeline.stages.download_job import DownloadJob, DownloadOptions
from shards.formats import remove_stale_folders
from shards.layout import shard_name, stats_path

log = logging.getLogger(__name__)

DISTRIBUTORS = {"multiprocessing": "local", "ray": "ray"}
DEFAULT_DIRECTIVES = ("noai", "noimageai", "noindex", "noimageindex")
# img2dataset flags not carried out here, with the default that is what runs.
UNSUPPORTED: dict[str, Any] = {
    "enable_wandb": False,
    "wandb_project": "img2dataset",
    "bbox_col": None,
    "skip_reencode": False,
    "disable_all_reencoding": False,
    "upscale_interpolation": "lanczos",
    "downscale_interpolation": "area",
    "subjob_size": 1000,
    "max_shard_retry": 1,
    "user_agent_token": None,
    "oom_shard_count": 5,
}
# What the workers' server process imports before it forks them: the shard task and,
# through it, the downloader and the image code (this module imports neither).
WORKER_MODULES = ["pipeline.stages.download_task"]
# Our config and totals, in a folder: img2dataset reads every *.json at the top as a shard.
RUN_FOLDER = "_run"


# ------------------------------------------------------------------ the flags


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline download", add_help=True)
    for name in (
        "url_list", "output_folder", "input_format", "url_col", "caption_col",
        "save_additional_columns", "output_format", "processes_count", "thread_count",
        "image_size", "resize_mode", "resize_only_if_bigger", "encode_format",
        "encode_quality", "min_image_size", "max_image_area", "max_aspect_ratio",
        "number_sample_per_shard", "retries", "timeout", "disallowed_header_directives",
        "compute_hash", "verify_hash", "incremental_mode", "distributor", "extract_exif",
        *UNSUPPORTED,
    ):  # fmt: skip
        parser.add_argument(f"--{name}", nargs="?", const="True", default=None)
    parser.add_argument("--config", help="TOML config file")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("-q", "--quiet", action="store_true")
    return parser


def literal(text: str | None) -> Any:
    """A flag's value as fire reads it: a Python literal if it is one, else the string."""
    if text is None:
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return {"true": True, "false": False, "none": None}.get(text.lower(), text)


def as_list(value: Any, flag: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = [part for part in re.split(r"[,\s]+", value.strip("[]() ")) if part]
    if not isinstance(value, (list, tuple)):
        raise PipelineError(f"download: --{flag} must be a list, got {value!r}")
    return tuple(str(item) for item in value)


def parse_flags(argv: list[str]) -> tuple[DownloadOptions, PipelineConfig, bool]:
    """The options, the pipeline config (image settings from the flags) and --quiet."""
    args, unknown = build_parser().parse_known_args(argv)
    if unknown:
        raise PipelineError(f"download: unknown argument {unknown[0]} (img2dataset's flags only)")
    ours = ("config", "overrides", "quiet")
    flags = {k: literal(v) for k, v in vars(args).items() if k not in ours}
    for name, default in UNSUPPORTED.items():
        if flags[name] is not None and flags[name] != default:
            raise PipelineError(
                f"download: --{name} is not supported (only img2dataset's default, {default!r})"
            )
    if flags["url_list"] is None:
        raise PipelineError("download: --url_list is required")
    options = make_options(flags)
    config = load_config(args.config, [*image_overrides(flags, options), *args.overrides])
    return options, config, bool(args.quiet)


def make_options(flags: dict[str, Any]) -> DownloadOptions:
    given = {k: v for k, v in flags.items() if v is not None}
    verify = as_list(given.get("verify_hash"), "verify_hash")
    if verify is not None and len(verify) != 2:
        raise PipelineError("download: --verify_hash is [column, hash type]")
    compute = given.get("compute_hash", "sha256")
    options = DownloadOptions(
        url_list=str(given["url_list"]),
        output_folder=str(given.get("output_folder", "images")),
        input_format=str(given.get("input_format", "txt")),
        url_col=str(given.get("url_col", "url")),
        caption_col=None if given.get("caption_col") is None else str(given["caption_col"]),
        save_additional_columns=as_list(given.get("save_additional_columns"), "columns") or (),
        output_format=str(given.get("output_format", "files")),
        number_sample_per_shard=int(given.get("number_sample_per_shard", 10000)),
        compute_hash=None if compute in (None, "None", "") else str(compute),
        verify_hash=(verify[0], verify[1]) if verify else None,
        incremental_mode=str(given.get("incremental_mode", "incremental")),
        extract_exif=bool(given.get("extract_exif", True)),
        max_image_area=float(given.get("max_image_area", math.inf)),
        max_aspect_ratio=float(given.get("max_aspect_ratio", math.inf)),
        min_image_size=int(given.get("min_image_size", 0)),
    )
    options.check()
    return options


def image_overrides(flags: dict[str, Any], options: DownloadOptions) -> list[str]:
    """`--set`-style overrides for img2dataset's image flags, with img2dataset's defaults;
    the image rules are img2dataset's (checked here), curation's are off."""
    given = {k: v for k, v in flags.items() if v is not None}
    distributor = str(given.get("distributor", "multiprocessing"))
    if distributor not in DISTRIBUTORS:
        raise PipelineError(f"download: --distributor must be {' or '.join(DISTRIBUTORS)}")
    directives = as_list(given.get("disallowed_header_directives"), "disallowed_header_directives")
    if directives is not None and directives and set(directives) != set(DEFAULT_DIRECTIVES):
        raise PipelineError(
            "download: --disallowed_header_directives takes img2dataset's list "
            f"({', '.join(DEFAULT_DIRECTIVES)}) or [] (none)"
        )
    threads = int(given.get("thread_count", 256))
    encode_format = str(given.get("encode_format", "jpg"))
    values: dict[str, Any] = {
        "shards.image_size": int(given.get("image_size", 256)),
        "shards.resize_mode": str(given.get("resize_mode", "border")),
        "shards.resize_only_if_bigger": bool(given.get("resize_only_if_bigger", False)),
        "shards.encode_format": encode_format,
        "shards.samples_per_shard": options.number_sample_per_shard,
        "shards.retries": int(given.get("retries", 0)),
        "shards.timeout": float(given.get("timeout", 10)),
        "shards.concurrency": threads,
        "shards.per_host_connections": threads,
        "shards.threads": processing_threads(
            threads, distributor, int(given.get("processes_count", 1))
        ),
        "shards.respect_opt_out": directives is None or bool(directives),
        "shards.min_image_side": 0,
        "shards.max_aspect_ratio": math.inf,
        "shards.min_image_bytes": 0,
        "executor.kind": DISTRIBUTORS[distributor],
        # img2dataset's ray distributor ignores processes_count: every shard goes to the
        # cluster and Ray places them by its CPUs (workers 0). `--set executor.workers=N`,
        # applied after these, still caps the tasks in flight.
        "executor.workers": 0 if distributor == "ray" else int(given.get("processes_count", 1)),
        "workdir": options.output_folder,
    }
    if encode_format != "png":  # for png img2dataset's quality is the compression level
        values["shards.encode_quality"] = int(given.get("encode_quality", 95))
    return [f"{key}={toml_value(value)}" for key, value in values.items()]


def processing_threads(thread_count: int, distributor: str, processes: int) -> int:
    """Threads that decode, resize and encode in each process. 0 (in the event loop's
    thread, see `fetch_and_handle`) where each process has a core to itself: on Ray, which
    gives each task a CPU, and with at least as many processes as cores. Otherwise one per
    8 of img2dataset's download threads, 2 to 16: Pillow releases the GIL, so one process
    decodes on several cores."""
    if distributor == "ray" or processes >= (os.cpu_count() or 1):
        return 0
    return max(2, min(16, thread_count // 8))


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    if isinstance(value, str):
        return json.dumps(value)
    return str(value)


# ------------------------------------------------------------------ pass 1: the plan


def input_files(options: DownloadOptions) -> list[str]:
    """The URL list, or the `*.{input_format}` files of a folder, sorted."""
    location = options.url_list
    if storage.is_dir(location):
        suffix = "." + options.input_format
        files = storage.list_files(location, suffix)
        if not files:
            raise PipelineError(f"download: no *{suffix} file in {location}")
        return files
    if not storage.exists(location):
        raise PipelineError(f"download: no such URL list: {location}")
    return [location]


def read_input(location: str, options: DownloadOptions) -> pa.Table:
    """One input file with img2dataset's column names (url, caption, the hash type)."""
    fmt = options.input_format
    try:
        table = _read(location, fmt)
    except (pa.ArrowInvalid, ValueError, OSError, UnicodeDecodeError) as exc:
        raise PipelineError(f"download: cannot read {location} as {fmt}: {exc}") from None
    renames = {options.url_col: "url"}
    if options.caption_col is not None:
        renames[options.caption_col] = "caption"
    if options.verify_hash is not None:
        renames[options.verify_hash[0]] = options.verify_hash[1]
    if fmt.startswith("txt"):
        renames = {"url": "url"}
    missing = [name for name in renames if name not in table.column_names]
    missing += [c for c in options.save_additional_columns if c not in table.column_names]
    if missing:
        raise PipelineError(f"download: {location} has no column {', '.join(missing)}")
    table = table.rename_columns([renames.get(name, name) for name in table.column_names])
    return table.select(options.columns)


def _read(location: str, fmt: str) -> pa.Table:
    compression = "gzip" if fmt.endswith(".gz") else None
    with fsspec.open(location, "rb", compression=compression) as handle:
        if fmt == "parquet":  # not pq.read_table: its dataset machinery imports pandas
            return pq.ParquetFile(handle).read()
        if fmt.startswith("txt"):
            lines = handle.read().decode("utf-8").splitlines()
            return pa.table({"url": [line.strip() for line in lines if line.strip()]})
        if fmt.startswith("csv"):
            return pa_csv.read_csv(handle)
        if fmt.startswith("tsv"):
            return pa_csv.read_csv(handle, parse_options=pa_csv.ParseOptions(delimiter="\t"))
        if fmt.startswith("jsonl"):
            return pa_json.read_json(handle)
        return pa.Table.from_pylist(json.load(handle))


def existing_shards(folder: str) -> list[int]:
    """Ids of the shards whose `_stats.json` exists (img2dataset's test of a done shard)."""
    names = storage.list_names(folder, "_stats.json") if storage.is_dir(folder) else []
    return sorted(int(n.split("_")[0]) for n in names if n.split("_")[0].isdigit())


def plan_shards(options: DownloadOptions) -> list[tuple[int, str]]:
    """(shard id, its rows' temporary file) of every shard still to download."""
    folder = options.output_folder
    if options.incremental_mode == "overwrite":
        storage.remove_tree(folder)
    done = set(existing_shards(folder))
    first = max(done, default=-1) + 1 if options.incremental_mode == "extend" else 0
    if options.incremental_mode == "extend":
        done = set()
    size = options.number_sample_per_shard
    tmp = storage.join(folder, "_tmp")
    todo: list[tuple[int, str]] = []
    rows = 0
    for location in input_files(options):
        table = read_input(location, options)
        rows += table.num_rows
        count = math.ceil(table.num_rows / size)
        for index in range(count):
            shard = first + index
            if shard not in done:
                todo.append((shard, write_rows(tmp, shard, table.slice(index * size, size))))
        first += count
    if rows == 0:
        raise PipelineError(f"download: {options.url_list} holds no URL")
    return todo


def write_rows(tmp: str, shard: int, rows: pa.Table) -> str:
    location = storage.join(tmp, f"{shard}.feather")
    with (
        storage.atomic_path(location) as path,
        pa.OSFile(str(path), "wb") as sink,
        pa.ipc.new_file(sink, rows.schema) as writer,
    ):
        writer.write_table(rows)
    return location


# ------------------------------------------------------------------ pass 2: download


def run_shard(job: DownloadJob, spec: tuple[int, str]) -> dict[str, Any]:
    """The task of shard `spec[0]`, whose rows are in `spec[1]` (`download_task`)."""
    from pipeline.stages.download_task import download_shard

    return download_shard(job, spec)


# ------------------------------------------------------------------ the command


def run_download(
    options: DownloadOptions, config: PipelineConfig, quiet: bool = False
) -> StageStats:
    """Plan, download every shard on the executor, then the summary; returns the totals."""
    started = time.perf_counter()
    folder = options.output_folder
    executor = make_executor(
        config.executor.kind, config.executor.workers, config.executor.ray_address,
        preload=WORKER_MODULES,
    )  # fmt: skip
    with executor:
        executor.start()  # the workers get ready while the input is read
        remove_stale_temporaries(folder)  # what a killed run was writing
        remove_stale_folders(folder)
        todo = plan_shards(options)
        save_config(config, storage.join(folder, RUN_FOLDER, "config.toml"))
        if not todo:
            log.info("download: every shard of %s is already in %s", options.url_list, folder)
        job = DownloadJob(options, config.shards)
        with Progress("download", "shards", len(todo), quiet) as progress:
            infos = progress.drain(executor.map(functools.partial(run_shard, job), todo))
    storage.remove_tree(storage.join(folder, "_tmp"))
    stats = download_stats(infos)
    stats.seconds = time.perf_counter() - started
    stats.save(storage.join(folder, RUN_FOLDER, "download_stats.json"))
    report(stats, infos, folder)
    return stats


def download_stats(infos: list[dict[str, Any]]) -> StageStats:
    stats = StageStats("download")
    for info in infos:
        stats.seen += int(info["rows"])
        stats.kept += int(info["statuses"].get(STATUS_SUCCESS, 0))
        for reason, n in info["reasons"].items():
            stats.drop(reason, n)
        for status, n in info["statuses"].items():
            stats.count(status, n)
    stats.count("shards", len(infos))
    return stats


def report(stats: StageStats, infos: list[dict[str, Any]], folder: str) -> None:
    if not infos:
        return
    summary = failure_summary(stats.seen, stats.kept, dict(stats.dropped))
    if stats.counts[STATUS_FAILED_DOWNLOAD] == stats.seen:
        for info in infos:  # not done: a rerun with the fix downloads them again
            storage.remove(stats_path(folder, int(info["shard"])))
            clear_done(folder, shard_name(int(info["shard"])))
        raise PipelineError(
            f"download: no image was downloaded: {summary or 'no row was fetched'}; every "
            f"row is in the shard parquet files of {folder} with its error_message"
        )
    if summary is not None:
        log.warning("download: %s", summary)
    log.info(
        "download: %d of %d rows in %d shards of %s (%.1f s)",
        stats.kept, stats.seen, len(infos), folder, stats.seconds,
    )  # fmt: skip


def main(argv: list[str]) -> StageStats:
    """Parse img2dataset's flags and run (the CLI's `download` command)."""
    options, config, quiet = parse_flags(argv)
    return run_download(options, config, quiet)
