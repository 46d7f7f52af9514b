"""Stage 2: curate candidates into the selected pairs, on text alone.

What is true after each step (per-pair filters commute, so the cheap ones run first and
language detection, ~1,000x slower than matching, runs once per distinct surviving text):

    candidates                       every (image URL, alt) occurrence the crawl found
    -> text rules                    captions with > 2 words, > 5 chars, not junk or file names
    -> exact dedup on uid            one row per (alt, URL)  (if "uid" in curate.dedup_keys)
    -> query matching                alt contains at least one query entry (MetaCLIP rules)
    -> language                      alt detected as one of `curate.languages`
    -> exact dedup on URL, caption   one row per image URL  (the other curate.dedup_keys)
    -> balancing                     at most ~t pairs per entry; coins from hash(uid, entry, seed)

Every candidate is written to `curate/pairs.parquet`, dropped ones with their reason, so
the funnel can be recounted and any decision explained; `entry_counts.json` holds the
per-entry counts balancing used (`matched`) and those it kept (`selected`).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from filters.balance import balance, count_entries
from filters.dedup import dedup
from filters.language import detect_languages, filter_language
from filters.matching import QueryMatcher, match_pairs
from filters.queries import load_queries
from filters.text import filter_text
from pipeline.config import PipelineConfig, save_config
from pipeline.errors import PipelineError
from pipeline.io import (
    is_done,
    mark_done,
    read_pairs,
    remove_stale_temporaries,
    write_json,
    write_pairs,
)
from pipeline.layout import RunLayout
from pipeline.record import Pair
from pipeline.stats import StageStats, Timer, tally

log = logging.getLogger(__name__)


def queries_path(config: PipelineConfig, layout: RunLayout) -> Path:
    if config.curate.queries:
        return Path(config.curate.queries)
    if layout.sandbox_queries.exists():
        return layout.sandbox_queries
    raise PipelineError("no query list: set curate.queries to a file of entries, one per line")


def curate(
    pairs: Iterable[Pair], config: PipelineConfig, entries: list[str]
) -> tuple[list[Pair], Counter[str]]:
    """The curation steps in order: every pair (dropped ones with their reason), and the
    per-entry match counts balancing used."""
    cfg = config.curate
    # Pairs with the same uid share alt and URL, so every filter treats them alike: dedup on
    # uid can go first. URL or caption dedup picks a winner among different pairs, so it
    # waits until the filters have spoken.
    early = tuple(k for k in cfg.dedup_keys if k == "uid")
    late = tuple(k for k in cfg.dedup_keys if k != "uid")
    stream = list(filter_text(pairs, cfg))
    stream = list(dedup(stream, keys=early))
    stream = list(match_pairs(stream, QueryMatcher(entries)))
    texts = {p.caption for p in stream if p.kept}
    detections = detect_languages(sorted(texts), workers=cfg.workers)
    stream = list(filter_language(stream, cfg, detections))
    stream = list(dedup(stream, keys=late))
    counts = count_entries(p for p in stream if p.kept)
    return list(balance(stream, counts, cfg.balance_threshold, config.seed)), counts


def run_curate(config: PipelineConfig) -> StageStats:
    layout = RunLayout(config.root)
    if is_done(layout.curate_dir, "curate"):
        log.info("curate: already done in %s", layout.curate_dir)
        return StageStats.load(layout.stats_file("curate"))
    if not is_done(layout.crawl_dir, "crawl"):
        raise PipelineError(f"no finished crawl in {layout.crawl_dir}: run the crawl first")
    entries = load_queries(queries_path(config, layout))
    stats = StageStats("curate")
    remove_stale_temporaries(layout.curate_dir)
    with Timer() as timer:
        pairs, matched = curate(read_pairs(layout.candidates), config, entries)
        pairs = list(tally(pairs, stats))
        kept = [p for p in pairs if p.kept]
        counts = count_entries(kept)
        write_pairs(layout.curated, pairs)
        entry_counts = {"matched": dict(matched.most_common()), "selected": dict(counts)}
        write_json(layout.curate_dir / "entry_counts.json", entry_counts)
    stats.seconds = timer.seconds
    stats.count("query_entries", len(entries))
    stats.count("entries_matched", len(counts))
    stats.save(layout.stats_file("curate"))
    save_config(config, layout.curate_dir / "config.toml")
    mark_done(layout.curate_dir, "curate", {"selected": len(kept)})
    return stats
