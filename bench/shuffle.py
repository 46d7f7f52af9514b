"""The local keyed reduction against DuckDB and Polars: exact dedup on URL, 1M rows.

Input: a 1M-row candidate table (real alt texts, 10% repeated URLs; `bench.curate`'s
generator). Ours: the hash-bucketed spill the local executor uses (4 producers write an
`Exchange` of 8 buckets, each bucket is read back and keeps the smallest-rank row per URL
with `filters.dedup.first_per_key`, then written). Peers, where installed (`pip install
duckdb polars`; neither is a dependency): DuckDB's `QUALIFY row_number() OVER (PARTITION BY
url ORDER BY rank)` and Polars' streaming `sort().unique()`, each from the same parquet to
a parquet file, one thread each. All three must keep the same number of rows.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from bench.common import REPO, BenchResult, timed
from bench.curate import write_url_list
from bench.matching import real_alt_texts
from core.record import pair_uid
from executors.base import Exchange, bucket_of
from filters.dedup import first_per_key

ROWS = 1_000_000
BUCKETS = 8


def candidate_table(path: Path) -> pa.Table:
    write_url_list(path, ROWS, real_alt_texts())
    table = pq.read_table(path)
    uids = [
        pair_uid(c, u)
        for c, u in zip(table["caption"].to_pylist(), table["url"].to_pylist(), strict=True)
    ]
    return table.append_column("uid", pa.array(uids))


def ours(table: pa.Table, root: Path) -> int:
    exchange = Exchange(str(root / "exchange"), BUCKETS, table.schema)
    step = len(table) // 4
    for i in range(4):
        part = table.slice(i * step, step if i < 3 else None)
        exchange.write(f"p{i}", part, bucket_of(part.column("url"), BUCKETS))
    kept = 0
    for bucket in range(BUCKETS):
        rows = exchange.read_bucket(bucket)
        out = rows.filter(pa.array(first_per_key(rows, "url", rank=("uid",))))
        pq.write_table(out, root / f"ours-{bucket}.parquet")
        kept += out.num_rows
    return kept


def duckdb_dedup(source: Path, root: Path) -> int:
    import duckdb

    con = duckdb.connect()
    con.execute("SET threads=1")
    target = root / "duck.parquet"
    con.execute(
        f"COPY (SELECT * FROM read_parquet('{source}') QUALIFY row_number() OVER "
        f"(PARTITION BY url ORDER BY uid) = 1) TO '{target}' (FORMAT parquet)"
    )
    return int(pq.read_metadata(target).num_rows)


def polars_dedup(source: Path, root: Path) -> int:
    os.environ["POLARS_MAX_THREADS"] = "1"
    import polars as pl

    target = root / "polars.parquet"
    pl.scan_parquet(source).sort(["url", "uid"]).unique(subset=["url"], keep="first").sink_parquet(
        target
    )
    return int(pq.read_metadata(target).num_rows)


def run() -> BenchResult:
    with tempfile.TemporaryDirectory(dir=REPO / "runs") as tmp:
        root = Path(tmp)
        table = candidate_table(root / "urls.parquet")
        source = root / "candidates.parquet"
        pq.write_table(table, source)
        kept, ours_seconds = timed(lambda: ours(table, root))
        peers = []
        for name, fn in (("duckdb", duckdb_dedup), ("polars", polars_dedup)):
            try:
                found, seconds = timed(lambda fn=fn: fn(source, root))  # type: ignore[misc]
            except ImportError:
                continue
            if found != kept:
                raise AssertionError(f"{name} kept {found} rows, ours {kept}")
            peers.append((name, seconds))
    best = min(peers, key=lambda p: p[1]) if peers else ("none installed", ours_seconds)
    others = ", ".join(f"{n} {s:.2f} s" for n, s in peers) or "pip install duckdb polars to compare"
    return BenchResult(
        name="URL dedup (keyed reduction)",
        unit="rows",
        items=ROWS,
        peer=best[0],
        peer_seconds=best[1],
        ours_seconds=ours_seconds,
        note=f"one thread each; ours {ours_seconds:.2f} s (spill + reduce + 8 files), {others}",
    )
