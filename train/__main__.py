"""Entry point for torchrun: `torchrun --nproc_per_node 2 -m train --shards DIR --out DIR`.

`--set key=value` overrides fields of the train config (`--set batch_size=32`), as
`--set train.key=value` would in the pipeline's CLI. The CLI proper is `openwit train`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

from pipeline.config import load_config
from train.data import resolve_shards
from train.trainer import train


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m train", description=__doc__)
    parser.add_argument("--shards", required=True, help="shard folder, brace pattern or list")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--eval", type=Path, default=None, help="zero-shot eval folder")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args = parse_args(argv)
    config = load_config(None, [f"train.{item}" for item in args.set]).train
    result = train(config, resolve_shards(args.shards), args.out, args.eval)
    if os.environ.get("RANK", "0") == "0":
        print(json.dumps(result.to_dict(), indent=2))


if __name__ == "__main__":
    main()
