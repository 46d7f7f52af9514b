"""Entry point for torchrun: `torchrun --nproc_per_node 2 -m train --shards DIR --out DIR`.

`--set key=value` overrides fields of the train config (`--set batch_size=32`), as
`--set train.key=value` would in the pipeline's CLI. The CLI proper is `openwit train`.

`python -m train export RUN_DIR OUT` writes a trained run in open_clip's hub layout
(see `train.export`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from core.config import load_config
from train.data import resolve_shards
from train.export import export_run
from train.trainer import train

log = logging.getLogger("train")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m train", description=__doc__)
    parser.add_argument("--shards", required=True, help="shard folder, brace pattern or list")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--eval", type=Path, default=None, help="zero-shot eval folder")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    return parser.parse_args(argv)


def export_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m train export", description=__doc__)
    parser.add_argument("run_dir", help="a train folder (checkpoint.pt) or a pipeline run")
    parser.add_argument("out", help="output folder for the open_clip hub layout")
    args = parser.parse_args(argv)
    try:
        print(export_run(args.run_dir, args.out))
    except (FileNotFoundError, ValueError) as error:
        log.error("export: %s", error)
        sys.exit(2)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["export"]:
        export_main(argv[1:])
        return
    args = parse_args(argv)
    config = load_config(None, [f"train.{item}" for item in args.set]).train
    result = train(config, resolve_shards(args.shards), args.out, args.eval)
    if os.environ.get("RANK", "0") == "0":
        print(json.dumps(result.to_dict(), indent=2))


if __name__ == "__main__":
    main()
