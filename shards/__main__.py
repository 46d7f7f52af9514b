"""`python -m shards browse PATH [--port N]`: serve a shard set on 127.0.0.1 (see
`shards.browse`) until Ctrl-C. A path with no tars is one line on stderr and exit 2."""

from __future__ import annotations

import argparse
import logging
import sys

from shards.browse import ShardBrowser, make_server


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m shards", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=("browse",))
    parser.add_argument("path", help="a folder of .tar shards (or one tar), local or s3://...")
    parser.add_argument("--port", type=int, default=8000, help="port on 127.0.0.1 (0: a free one)")
    parser.add_argument("-q", "--quiet", action="store_true", help="log warnings only")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        browser = ShardBrowser(args.path, quiet=args.quiet)
        server = make_server(browser, args.port)
    except (FileNotFoundError, OSError, ValueError) as exc:
        print(f"openwit: error: {exc}", file=sys.stderr)
        return 2
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    print(f"browse {len(browser.texts):,} samples at {url} (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
