"""`python -m bench [name ...]`: run the benchmarks (all by default) and print the ratios."""

from __future__ import annotations

import argparse
import importlib
import sys

from bench.common import BENCH_DIR, BenchResult, render_table
from core.io import write_json

BENCHMARKS = (
    "matching", "language", "download", "balance", "neardup", "curate", "shuffle", "warc",
    "openclip", "crawl", "worldwide",
)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", help=f"any of: {', '.join(BENCHMARKS)}")
    names = parser.parse_args(argv).names or list(BENCHMARKS)
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark {unknown[0]!r}; choose from {', '.join(BENCHMARKS)}")
    results: list[BenchResult] = []
    for name in names:
        print(f"bench: running {name} ...", file=sys.stderr, flush=True)
        results.append(importlib.import_module(f"bench.{name}").run())
    print(render_table(results))
    write_json(BENCH_DIR / "results.json", [r.to_dict() for r in results])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
