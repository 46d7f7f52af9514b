"""A crawl's state on disk, in one SQLite file: what survives a `kill -9`.

Held there: the seen-set (every normalised URL ever offered), the queue of URLs still to
visit (with their depth), per-host page counts and skips, the trap counters, the pairs
found so far, and the crawl's counters (stats, pages attempted). Memory holds none of it
beyond SQLite's page cache (`CACHE_KIB`), so it is bounded however large the frontier and
the seen-set grow.

Why SQLite: the seen-set needs random lookups and the queue ordered reads and deletes
while both grow; sorted run files would need merges and a separate write-ahead log for
the state between them. SQLite gives keyed lookups, ordered scans and, above all, one
transaction for everything a finished page changes: its pairs, its links (queued and
seen), its trap counts, its queue row removed, the stats. The crawler commits once per
finished page (`commit`), so a killed crawl resumes from its last finished page: the pages
that were in flight are still queued and are fetched again, nothing else is, and no pair
is recorded twice. WAL mode with `synchronous=NORMAL` makes a commit a write to the
operating system's cache (no fsync), which survives the process being killed; only power
loss can take back the last commits, and a rerun then repeats those pages.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from core.record import Pair

CACHE_KIB = 16_384  # SQLite's page cache per crawl
PAIR_COLUMNS = (
    "url", "caption", "page_url", "page_lang", "title", "image_title", "declared_width",
    "declared_height",
)  # fmt: skip

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS seen (url TEXT PRIMARY KEY) WITHOUT ROWID;
-- AUTOINCREMENT: ids never come back after a delete, so "rows after the last one
-- loaded" misses none
CREATE TABLE IF NOT EXISTS queue (
    id INTEGER PRIMARY KEY AUTOINCREMENT, host TEXT NOT NULL, url TEXT NOT NULL,
    depth INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS queue_by_host ON queue (host, id);
CREATE TABLE IF NOT EXISTS hosts (
    host TEXT PRIMARY KEY, added INTEGER NOT NULL, skipped INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS counters (key TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pairs (id INTEGER PRIMARY KEY, {", ".join(PAIR_COLUMNS)});
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
"""

QueueRow = tuple[int, str, int]  # id, url, depth


class CrawlState:
    """The SQLite file of one crawl; every change is pending until `commit`."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        self.db.executescript(SCHEMA)
        self.db.commit()

    def close(self) -> None:
        self.db.close()

    def commit(self) -> None:
        self.db.commit()

    # ------------------------------------------------------------ seen-set

    def mark_seen(self, url: str) -> bool:
        """Record `url` as seen; False if it already was."""
        return self.db.execute("INSERT OR IGNORE INTO seen VALUES (?)", (url,)).rowcount == 1

    def seen_count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM seen").fetchone()[0])

    # ------------------------------------------------------------ queue

    def push(self, host: str, url: str, depth: int) -> None:
        self.db.execute("INSERT INTO queue (host, url, depth) VALUES (?, ?, ?)", (host, url, depth))

    def load(self, host: str, after: int, limit: int) -> list[QueueRow]:
        """Up to `limit` queued rows of `host` with ids above `after`, oldest first."""
        rows = self.db.execute(
            "SELECT id, url, depth FROM queue WHERE host = ? AND id > ? ORDER BY id LIMIT ?",
            (host, after, limit),
        )
        return [(int(i), str(u), int(d)) for i, u, d in rows]

    def remove(self, row_id: int) -> None:
        self.db.execute("DELETE FROM queue WHERE id = ?", (row_id,))

    def remove_queued(self, host: str | None, keep: Iterable[int]) -> int:
        """Delete the queued rows (of `host`, or of every host) except ids in `keep`;
        returns how many went."""
        kept = sorted(keep)
        marks = ", ".join("?" * len(kept))
        where = "host = ? AND " if host is not None else ""
        args: list[Any] = [host] if host is not None else []
        cursor = self.db.execute(f"DELETE FROM queue WHERE {where}id NOT IN ({marks})", args + kept)
        return cursor.rowcount

    def queued_by_host(self) -> dict[str, int]:
        """Queued rows per host, for a resumed crawl."""
        rows = self.db.execute("SELECT host, COUNT(*) FROM queue GROUP BY host ORDER BY host")
        return {str(host): int(n) for host, n in rows}

    # ------------------------------------------------------------ hosts and counters

    def host(self, host: str) -> tuple[int, bool]:
        """(URLs ever queued, skipped) of `host`; (0, False) for a new one."""
        row = self.db.execute("SELECT added, skipped FROM hosts WHERE host = ?", (host,)).fetchone()
        return (0, False) if row is None else (int(row[0]), bool(row[1]))

    def set_host(self, host: str, added: int, skipped: bool) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO hosts VALUES (?, ?, ?)", (host, added, int(skipped))
        )

    def bump(self, key: str) -> int:
        """Add one to counter `key`; returns its new value."""
        row = self.db.execute(
            "INSERT INTO counters VALUES (?, 1) ON CONFLICT (key) DO UPDATE SET n = n + 1 "
            "RETURNING n",
            (key,),
        ).fetchone()
        return int(row[0])

    # ------------------------------------------------------------ pairs and meta

    def add_pairs(self, pairs: list[Pair]) -> None:
        marks = ", ".join("?" * len(PAIR_COLUMNS))
        self.db.executemany(
            f"INSERT INTO pairs ({', '.join(PAIR_COLUMNS)}) VALUES ({marks})",
            [tuple(getattr(p, name) for name in PAIR_COLUMNS) for p in pairs],
        )

    def pair_count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM pairs").fetchone()[0])

    def pairs(self, batch: int = 10_000) -> Iterator[list[Pair]]:
        """The pairs in the order they were found, `batch` at a time."""
        last = 0
        query = f"SELECT id, {', '.join(PAIR_COLUMNS)} FROM pairs WHERE id > ? ORDER BY id LIMIT ?"
        while rows := self.db.execute(query, (last, batch)).fetchall():
            last = int(rows[-1][0])
            yield [
                Pair(**dict(zip(PAIR_COLUMNS, row[1:], strict=True)), source="crawl")
                for row in rows
            ]

    def get(self, key: str) -> Any | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def put(self, key: str, value: Any) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))
