"""What the HTML report shows, read from the files each stage leaves in the run folder.

Nothing here imports a stage: the funnel comes from `<stage>_stats.json`, the entry
distribution from `curate/entry_counts.json`, downloads and hosts from the shards' parquet
rows, throughput from the per-shard `NNNNN_stats.json`, training from `train/log.jsonl`
and `train/results.json`, the gallery from the tars themselves. Every section is optional:
a run that stopped after curate still gets a page, with the missing parts said so.
"""

from __future__ import annotations

import json
import logging
import tomllib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from core import storage
from core.io import read_json
from core.layout import RunLayout

# Curation drops, by the prefix of their reason, in the order the steps run.
CURATE_STEPS = (
    ("text rules", "text:"),
    ("query matching", "match:"),
    ("exact dedup", "dedup:"),
    ("language", "language:"),
    ("balancing", "balance:"),
)
# Shard-stage drops: the image rules, exact and near dedup; anything else is the download.
SHARD_STEPS = (
    ("download", ""),
    ("image rules", "image:"),
    ("exact image dedup", "dedup:"),
    ("near-dup", "neardup:"),
)
log = logging.getLogger("pipeline.report")

DEFAULT_THRESHOLD = 20_000
BATCH_ROWS = 65_536
SAMPLED_FILES = 64  # parquet files read for downloads, hosts and the gallery
SAMPLED_STATS = 2_000  # per-shard stats files read for throughput


@dataclass
class FunnelStep:
    label: str
    count: int
    stat: str = ""  # the stats key this count is read from ("curate.kept"), if any
    dropped: dict[str, int] = field(default_factory=dict)
    stage: str = ""  # whose stats file holds `dropped`


def stats_of(data: dict[str, Any], stage: str) -> dict[str, Any] | None:
    found: dict[str, Any] | None = data.get("stages", {}).get(stage)
    return found


def funnel(data: dict[str, Any]) -> list[FunnelStep]:
    """pages -> candidates -> each curation step -> downloaded -> image rules -> near-dup
    -> shards; each step with the drops (by reason) that led to its count."""
    steps: list[FunnelStep] = []
    crawl, curate, shards = (stats_of(data, s) for s in ("crawl", "curate", "shards"))
    if crawl:
        steps.append(FunnelStep("pages considered", crawl["seen"], "crawl.seen"))
        steps.append(
            FunnelStep("pages fetched", crawl["kept"], "crawl.kept", crawl["dropped"], "crawl")
        )
        if "candidates" in crawl.get("counts", {}):
            steps.append(
                FunnelStep("candidates", crawl["counts"]["candidates"], "crawl.counts.candidates")
            )
    if curate:
        if not crawl:
            steps.append(FunnelStep("candidates", curate["seen"], "curate.seen"))
        steps += _stage_steps("curate", curate, CURATE_STEPS, "selected")
    if shards:
        steps += _stage_steps("shards", shards, SHARD_STEPS, "in shards")
    return steps


def _stage_steps(
    stage: str, stats: dict[str, Any], order: tuple[tuple[str, str], ...], final: str
) -> list[FunnelStep]:
    groups: dict[str, dict[str, int]] = {label: {} for label, _ in order}
    fallback = next((label for label, prefix in order if not prefix), "other")
    for reason, n in sorted(stats["dropped"].items()):
        label = next((lb for lb, p in order if p and reason.startswith(p)), fallback)
        groups.setdefault(label, {})[reason] = n
    steps, count = [], int(stats["seen"])
    for label, dropped in groups.items():
        if not dropped:
            continue
        count -= sum(dropped.values())
        steps.append(FunnelStep(f"after {label}", count, dropped=dropped, stage=stage))
    steps.append(FunnelStep(final, int(stats["kept"]), f"{stage}.kept"))
    return steps


# ---------------------------------------------------------------- entries and balancing


def saved_setting(layout: RunLayout, stage: str, key: str, default: int) -> int:
    """`<stage>.<key>` of the config the stage saved (else the run's), or `default`."""
    for location in (storage.join(layout.at(stage), "config.toml"), layout.config_file):
        if storage.exists(location):
            try:
                config = tomllib.loads(storage.read_text(location))
                return int(config.get(stage, {}).get(key, default))
            except (tomllib.TOMLDecodeError, ValueError, TypeError):
                continue
    return default


def balance_threshold(layout: RunLayout) -> int:
    """`curate.balance_threshold` of the run's saved config."""
    return saved_setting(layout, "curate", "balance_threshold", DEFAULT_THRESHOLD)


@dataclass
class EntryCounts:
    """Matched and selected pairs per entry, per language ("" for one list), with each
    language's balancing threshold t; `worldwide` is curate/worldwide.json, if written."""

    tables: dict[str, dict[str, dict[str, int]]]
    thresholds: dict[str, int]
    worldwide: dict[str, Any] | None = None

    def values(self, name: str) -> list[int]:
        return [n for table in self.tables.values() for n in table.get(name, {}).values()]

    def head(self, n: int) -> list[tuple[str, str, int, int, float]]:
        """The `n` entries matched most: (language, entry, matched, selected, keep p)."""
        rows = [
            (lang, entry, count, table.get("selected", {}).get(entry, 0))
            for lang, table in self.tables.items()
            for entry, count in table.get("matched", {}).items()
        ]
        rows.sort(key=lambda r: (-r[2], r[0], r[1]))
        return [(*r, keep_probability(r[2], self.thresholds.get(r[0], 0))) for r in rows[:n]]


def entry_counts(layout: RunLayout) -> EntryCounts | None:
    """curate/entry_counts.json: {"matched": {entry: n}, "selected": {...}}, or in
    worldwide mode one such pair of tables per language, with curate/worldwide.json."""
    location = storage.join(layout.curate_dir, "entry_counts.json")
    if not storage.exists(location):
        return None
    found = read_json(location)
    if not isinstance(found, dict):
        return None
    tables = {"": found} if isinstance(found.get("matched"), dict) else found
    tables = {
        str(lang): {
            k: {e: int(n) for e, n in v.items()} for k, v in t.items() if isinstance(v, dict)
        }
        for lang, t in tables.items()
        if isinstance(t, dict) and isinstance(t.get("matched"), dict)
    }
    if not tables:
        return None
    t = balance_threshold(layout)
    worldwide = _worldwide(layout)
    per_language = (worldwide or {}).get("languages", {})
    thresholds = {lang: int(per_language.get(lang, {}).get("t") or t) for lang in tables}
    return EntryCounts(tables, thresholds, worldwide)


def _worldwide(layout: RunLayout) -> dict[str, Any] | None:
    location = storage.join(layout.curate_dir, "worldwide.json")
    if not storage.exists(location):
        return None
    found = read_json(location)
    return found if isinstance(found, dict) else None


def keep_probability(count: int, t: int) -> float:
    """MetaCLIP's p_e = min(1, t / c_e)."""
    return 1.0 if count <= t else t / count


def rank_frequency(counts: list[int]) -> list[tuple[float, float]]:
    ranked = sorted((n for n in counts if n > 0), reverse=True)
    return [(float(i + 1), float(n)) for i, n in enumerate(ranked)]


@dataclass
class BalanceSize:
    """Pairs that reached balancing, the expected number kept (the sum over them of
    1 - prod(1 - p_e) over their entries) and the number kept, overall and per language."""

    reached: Counter[str] = field(default_factory=Counter)
    expected: dict[str, float] = field(default_factory=dict)
    kept: Counter[str] = field(default_factory=Counter)

    def add(self, languages: np.ndarray, expected: np.ndarray, kept: bool) -> None:
        names, which = np.unique(languages, return_inverse=True)
        sums = np.bincount(which, weights=expected, minlength=len(names))
        counts = np.bincount(which, minlength=len(names))
        groups = zip(names.tolist(), counts.tolist(), sums.tolist(), strict=True)
        for name, n, total in [("all", len(expected), float(expected.sum())), *groups]:
            self.reached[name] += n
            self.expected[name] = self.expected.get(name, 0.0) + total
            self.kept[name] += n if kept else 0


class KeepChances:
    """log(1 - p_e) per entry, to sum over a whole column of matched lists at once."""

    def __init__(self, matched_counts: dict[str, int], t: int) -> None:
        self.entries = pa.array(list(matched_counts), pa.string())
        chances = np.array([keep_probability(n, t) for n in matched_counts.values()] + [1.0])
        with np.errstate(divide="ignore"):
            self.log_miss = np.log1p(-chances)  # an unknown entry (last) counts 0: p = 1

    def expected(self, matched: pa.Array) -> np.ndarray:
        """Per row of a list<string> column: the chance balancing keeps it."""
        flat, parents = pc.list_flatten(matched), pc.list_parent_indices(matched)
        where = pc.fill_null(pc.index_in(flat, value_set=self.entries), len(self.entries))
        logs = np.zeros(len(matched))
        np.add.at(logs, parents.to_numpy(), self.log_miss[where.to_numpy()])
        kept: np.ndarray = -np.expm1(logs)
        return kept


def balance_size(layout: RunLayout, matched_counts: dict[str, int], t: int) -> BalanceSize | None:
    """Expected versus actual size: over the selected pairs and those dropped by balancing,
    a batch at a time (columnar, so a large selection is read, not looped over)."""
    size, chances = BalanceSize(), KeepChances(matched_counts, t)
    columns = ["matched", "language", "drop_reason"]
    for location, kept in ((layout.selected, True), (layout.dropped, False)):
        for batch in iter_batches(location, columns):
            if "matched" not in batch.schema.names:
                continue
            if not kept:
                reasons = (
                    batch.column("drop_reason") if "drop_reason" in batch.schema.names else None
                )
                if reasons is None:
                    continue
                batch = batch.filter(pc.fill_null(pc.starts_with(reasons, "balance:"), False))
            if batch.num_rows:
                size.add(_languages(batch), chances.expected(batch.column("matched")), kept)
    return size if size.reached else None


def _languages(batch: pa.RecordBatch) -> np.ndarray:
    if "language" not in batch.schema.names:
        return np.full(batch.num_rows, "unknown", dtype=object)
    column = pc.fill_null(batch.column("language"), "unknown")
    return np.asarray(column.to_pylist(), dtype=object)


# ---------------------------------------------------------------- parquet rows


def iter_batches(location: str, columns: list[str]) -> Iterator[pa.RecordBatch]:
    """The batches of a parquet folder (or file), with those of `columns` it has."""
    if not storage.exists(location):
        return
    files = [location] if storage.is_file(location) else storage.list_files(location, ".parquet")
    for name in files:
        try:
            with storage.open_input(name, "rb") as handle:
                parquet = pq.ParquetFile(handle)
                present = [c for c in columns if c in parquet.schema_arrow.names]
                yield from parquet.iter_batches(batch_size=BATCH_ROWS, columns=present)
        except (OSError, ValueError) as exc:  # pyarrow's errors are both
            log.warning("%s is unreadable, left out of the report: %s", name, exc)


def iter_rows(location: str, columns: list[str]) -> Iterator[dict[str, Any]]:
    """The rows of a parquet folder (or file) as dicts, a batch at a time, so a large
    folder is never held whole."""
    for batch in iter_batches(location, columns):
        yield from batch.to_pylist()


# ---------------------------------------------------------------- downloads and hosts


def spread(n_items: int, n_shown: int) -> list[int]:
    """`n_shown` positions spread evenly over `n_items` (all of them when fewer)."""
    if n_items <= n_shown:
        return list(range(n_items))
    return [i * n_items // n_shown for i in range(n_shown)]


@dataclass
class FileSample:
    """Up to `n` of a folder's files, spread over it, and how many there are in all: the
    report reads rows and members from a sample of files, so its cost stays bounded
    however large the run."""

    files: list[str]
    total: int

    @classmethod
    def of(cls, folder: str, suffix: str, n: int) -> FileSample:
        names = [
            f
            for f in storage.list_files(folder, suffix)
            if not storage.basename(f).startswith("shards_")
        ]
        return cls([names[i] for i in spread(len(names), n)], len(names))

    @property
    def note(self) -> str:
        if len(self.files) == self.total:
            return ""
        return f" (from {len(self.files):,} of {self.total:,} files, spread over the run)"


@dataclass
class Downloads:
    statuses: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    http: Counter[str] = field(default_factory=Counter)
    hosts: dict[str, Counter[str]] = field(default_factory=dict)
    note: str = ""  # where the figures come from, when from a sample of the shards


def downloads(layout: RunLayout) -> Downloads | None:
    """Download outcomes by status, error, HTTP code and host, from the rows of a sample
    of the shards' parquet files (all of them up to `SAMPLED_FILES`)."""
    sample = FileSample.of(layout.shards_dir, ".parquet", SAMPLED_FILES)
    found = Downloads(note=sample.note)
    columns = ["url", "status", "error_message", "http_status"]
    for row in (r for name in sample.files for r in iter_rows(name, columns)):
        status = row.get("status") or "unknown"
        found.statuses[status] += 1
        if row.get("error_message"):
            found.errors[_short(row["error_message"])] += 1
        if row.get("http_status") is not None:
            found.http[str(row["http_status"])] += 1
        host = urlsplit(row.get("url") or "").netloc or "?"
        found.hosts.setdefault(host, Counter()).update({"requests": 1, status: 1})
    return found if found.statuses else None


def _short(text: str, limit: int = 56) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def page_hosts(layout: RunLayout) -> Counter[str]:
    """Candidates found per page host, from (a sample of) the crawl's parts."""
    hosts: Counter[str] = Counter()
    for name in FileSample.of(layout.candidates, ".parquet", SAMPLED_FILES).files:
        for row in iter_rows(name, ["page_url"]):
            hosts[urlsplit(row.get("page_url") or "").netloc or "(no page)"] += 1
    return hosts


def politeness(layout: RunLayout) -> dict[str, dict[str, Any]] | None:
    """Per-host politeness figures where the crawl recorded them (`crawl/hosts.json`:
    host -> {requests, delays, robots_skips, ...})."""
    location = storage.join(layout.crawl_dir, "hosts.json")
    if not storage.exists(location):
        return None
    found = read_json(location)
    if not isinstance(found, dict):
        return None
    return {str(h): v for h, v in found.items() if isinstance(v, dict)}


def throughput(layout: RunLayout) -> list[tuple[float, float]]:
    """(seconds since the first shard started, samples written so far) at each finished
    shard, from the per-shard stats files (a spread sample of them, scaled, past
    `SAMPLED_STATS`)."""
    sample = FileSample.of(layout.shards_dir, "_stats.json", SAMPLED_STATS)
    shards = []
    for name in sample.files:
        stats = read_json(name)
        if "start_time" in stats and "end_time" in stats:
            shards.append(
                (
                    float(stats["start_time"]),
                    float(stats["end_time"]),
                    int(stats.get("successes", 0)),
                )
            )
    if not shards:
        return []
    start, scale = min(s for s, _, _ in shards), sample.total / len(sample.files)
    points, total = [(0.0, 0.0)], 0
    for _, end, n in sorted(shards, key=lambda s: s[1]):
        total += n
        points.append((end - start, total * scale))
    return points


# ---------------------------------------------------------------- training


def train_log(layout: RunLayout) -> list[dict[str, Any]]:
    location = storage.join(layout.train_dir, "log.jsonl")
    if not storage.exists(location):
        return []
    records = []
    for line in storage.read_text(location).splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and "step" in record:
            records.append(record)
    return records
