"""Stage 2: curate candidates into the selected pairs, on text alone, as map/reduce passes.

What is true after each pass (per-pair filters commute, so the cheap ones run first, and
language detection, ~1,000x slower than matching, runs once per distinct surviving text):

    screen (map, one task per candidate part):
        text rules            captions with > 2 words, > 5 chars, not junk or file names
        declared size         no image the page declares 1 pixel wide or high (trackers)
        query matching        alt contains at least one query entry (MetaCLIP rules)
        -> kept rows to an exchange bucketed by a hash of the caption
    group by caption (reduce, one task per bucket; every row of a caption is in one task):
        exact dedup on uid    one row per (alt, URL)      (if "uid" in curate.dedup_keys)
        language              each distinct caption detected once, in its bucket
        [dedup on caption]    when it is the next of curate.dedup_keys
    group by URL, then any other dedup key in the order of curate.dedup_keys (reduce):
        exact dedup           one row per image URL (caption, ...), the smallest uid wins
        -> per-entry match counts of the survivors; rows to an exchange by uid range
    counts (a small reduce): c_e summed over buckets, O(entries)
    select by uid range (reduce, one task per range, with the counts broadcast):
        balancing             at most ~t pairs per entry; coins from hash(uid, entry, seed)
        -> curate/selected/range-NNNNN.parquet, each sorted by uid

Worldwide mode (`curate.mode = "worldwide"`, MetaCLIP 2, `filters.worldwide`): screening
does not match; the language step keeps every language that has an entry list, then
matches each caption against its language's list (entries of all languages numbered in
one space); after the counts, each language gets its t (English: curate.balance_threshold)
and balancing uses the t of each entry's language. `worldwide.json` reports the figures.

Every decision is a pure function of the rows sharing a key (a deterministic winner, a
count) or of one row and the seed, so any number of parts, buckets or workers and either
executor select exactly the same pairs. Every candidate ends in `curate/selected/` or in
`curate/dropped/` with its reason; `entry_counts.json` holds the per-entry counts
balancing used (`matched`) and those it kept (`selected`). Each task leaves a marker with
its counts in `curate/_work/`, so a killed stage resumes task by task.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from core import storage
from core.config import PipelineConfig, save_config
from core.errors import PipelineError
from core.io import (
    align,
    done_info,
    is_done,
    mark_done,
    read_parquet,
    remove_stale_temporaries,
    saved_once,
    write_json,
    write_table,
)
from core.layout import RunLayout
from core.parts import finished_parts, part_rows
from core.progress import Progress
from core.record import PAIR_SCHEMA, uid_range
from core.stats import StageStats
from executors import Exchange, Executor, make_executor
from executors.base import bucket_of
from filters import worldwide
from filters.balance import EntryIndex, Threshold, balance_mask, count_matches, expected_kept
from filters.dedup import RANK_COLUMNS, first_per_key, sort_by_rank
from filters.image_rules import declared_size_reasons
from filters.language import Detection, detect_languages, language_columns
from filters.matching import QueryMatcher, cached_matcher, decode_matches, match_codes
from filters.text import screen_captions

log = logging.getLogger(__name__)

MIN_BUCKETS = 8  # even a small run spreads its reductions over a few tasks
# The columns curation reads or writes: what travels through its exchanges (the others are
# still empty before the image fetch; outputs are written in the whole PAIR_SCHEMA).
# `matched` travels as entry numbers (positions in the matcher's sorted entries), so
# counting and balancing index arrays instead of hashing strings; the outputs get strings.
CURATE_SCHEMA = pa.schema(
    [PAIR_SCHEMA.field(name) for name in (
        "url", "caption", "page_url", "source", "uid", "page_lang", "drop_reason", "language",
        "language_score", "declared_width", "declared_height",
    )]
    + [pa.field("matched", pa.list_(pa.int32())), PAIR_SCHEMA.field("status")]
)  # fmt: skip
SELECTED_ROW_GROUP = 4096  # a shard's fetch task reads only the row groups it needs
# What a local worker needs, imported once by the fork server.
WORKER_MODULES = [
    "pipeline.stages.curate", "filters.language", "filters.matching", "filters.worldwide",
]  # fmt: skip


# ------------------------------------------------------------------ the plan


@dataclass(frozen=True)
class CuratePlan:
    """What the passes are and how wide: fixed when the stage first starts, reused on resume."""

    parts: tuple[str, ...]  # candidate parts, in name order
    buckets: int  # of every keyed reduction
    ranges: int  # of the selected output (slices of uid space)
    # The grouping passes: the key rows are grouped by, and the steps run in each group.
    passes: tuple[tuple[str, tuple[str, ...]], ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "parts": list(self.parts),
            "buckets": self.buckets,
            "ranges": self.ranges,
            "passes": [[key, list(steps)] for key, steps in self.passes],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CuratePlan:
        return cls(
            parts=tuple(data["parts"]),
            buckets=int(data["buckets"]),
            ranges=int(data["ranges"]),
            passes=tuple((key, tuple(steps)) for key, steps in data["passes"]),
        )


def grouping_passes(dedup_keys: Sequence[str], language: bool) -> list[tuple[str, tuple[str, ...]]]:
    """The passes for `curate.dedup_keys`: caption first (uid dedup and language live there),
    then one pass per change of key among the other dedup keys, in their order."""
    first = [*(["uid"] if "uid" in dedup_keys else []), *(["language"] if language else [])]
    passes: list[tuple[str, list[str]]] = [("caption", first)]
    for key in (k for k in dedup_keys if k != "uid"):
        if key == passes[-1][0]:
            passes[-1][1].append(key)
        else:
            passes.append((key, [key]))
    return [(key, tuple(steps)) for key, steps in passes]


def make_plan(config: PipelineConfig, layout: RunLayout) -> CuratePlan:
    parts = tuple(finished_parts(layout.candidates))
    rows = sum(part_rows(p) for p in parts)
    width = max(MIN_BUCKETS, math.ceil(rows / config.part_rows))
    passes = grouping_passes(config.curate.dedup_keys, config.curate.language_engine != "none")
    return CuratePlan(parts=parts, buckets=width, ranges=width, passes=tuple(passes))


def load_plan(config: PipelineConfig, layout: RunLayout) -> CuratePlan:
    """The plan saved by an earlier (killed) run of this stage, or a new one, saved."""
    path = storage.join(layout.curate_work, "plan.json")
    return CuratePlan.from_dict(saved_once(path, lambda: make_plan(config, layout).to_dict()))


# ------------------------------------------------------------------ what every task knows


@dataclass(frozen=True)
class CurateJob:
    """Everything a task needs, pickled to whichever worker runs it."""

    config: PipelineConfig
    root: str
    queries: str
    plan: CuratePlan

    @property
    def layout(self) -> RunLayout:
        return RunLayout(self.root)

    @property
    def work(self) -> str:
        return self.layout.curate_work

    def exchange(self, index: int) -> Exchange:
        """Exchange `index` feeds grouping pass `index`; the one after the last feeds the
        selection by uid range."""
        width = self.plan.ranges if index == len(self.plan.passes) else self.plan.buckets
        return Exchange(storage.join(self.work, f"exchange-{index}"), width, CURATE_SCHEMA)

    def counts_file(self, kind: str, task: int | None = None) -> str:
        name = f"{kind}.npy" if task is None else f"{kind}-{task:05d}.npy"
        return storage.join(self.work, "counts", name)

    @property
    def is_worldwide(self) -> bool:
        return self.config.curate.mode == "worldwide"

    @property
    def world(self) -> worldwide.WorldwideIndex:
        """Worldwide mode's lists: English from `queries`, the others per language."""
        return worldwide.worldwide_index(self.queries, self.config.curate.worldwide_lists)

    @property
    def index(self) -> EntryIndex:
        """Every entry matches are numbered by (all languages' in worldwide mode)."""
        if self.is_worldwide:
            return worldwide.global_entry_index(self.queries, self.config.curate.worldwide_lists)
        return entry_index(self.queries)

    @property
    def thresholds_file(self) -> str:
        return storage.join(self.work, "counts", "thresholds.json")

    def threshold(self) -> Threshold:
        """t, or in worldwide mode the t of each entry's language (from the saved counts)."""
        if not self.is_worldwide:
            return self.config.curate.balance_threshold
        saved = orjson.loads(storage.read_bytes(self.thresholds_file))
        return worldwide.entry_thresholds(self.world, saved["thresholds"])


def entry_index(queries: str) -> EntryIndex:
    """The query entries numbered as the matcher numbers them (sorted, distinct), with
    their hashes: built once per process and query list, beside the matcher."""
    return index_of(cached_matcher(queries))


@functools.lru_cache(maxsize=4)
def index_of(matcher: QueryMatcher) -> EntryIndex:
    return EntryIndex(matcher.entries)


def drop_rows(
    table: pa.Table, keep: np.ndarray, reason: str | pa.Array
) -> tuple[pa.Table, pa.Table]:
    """(kept rows, the other rows with `drop_reason` set to `reason`)."""
    if keep.all():
        return table, table.schema.empty_table()
    mask = pa.array(keep, type=pa.bool_())
    dropped = table.filter(pc.invert(mask))
    if isinstance(reason, str):
        reasons: pa.Array = pa.array([reason] * dropped.num_rows, type=pa.string())
    else:
        reasons = reason.filter(pc.invert(mask))
    column = dropped.schema.get_field_index("drop_reason")
    return table.filter(mask), dropped.set_column(column, "drop_reason", reasons)


def drop_counts(table: pa.Table) -> dict[str, int]:
    if not table.num_rows:
        return {}
    counts = pc.value_counts(table.column("drop_reason").combine_chunks())
    return {str(c["values"]): int(c["counts"]) for c in counts.to_pylist()}


def pair_rows(job: CurateJob, table: pa.Table) -> pa.Table:
    """Rows in `PAIR_SCHEMA`, their matched entry numbers turned back into the entries."""
    if job.is_worldwide:
        entries = worldwide.decode_codes(table.column("matched"), job.index.values)
    else:
        entries = decode_matches(table.column("matched"), cached_matcher(job.queries))
    return align(table.set_column(table.schema.get_field_index("matched"), "matched", entries))


def save_dropped(job: CurateJob, name: str, tables: list[pa.Table]) -> dict[str, int]:
    """Write a task's dropped rows (if any) to `curate/dropped/<name>.parquet`, in rank
    order (the rows came in whatever order the executor delivered); count them."""
    found = [pair_rows(job, t) for t in tables if t.num_rows]
    if not found:
        return {}
    dropped = sort_by_rank(pa.concat_tables(found), (*RANK_COLUMNS, "drop_reason"))
    write_table(storage.join(job.layout.dropped, f"{name}.parquet"), dropped)
    return drop_counts(dropped)


# ------------------------------------------------------------------ the passes


def screen_part(job: CurateJob, index: int) -> dict[str, Any]:
    """Map: text rules and matching over one candidate part; survivors to exchange 0."""
    name = f"screen-{index:05d}"
    if is_done(job.work, name):
        return done_info(job.work, name)
    table = align(read_parquet(job.plan.parts[index]), CURATE_SCHEMA)
    seen = table.num_rows
    prior = table.column("drop_reason").is_null()
    table, already = table.filter(prior), table.filter(pc.invert(prior))
    screened = screen_captions(table.column("caption"), job.config.curate)  # cleaned, judged
    table = table.set_column(table.schema.get_field_index("caption"), "caption", screened.captions)
    reasons = screened.reasons
    table, by_text = drop_rows(table, reasons.is_null().to_numpy(zero_copy_only=False), reasons)
    tiny = declared_size_reasons(table.column("declared_width"), table.column("declared_height"))
    table, by_size = drop_rows(table, tiny.is_null().to_numpy(zero_copy_only=False), tiny)
    table, by_match = screen_matches(job, table)
    exchange = job.exchange(0)
    exchange.write(name, table, bucket_of(table.column("caption"), exchange.buckets))
    info = {"seen": seen, "rows": seen, "counts": dict(screened.fixed)}
    info["dropped"] = save_dropped(job, name, [already, by_text, by_size, by_match])
    mark_done(job.work, name, info)
    return info


def with_matches(table: pa.Table, matched: pa.ListArray) -> tuple[pa.Table, pa.Table]:
    """(rows matching some entry, the others dropped as `match:no_entry`)."""
    table = table.set_column(table.schema.get_field_index("matched"), "matched", matched)
    any_match = pc.greater(pc.list_value_length(matched), 0).to_numpy(zero_copy_only=False)
    return drop_rows(table, any_match, "match:no_entry")


def screen_matches(job: CurateJob, table: pa.Table) -> tuple[pa.Table, pa.Table]:
    """English mode matches here, before the language is known; worldwide mode matches
    each caption against its language's list in the language step."""
    if job.is_worldwide:
        return table, table.schema.empty_table()
    return with_matches(table, match_codes(table.column("caption"), cached_matcher(job.queries)))


def group_bucket(job: CurateJob, index: int, bucket: int, rows: pa.Table) -> dict[str, Any]:
    """Reduce: grouping pass `index` over every row of one bucket of its key."""
    name = f"pass{index}-{bucket:05d}"
    if is_done(job.work, name):
        return done_info(job.work, name)
    table = rows  # in any order: every step below decides by key and rank alone
    dropped: list[pa.Table] = []
    counts: dict[str, int] = {}
    for step in job.plan.passes[index][1]:
        if step == "language":
            started = time.perf_counter()
            table, lost, counts["language_texts"] = language_step(table, job)
            counts["language_ms"] = round(1000 * (time.perf_counter() - started))
        else:
            table, lost = drop_rows(table, first_per_key(table, step), f"dedup:{step}")
        dropped.append(lost)
    last = index + 1 == len(job.plan.passes)
    following = job.exchange(index + 1)
    if last:
        keys = uid_range(table.column("uid"), following.buckets)
        matched = count_matches(table.column("matched").combine_chunks(), job.index)
        save_counts(job.counts_file("matched", bucket), matched)
    else:
        keys = bucket_of(table.column(job.plan.passes[index + 1][0]), following.buckets)
    following.write(name, table, keys)
    info = {"rows": rows.num_rows, "dropped": save_dropped(job, name, dropped), "counts": counts}
    mark_done(job.work, name, info)
    return info


def language_step(table: pa.Table, job: CurateJob) -> tuple[pa.Table, pa.Table, int]:
    """Detect each distinct caption of the bucket once; annotate and filter every row.
    Returns (kept, dropped, the number of texts detected)."""
    captions = table.column("caption")
    distinct = sorted(set(pc.unique(captions).to_pylist()))
    detections = detect_languages(distinct, 1, job.config.curate.language_engine)
    languages, scores, reasons = language_columns(captions, detections, job.config.curate)
    table = table.set_column(table.schema.get_field_index("language"), "language", languages)
    column = table.schema.get_field_index("language_score")
    table = table.set_column(column, "language_score", scores)
    if job.is_worldwide:
        return (*worldwide_step(table, job, detections), len(distinct))
    kept, lost = drop_rows(table, reasons.is_null().to_numpy(zero_copy_only=False), reasons)
    return kept, lost, len(distinct)


def worldwide_reason(detection: Detection, job: CurateJob) -> str | None:
    """Worldwide mode keeps every language with an entry list (curate.languages unused)."""
    language, score = detection
    if language is None or score < job.config.curate.min_language_score:
        return "language:unknown"
    return None if job.world.language_of(language) else f"language:{language}"


def worldwide_step(
    table: pa.Table, job: CurateJob, detections: dict[str, Detection]
) -> tuple[pa.Table, pa.Table]:
    """Drop the rows without a usable language, match the rest against their language's
    list, drop those matching nothing; returns (kept, dropped)."""
    found = {text: worldwide_reason(detection, job) for text, detection in detections.items()}
    reasons = pa.array([found[c] for c in table.column("caption").to_pylist()], pa.string())
    table, lost = drop_rows(table, reasons.is_null().to_numpy(zero_copy_only=False), reasons)
    matched = job.world.match(table.column("caption"), table.column("language").to_pylist())
    table, unmatched = with_matches(table, matched)
    return table, pa.concat_tables([lost, unmatched])


def select_range(job: CurateJob, bucket: int, rows: pa.Table) -> dict[str, Any]:
    """Reduce: balance one uid range with the broadcast counts; write it sorted by uid."""
    name = f"select-{bucket:05d}"
    if is_done(job.work, name):
        return done_info(job.work, name)
    table = sort_by_rank(rows, ("uid",))  # uids are distinct after uid dedup
    index, t = job.index, job.threshold()
    counts = load_counts(job.counts_file("matched"))
    matched = table.column("matched").combine_chunks()
    keep = balance_mask(table.column("uid"), matched, counts, index, t, job.config.seed)
    expected = expected_kept(matched, counts, index, t)
    before = table.column("language").to_pylist()
    table, lost = drop_rows(table, keep, "balance:over_threshold")
    location = storage.join(job.layout.selected, f"range-{bucket:05d}.parquet")
    write_table(location, pair_rows(job, table), row_group_size=SELECTED_ROW_GROUP)
    selected = count_matches(table.column("matched").combine_chunks(), index)
    save_counts(job.counts_file("selected", bucket), selected)
    info: dict[str, Any] = {"kept": table.num_rows, "rows": rows.num_rows}
    info["balance"] = {
        "expected": expected,
        "before": worldwide.language_counts(before),
        "after": worldwide.language_counts(table.column("language").to_pylist()),
    }
    info["dropped"] = save_dropped(job, name, [lost])
    mark_done(job.work, name, info)
    return info


def save_counts(location: str, counts: np.ndarray) -> None:
    with storage.atomic_path(location) as tmp, open(tmp, "wb") as handle:
        np.save(handle, counts)


def load_counts(location: str) -> np.ndarray:
    with storage.open_input(location) as handle:
        counts: np.ndarray = np.load(handle)
    return counts


def sum_counts(job: CurateJob, kind: str, tasks: int) -> np.ndarray:
    """The small reduce: per-entry counts summed over tasks (memory O(entries))."""
    total = np.zeros(len(job.index), dtype=np.int64)
    for task in range(tasks):
        location = job.counts_file(kind, task)
        if storage.exists(location):
            total += load_counts(location)
    return total


# ------------------------------------------------------------------ the stage


def queries_path(config: PipelineConfig, layout: RunLayout) -> str:
    if config.curate.queries:
        return config.curate.queries
    if storage.exists(layout.sandbox_queries):
        return layout.sandbox_queries
    from filters.queries import shipped_list  # the default: the shipped English list

    return str(shipped_list())


def run_passes(job: CurateJob, executor: Executor, quiet: bool = False) -> list[dict[str, Any]]:
    """Every pass in order; returns every task's counts (from its marker when resumed)."""
    plan = job.plan
    infos: list[dict[str, Any]] = []
    with Progress("curate", "screen", len(plan.parts), quiet) as progress:
        parts = list(range(len(plan.parts)))
        infos += progress.drain(executor.map(functools.partial(screen_part, job), parts))
    buckets = list(range(plan.buckets))
    for index, (key, _steps) in enumerate(plan.passes):
        with Progress("curate", f"group by {key}", plan.buckets, quiet) as progress:
            reduce_fn = functools.partial(group_bucket, job, index)
            infos += progress.drain(executor.reduce(job.exchange(index), reduce_fn, buckets))
    save_counts(job.counts_file("matched"), sum_counts(job, "matched", plan.buckets))
    if job.is_worldwide:
        save_thresholds(job)
    with Progress("curate", "balance", plan.ranges, quiet) as progress:
        select, ranges = functools.partial(select_range, job), list(range(plan.ranges))
        infos += progress.drain(executor.reduce(job.exchange(len(plan.passes)), select, ranges))
    return infos


def save_thresholds(job: CurateJob) -> None:
    """MetaCLIP 2's t per language from the summed counts (a pure function of them)."""
    counts = load_counts(job.counts_file("matched"))
    p, thresholds = worldwide.language_thresholds(
        counts, job.world, job.config.curate.balance_threshold
    )
    data = {"tail_fraction": p, "thresholds": thresholds}
    storage.write_bytes(job.thresholds_file, orjson.dumps(data, option=orjson.OPT_SORT_KEYS))


def balance_summary(infos: list[dict[str, Any]]) -> dict[str, Any]:
    """Pairs per language before and after balancing, and the expected selected size."""
    before: dict[str, int] = {}
    after: dict[str, int] = {}
    expected = 0.0
    for info in infos:
        found = info.get("balance")
        if found is None:
            continue
        expected += float(found["expected"])
        for total, counts in ((before, found["before"]), (after, found["after"])):
            for language, count in counts.items():
                total[language] = total.get(language, 0) + int(count)
    order = sorted(before, key=lambda code: (-before[code], code))
    return {
        "expected_selected": round(expected, 2),
        "selected": sum(after.values()),
        "languages": {
            code: {"before": before[code], "after": after.get(code, 0)} for code in order
        },
    }


def curate_stats(infos: list[dict[str, Any]]) -> StageStats:
    stats = StageStats("curate")
    for info in infos:
        stats.seen += int(info.get("seen", 0))
        stats.kept += int(info.get("kept", 0))
        stats.dropped.update(info.get("dropped", {}))
        stats.counts.update(info.get("counts", {}))
    return stats


def entry_count_table(entries: Sequence[str], counts: np.ndarray) -> dict[str, int]:
    """{entry: count} for the entries seen, most frequent first (ties by entry)."""
    seen = [int(i) for i in np.flatnonzero(counts)]
    order = sorted(seen, key=lambda i: (-int(counts[i]), entries[i]))
    return {entries[i]: int(counts[i]) for i in order}


def entry_counts(
    job: CurateJob, entries: Sequence[str], matched: np.ndarray, selected: np.ndarray
) -> dict[str, Any]:
    """`entry_count_table` of the matched and selected counts; per language in worldwide
    mode (one entry can stand in several languages' lists)."""
    if not job.is_worldwide:
        return {
            "matched": entry_count_table(entries, matched),
            "selected": entry_count_table(entries, selected),
        }
    tables = {}
    for code in job.world.languages:
        span = job.world.span(code)
        tables[code] = {
            "matched": entry_count_table(entries[span], matched[span]),
            "selected": entry_count_table(entries[span], selected[span]),
        }
    return tables


def worldwide_report(job: CurateJob, infos: list[dict[str, Any]]) -> dict[str, Any]:
    """The derived t per language, pairs per language before and after balancing, and
    the expected against the actual selected size."""
    saved = orjson.loads(storage.read_bytes(job.thresholds_file))
    summary = balance_summary(infos)
    for code, counts in summary["languages"].items():
        name = job.world.language_of(code)
        counts["t"] = saved["thresholds"].get(name) if name else None
    log.info(
        "curate worldwide: p=%.3f, %d selected (expected %.1f) in %d languages",
        saved["tail_fraction"], summary["selected"], summary["expected_selected"],
        len(summary["languages"]),
    )  # fmt: skip
    return {"tail_fraction": saved["tail_fraction"], "thresholds": saved["thresholds"], **summary}


def run_curate(config: PipelineConfig, quiet: bool = False) -> StageStats:
    layout = RunLayout(config.root)
    if is_done(layout.curate_dir, "curate"):
        log.info("curate: already done in %s", layout.curate_dir)
        return StageStats.load(layout.stats_file("curate"))
    if not is_done(layout.crawl_dir, "crawl"):
        raise PipelineError(f"no finished crawl in {layout.crawl_dir}: run the crawl first")
    queries = queries_path(config, layout)
    remove_stale_temporaries(layout.curate_dir)
    started = time.perf_counter()
    job = CurateJob(config, layout.root, queries, load_plan(config, layout))
    entries = job.index.values.to_pylist()  # as counted: the matchers' order
    executor = make_executor(
        config.executor.kind, config.executor.workers, config.executor.ray_address,
        preload=WORKER_MODULES,
    )  # fmt: skip
    with executor:
        infos = run_passes(job, executor, quiet)
    stats = curate_stats(infos)
    matched = load_counts(job.counts_file("matched"))
    selected = sum_counts(job, "selected", job.plan.ranges)
    counts_location = storage.join(layout.curate_dir, "entry_counts.json")
    write_json(counts_location, entry_counts(job, entries, matched, selected))
    if job.is_worldwide:
        report = worldwide_report(job, infos)
        write_json(storage.join(layout.curate_dir, "worldwide.json"), report)
        stats.count("expected_selected", round(report["expected_selected"]))
        stats.count(
            "languages_selected", sum(1 for v in report["languages"].values() if v["after"])
        )
    stats.seconds = time.perf_counter() - started
    stats.count("query_entries", len(entries))
    stats.count("entries_matched", int(np.count_nonzero(selected)))
    stats.count("parts", len(job.plan.parts))
    stats.count("buckets", job.plan.buckets)
    stats.save(layout.stats_file("curate"))
    save_config(config, storage.join(layout.curate_dir, "config.toml"))
    mark_done(layout.curate_dir, "curate", {"selected": stats.kept})
    storage.remove_tree(layout.curate_work)
    return stats
