"""`python -m pipeline <command>`: the one entry point the Makefile and users call.

    crawl    collect candidate pairs: the sandbox web, or real sites from --seeds, or the
             rows of an img2dataset-style URL list (--url-list), or Common Crawl archives
             (--wat, --warc)
    curate   text rules, dedup, query matching, language, balancing
    shards   fetch the selected images and write webdataset shards
    download img2dataset's command: its flags (--url_list, --output_folder...), its output
    train    stream the shards into the CLIP trainer (also under torchrun)
    report   print the run report (and write report.html: plots, gallery)
    demo     all of the above, in order, then the report

Every command takes `--config FILE`, `--set key=value` (repeatable, TOML values) and
`--workdir DIR`. Without `--config`, a command continues with the config an earlier command
saved in the run folder. A finished stage is skipped, so rerunning a command resumes it. Bad input
(a missing file, an unknown key, a used port, a run folder that cannot be written, a full disk)
is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from core import storage
from core.config import ConfigError, PipelineConfig, load_config, save_config
from core.errors import PipelineError
from core.layout import RunLayout
from pipeline.report import write_report

log = logging.getLogger("pipeline")

COMMANDS = ("crawl", "curate", "shards", "train", "report", "demo")
REPORTED = ("shards", "train", "report", "demo")  # commands that end by writing the report


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=COMMANDS)
    parser.add_argument("--config", help="TOML config file")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override one config key, e.g. --set crawl.max_pages=100 (repeatable)",
    )  # fmt: skip
    parser.add_argument("--workdir", help="run folder (same as --set workdir=DIR)")
    parser.add_argument(
        "run_dir", nargs="?", metavar="RUN_DIR",
        help="report only: the run folder (python -m pipeline report RUN_DIR)",
    )  # fmt: skip
    parser.add_argument("--seeds", help="file of seed URLs (same as --set crawl.seeds=FILE)")
    parser.add_argument(
        "--url-list", help="csv/tsv/jsonl/parquet of url, caption (--set crawl.url_list=FILE)"
    )
    parser.add_argument(
        "--wat", help="Common Crawl WAT files: file, folder, glob or wat.paths.gz (crawl.wat)"
    )
    parser.add_argument(
        "--warc", help="WARC files of HTML responses: file, folder, glob or paths file (crawl.warc)"
    )
    parser.add_argument(
        "--executor", choices=("local", "ray"),
        help="where the parts run: local processes or a Ray cluster (--set executor.kind=...)",
    )  # fmt: skip
    parser.add_argument(
        "--ray-address",
        help="Ray cluster to use: auto or HOST:PORT (--set executor.ray_address=...)",
    )
    parser.add_argument(
        "--retry-failed", action="store_true",
        help="shards: refetch only the rows a finished run failed to download",
    )  # fmt: skip
    parser.add_argument("-q", "--quiet", action="store_true", help="log warnings only")
    return parser


def resolve_config(args: argparse.Namespace) -> PipelineConfig:
    """--config, else the config saved in --workdir by an earlier command, then --set."""
    config_file = args.config
    if not config_file:
        saved = RunLayout(args.workdir or PipelineConfig().workdir).config_file
        config_file = saved if storage.exists(saved) else None
    overrides = list(args.overrides)
    if args.workdir:
        overrides.append(f"workdir={_toml_string(args.workdir)}")
    if args.seeds:
        overrides.append(f"crawl.seeds={_toml_string(args.seeds)}")
    if args.url_list:
        overrides.append(f"crawl.url_list={_toml_string(args.url_list)}")
    for kind in ("wat", "warc"):
        if getattr(args, kind):
            overrides.append(f"crawl.{kind}={_toml_string(getattr(args, kind))}")
    if args.executor:
        overrides.append(f"executor.kind={_toml_string(args.executor)}")
    if args.ray_address:
        overrides.append(f"executor.ray_address={_toml_string(args.ray_address)}")
    return load_config(config_file, overrides)


def _toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def is_rank_zero() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def stage_runner(stage: str) -> Callable[..., Any]:
    """The runner of one stage, imported only when it runs (so `report` and config errors
    answer without loading torch, and a stage loads only its own libraries)."""
    module = importlib.import_module(f"pipeline.stages.{stage}")
    runner: Callable[..., Any] = getattr(module, f"run_{stage}")
    return runner


def run_command(
    command: str, config: PipelineConfig, quiet: bool = False, retry_failed: bool = False
) -> None:
    if retry_failed:
        if command != "shards":
            raise PipelineError("--retry-failed goes with the shards command")
        from pipeline.stages.shards import run_retry_failed

        run_retry_failed(config, quiet=quiet)
        write_report(config.root)
        return
    if command == "report" and not storage.is_dir(config.root):
        raise PipelineError(f"no run folder at {config.root}: give the workdir of a run")
    if command != "report":
        stages = ["crawl", "curate", "shards", "train"] if command == "demo" else [command]
        for stage in stages:
            started = time.perf_counter()
            if stage == "train":
                stage_runner(stage)(config)
            else:
                stage_runner(stage)(config, quiet=quiet)
            log.info("%s finished in %.1f s", stage, time.perf_counter() - started)
    if command in REPORTED and is_rank_zero():
        text = write_report(config.root)  # report.txt, report.json, report.html
        if command in ("demo", "report"):
            print(text, end="")


USER_ERRORS: tuple[type[Exception], ...] = (ConfigError, PipelineError)


def user_errors() -> tuple[type[Exception], ...]:
    """Errors that are the user's to fix: reported as one line, without a traceback."""
    from crawlers.urllist import UrlListError
    from crawlers.urls import InvalidURLError
    from filters.queries import QueryListError
    from sandbox.server import SandboxError

    return (*USER_ERRORS, SandboxError, QueryListError, InvalidURLError, UrlListError)


# Why a file in the run folder cannot be written: full, read-only, not a folder.
WRITE_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR}
    | {errno.EEXIST, errno.EISDIR}
)
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


@contextlib.contextmanager
def run_folder_errors(root: str) -> Iterator[None]:
    """An OSError writing the run folder (or a full disk anywhere) as one `PipelineError`."""
    try:
        yield
    except OSError as exc:
        if not is_run_folder_error(exc, root):
            raise
        raise PipelineError(
            f"cannot write to the run folder {root}: {exc.strerror or exc}"
        ) from None


def is_run_folder_error(exc: OSError, root: str) -> bool:
    if exc.errno in DISK_FULL_ERRNOS:
        return True
    if exc.errno not in WRITE_ERRNOS or storage.is_remote(root):
        return False
    return any(_inside(name, root) for name in (exc.filename, exc.filename2))


def _inside(name: object, root: str) -> bool:
    if not isinstance(name, (str, os.PathLike)):
        return False
    path, folder = os.path.abspath(os.fspath(name)), os.path.abspath(storage.local(root))
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def download_main(argv: list[str]) -> int:
    """`download`: img2dataset's flags (see `pipeline.stages.download`), the same errors."""
    logging.basicConfig(
        level=logging.WARNING if "-q" in argv or "--quiet" in argv else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    from pipeline.stages.download import main as run_download

    return guarded(lambda: run_download(argv), os.getcwd())


def guarded(work: Callable[[], object], root: str) -> int:
    """Run `work`, which writes under `root`: a user error is one line and exit 2, an
    interrupt one line and 130."""
    try:
        with run_folder_errors(root):
            work()
    except user_errors() as exc:
        print(f"openwit: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("openwit: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["download"]:
        return download_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.run_dir is not None:
        if args.command != "report" or args.workdir:
            parser.error(f"unexpected argument {args.run_dir!r} (RUN_DIR is for report only)")
        args.workdir = args.run_dir
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        config = resolve_config(args)
    except user_errors() as exc:
        print(f"openwit: error: {exc}", file=sys.stderr)
        return 2

    def work() -> None:
        if is_rank_zero() and args.command != "report":
            save_config(config, RunLayout(config.root).config_file)
        run_command(args.command, config, quiet=args.quiet, retry_failed=args.retry_failed)

    return guarded(work, config.root)
