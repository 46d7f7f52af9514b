"""Serve the sandbox web, or write its held-out set.

python -m sandbox serve [--port BASE] [--set sandbox.key=value]
python -m sandbox heldout FOLDER [--set sandbox.key=value]
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from core.config import ConfigError, SandboxConfig, load_config
from sandbox.heldout import write_heldout
from sandbox.server import SandboxError, SandboxWeb


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the sandbox web on loopback until Ctrl-C")
    serve.add_argument(
        "--port", type=int, default=0, help="port of host 0, host i gets BASE+i (0: any free ports)"
    )
    heldout = commands.add_parser("heldout", help="write the held-out labelled images")
    heldout.add_argument("folder", help="folder for images/ and manifest.json")
    for command in (serve, heldout):
        command.add_argument("--config", default=None, help="pipeline config file (TOML)")
        command.add_argument(
            "--set",
            dest="overrides",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override a config value, e.g. sandbox.seed=3 (repeatable)",
        )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = load_config(args.config, args.overrides).sandbox
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.command == "heldout":
        print(write_heldout(config, args.folder))
        return 0
    ports = [args.port + i for i in range(config.hosts)] if args.port else config.ports()
    try:
        asyncio.run(serve_forever(config, ports))
    except SandboxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


async def serve_forever(config: SandboxConfig, ports: list[int] | None) -> None:
    """Serve until cancelled, after printing the seed URLs (one per line) and the hosts."""
    sandbox = SandboxWeb(config, ports)
    await sandbox.start()
    try:
        for url in sandbox.seed_urls:
            print(url, flush=True)
        hosts = " ".join(sandbox.base_urls)
        print(f"# sandbox web (seed {config.seed}) on {hosts}; Ctrl-C stops", flush=True)
        await asyncio.Event().wait()
    finally:
        await sandbox.stop()


if __name__ == "__main__":
    sys.exit(main())
