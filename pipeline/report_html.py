"""The run report as one self-contained HTML page: `report.html` in the run folder.

Plots are inline SVG, thumbnails data URIs, the style sheet inline: the page fetches
nothing, so it opens from a laptop, a bucket download or an e-mail attachment alike.
Sections a run did not reach say so. Every count read from a stats file is tagged
`data-stat="<stage>.<field>[.<key>]"` so it can be checked against the file.
"""

from __future__ import annotations

from html import escape
from typing import Any

from core.layout import RunLayout
from pipeline import report_data as rd
from pipeline import report_svg as svg
from pipeline.report_gallery import GalleryItem, dropped_items, kept_items, shard_index

HEAD_ENTRIES = 20
RESULT_FIGURES = (
    ("steps", "steps"), ("samples_seen", "samples seen"), ("final_loss", "final loss"),
    ("samples_per_second", "samples/s"), ("seconds", "seconds"),
)  # fmt: skip
TOP_ERRORS = 12
TRAIN_CURVES = (
    ("loss", "train-loss", "training loss (InfoNCE)"),
    ("logit_scale", "train-logit-scale", "logit scale"),
    ("lr", "train-lr", "learning rate"),
    ("samples_per_second", "train-samples-per-second", "samples/s"),
)
STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1100px;color:#222}
h1{font-size:22px}h2{margin-top:36px;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:8px 0}td,th{padding:2px 10px;border-bottom:1px solid #eee}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}.missing{color:#a33;font-style:italic}
svg.plot{display:block;margin:8px 0;font-size:11px}
.plots{display:flex;flex-wrap:wrap;gap:8px}.plots svg.plot{width:540px;height:auto}
.plot-title{font-weight:600;font-size:12px}
.gallery{display:flex;flex-wrap:wrap;gap:10px}.card{width:200px;font-size:12px}
.card img{display:block;max-width:128px;max-height:128px}.reasons{font-size:12px;color:#555}
.matched{color:#3b6ea8}.note{color:#a33}.summary{font-size:15px}
"""


def render_html(layout: RunLayout, data: dict[str, Any]) -> str:
    """The page for the run whose stats `data` (from `report.collect`) and files under
    `layout` describe."""
    index = shard_index(layout)
    body = [
        _summary(data),
        _funnel_section(data),
        _entries_section(layout),
        _downloads_section(layout),
        _politeness_section(layout, data),
        _training_section(layout, data),
        _gallery_section(layout, data, index),
    ]
    title = f"OpenWIT run report: {data['workdir']}"
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<link rel="icon" href="data:,"><title>{escape(title)}</title>'
        f"<style>{STYLE}</style></head><body><h1>{escape(title)}</h1>"
        + "".join(body)
        + "</body></html>\n"
    )


def _missing(what: str) -> str:
    return f'<p class="missing">{escape(what)}</p>'


def _stat(value: int | float, stat: str = "") -> str:
    tag = f' data-stat="{escape(stat)}"' if stat else ""
    text = f"{value:,}" if isinstance(value, int) else f"{value:,.1f}"
    return f'<td class="n"{tag}>{text}</td>'


def _table(header: list[str], rows: list[str], numeric_from: int = 1, numeric_to: int = 99) -> str:
    """A table of `rows` under `header`; columns numeric_from..numeric_to are numbers."""
    cells = "".join(
        f'<th class="{"n" if numeric_from <= i <= numeric_to else ""}">{escape(h)}</th>'
        for i, h in enumerate(header)
    )
    return f"<table><tr>{cells}</tr>{''.join(rows)}</table>"


def _summary(data: dict[str, Any]) -> str:
    """One sentence per finished stage: what went in and what came out."""
    stages = data.get("stages", {})
    if not stages and "train" not in data:
        return (
            '<p class="missing"><strong>This run did nothing: no stage has finished.</strong></p>'
        )
    lines = [
        _stage_sentence(name, stages[name])
        for name in ("crawl", "curate", "shards")
        if name in stages
    ]
    if "train" in data:
        lines.append(_train_sentence(data["train"]))
    missing = [n for n in ("crawl", "curate", "shards") if n not in stages] + (
        [] if "train" in data else ["train"]
    )
    if missing:
        lines.append(f"Not run (yet): {', '.join(missing)}.")
    return '<ul class="summary">' + "".join(f"<li>{escape(line)}</li>" for line in lines) + "</ul>"


def _stage_sentence(name: str, stats: dict[str, Any]) -> str:
    seen, kept, counts = stats["seen"], stats["kept"], stats.get("counts", {})
    dropped = sum(stats.get("dropped", {}).values())
    if name == "crawl":
        found = counts.get("candidates", 0)
        return f"Crawl: {seen:,} pages considered, {kept:,} fetched, {found:,} candidate pairs."
    if name == "curate":
        return f"Curate: {seen:,} candidates, {dropped:,} dropped by the rules, {kept:,} selected."
    return (
        f"Shards: {seen:,} selected pairs fetched, {dropped:,} dropped, {kept:,} written"
        f" in {counts.get('shards', 0):,} shards."
    )


def _train_sentence(train: dict[str, Any]) -> str:
    line = f"Train: {train.get('steps', 0):,} steps on {train.get('samples_seen', 0):,} samples"
    zero_shot = train.get("zero_shot") or {}
    if "top1" in zero_shot and "chance" in zero_shot:
        line += (
            f"; zero-shot top-1 {zero_shot['top1']:.1%} against chance {zero_shot['chance']:.1%}"
        )
    return line + "."


# ---------------------------------------------------------------- funnel


def _funnel_section(data: dict[str, Any]) -> str:
    steps = rd.funnel(data)
    if not steps:
        return "<h2>Funnel</h2>" + _missing("no stage has written its stats yet")
    plot = svg.bars(
        "funnel", "pairs (and pages) left after each step", [(s.label, s.count) for s in steps]
    )
    rows = [_funnel_row(step) for step in steps]
    return (
        "<h2>Funnel</h2>" + plot + _table(["step", "count", "dropped here, by reason"], rows, 1, 1)
    )


def _funnel_row(step: rd.FunnelStep) -> str:
    tag = f"{step.stage}.dropped."
    reasons = [
        f'<span data-stat="{escape(tag + reason)}">{n:,}</span> {escape(reason)}'
        for reason, n in sorted(step.dropped.items(), key=lambda kv: (-kv[1], kv[0]))
    ]
    return (
        f"<tr><td>{escape(step.label)}</td>{_stat(step.count, step.stat)}"
        f'<td class="reasons">{", ".join(reasons)}</td></tr>'
    )


# ---------------------------------------------------------------- entries and balancing


def _entries_section(layout: RunLayout) -> str:
    counts = rd.entry_counts(layout)
    if counts is None:
        return "<h2>Query entries</h2>" + _missing(
            "curation has not counted entries (no entry_counts.json)"
        )
    series = {name: rd.rank_frequency(counts.values(name)) for name in ("matched", "selected")}
    plot = svg.lines(
        "entries", "pairs per entry by rank, before (matched) and after (selected) balancing",
        series, "entry rank", "pairs", log=True,
    )  # fmt: skip
    t = ", ".join(f"{lang} {v:,}" if lang else f"{v:,}" for lang, v in counts.thresholds.items())
    size = _worldwide_table(counts.worldwide) if counts.worldwide else _size_table(layout, counts)
    return (
        "<h2>Query entries</h2>" + plot
        + f"<p>Balancing threshold t = {escape(t)}: an entry matched c &gt; t times keeps each"
        " of its pairs with p = t / c.</p>"
        + _head_table(counts) + size
    )  # fmt: skip


def _head_table(counts: rd.EntryCounts) -> str:
    several = len(counts.tables) > 1
    rows = [
        '<tr class="head-entry">' + (f"<td>{escape(lang)}</td>" if several else "")
        + f"<td>{escape(entry)}</td>{_stat(n)}<td class='n'>{p:.3f}</td>{_stat(kept)}</tr>"
        for lang, entry, n, kept, p in counts.head(HEAD_ENTRIES)
    ]  # fmt: skip
    header = ["entry", "matched", "keep probability", "selected"]
    return "<h3>Head entries</h3>" + _table(
        (["language"] if several else []) + header, rows, 2 if several else 1
    )


def _size_table(layout: RunLayout, counts: rd.EntryCounts) -> str:
    lang = next(iter(counts.tables))
    size = rd.balance_size(layout, counts.tables[lang]["matched"], counts.thresholds[lang])
    if size is None:
        return _missing("no pair reached balancing")
    keys = ["all", *sorted(k for k in size.reached if k != "all")]
    rows = [
        f"<tr><td>{escape(k)}</td>{_stat(size.reached[k])}{_stat(size.expected.get(k, 0.0))}"
        f"{_stat(size.kept[k], 'curate.kept' if k == 'all' else '')}</tr>"
        for k in keys
    ]
    return "<h3>Expected versus actual size, per language</h3>" + _table(
        ["language", "reached balancing", "expected kept", "kept"], rows
    )


def _worldwide_table(report: dict[str, Any]) -> str:
    """Worldwide mode: t, pairs before and after balancing per language (worldwide.json)."""
    rows = [
        f"<tr><td>{escape(str(code))}</td>{_stat(int(v.get('t') or 0))}"
        f"{_stat(int(v.get('before', 0)))}{_stat(int(v.get('after', 0)))}</tr>"
        for code, v in report.get("languages", {}).items()
        if isinstance(v, dict)
    ]
    expected, selected = report.get("expected_selected"), report.get("selected")
    line = f"expected {_figure(expected)} selected, actual {_figure(selected)}"
    return (
        "<h3>Expected versus actual size, per language</h3>"
        + f'<p class="worldwide-size">{escape(line)}</p>'
        + _table(["language", "t", "before balancing", "after balancing"], rows)
    )


# ---------------------------------------------------------------- downloads


def _downloads_section(layout: RunLayout) -> str:
    found = rd.downloads(layout)
    if found is None:
        return "<h2>Downloads</h2>" + _missing("no image has been fetched yet (no shard parquet)")
    parts = [
        "<h2>Downloads</h2>",
        svg.bars(
            "download-status",
            "download outcomes by status" + found.note,
            found.statuses.most_common(),
        ),
    ]
    if found.errors:
        parts.append(
            svg.bars("download-errors", "errors", found.errors.most_common(TOP_ERRORS), 380)
        )
    if found.http:
        rows = [f"<tr><td>{escape(c)}</td>{_stat(n)}</tr>" for c, n in sorted(found.http.items())]
        parts.append("<h3>HTTP status codes</h3>" + _table(["status", "responses"], rows))
    points = rd.throughput(layout)
    if len(points) > 1:
        parts.append(
            svg.lines(
                "throughput", "samples written over time", {"samples": points}, "seconds", "samples"
            )
        )
    else:
        parts.append(_missing("throughput over time: not recorded"))
    parts.append(_hosts_table(layout, found))
    return "".join(parts)


def _hosts_table(layout: RunLayout, found: rd.Downloads) -> str:
    pages = rd.page_hosts(layout)
    statuses = sorted({s for c in found.hosts.values() for s in c} - {"requests"})
    rows = []
    for host, counts in sorted(found.hosts.items(), key=lambda kv: (-kv[1]["requests"], kv[0]))[
        :30
    ]:
        cells = "".join(_stat(counts.get(s, 0)) for s in ["requests", *statuses])
        rows.append(f"<tr><td>{escape(host)}</td>{cells}{_stat(pages.get(host, 0))}</tr>")
    header = ["image host", "image requests", *statuses, "candidates on its pages"]
    return "<h3>Per host</h3>" + _table(header, rows)


# Politeness figures the stages count for the whole run: (stats key, label).
POLITENESS = (
    ("crawl.counts.robots_fetches", "robots.txt files fetched"),
    ("crawl.dropped.robots_disallowed", "pages skipped: disallowed by robots.txt"),
    ("crawl.dropped.crawl_delay_too_long", "pages skipped: Crawl-delay too long"),
    ("crawl.counts.retries", "page requests retried"),
    ("shards.dropped.opted_out", "images skipped: opted out (X-Robots-Tag)"),
    ("shards.counts.download_retries", "image requests retried"),
)


def _politeness_section(layout: RunLayout, data: dict[str, Any]) -> str:
    rows = []
    for key, label in POLITENESS:
        stage, group, name = key.split(".", 2)
        value = (rd.stats_of(data, stage) or {}).get(group, {}).get(name)
        if value is not None:
            rows.append(f"<tr><td>{escape(label)}</td>{_stat(int(value), key)}</tr>")
    if not rows:
        return ""
    return "<h2>Politeness</h2>" + _table(["whole run", "count"], rows) + _politeness_table(layout)


def _politeness_table(layout: RunLayout) -> str:
    hosts = rd.politeness(layout)
    if not hosts:
        return _missing(
            "per-host politeness (delays honoured, robots and opt-out skips): not recorded"
        )
    fields = sorted({k for v in hosts.values() for k, n in v.items() if isinstance(n, int | float)})
    rows = [
        f"<tr><td>{escape(h)}</td>{''.join(_stat(v.get(f, 0)) for f in fields)}</tr>"
        for h, v in sorted(hosts.items())
    ]
    return "<h3>Per crawled host</h3>" + _table(["host", *fields], rows)


# ---------------------------------------------------------------- training


def _training_section(layout: RunLayout, data: dict[str, Any]) -> str:
    records = rd.train_log(layout)
    parts = ["<h2>Training</h2>"]
    if not records and "train" not in data:
        return parts[0] + _missing("not trained yet")
    curves = []
    for key, name, title in TRAIN_CURVES:
        points = _curve(records, key)
        if points:
            curves.append(svg.lines(name, title, {key: points}, "step", title))
    waits = {k: _curve(records, k) for k in ("data_wait", "compute")}
    if all(waits.values()):  # where the trainer records where its time goes
        title = "seconds per step: waiting for data, computing"
        curves.append(svg.lines("train-time", title, waits, "step", "seconds"))
    parts.append(f'<div class="plots">{"".join(curves)}</div>')
    if not records:
        parts.append(_missing("no training log (train/log.jsonl)"))
    parts.append(_results_table(data.get("train")))
    return "".join(parts)


def _curve(records: list[dict[str, Any]], key: str) -> list[tuple[float, float]]:
    return [
        (float(r["step"]), float(r[key])) for r in records if isinstance(r.get(key), int | float)
    ]


def _results_table(results: dict[str, Any] | None) -> str:
    if not results:
        return _missing("no training results yet")
    rows = [
        f"<tr><td>{escape(label)}</td><td class='n'>{escape(_figure(results.get(key)))}</td></tr>"
        for key, label in RESULT_FIGURES
    ]
    zero_shot = results.get("zero_shot")
    if zero_shot:
        for key in ("n", "top1", "top5", "chance"):
            value = zero_shot.get(key)
            text = f"{value:.1%}" if key != "n" and isinstance(value, float) else _figure(value)
            rows.append(
                f'<tr><td>zero-shot {key}</td><td class="n zero-shot">{escape(text)}</td></tr>'
            )
    return "<h3>Results and evaluation</h3>" + _table(["figure", "value"], rows)


def _figure(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}"
    if isinstance(value, int):
        return f"{value:,}"
    return "n/a" if value is None else str(value)


# ---------------------------------------------------------------- gallery


def _gallery_section(layout: RunLayout, data: dict[str, Any], index: Any) -> str:
    parts = ["<h2>Kept pairs (a sample)</h2>"]
    if index is None:
        parts.append(_missing("no shards written yet"))
    else:
        parts.append(
            '<div class="gallery kept">' + "".join(_card(i) for i in kept_items(index)) + "</div>"
        )
    reasons = [
        r for s in ("curate", "shards") for r in (rd.stats_of(data, s) or {}).get("dropped", {})
    ]
    dropped = dropped_items(layout, reasons, index)
    parts.append("<h2>Dropped pairs, by reason (a sample)</h2>")
    if not dropped:
        parts.append(_missing("nothing dropped yet"))
    for reason, items in dropped.items():
        parts.append(
            f'<h3 class="drop-reason">{escape(reason)}</h3>'
            f'<div class="gallery dropped" data-reason="{escape(reason)}">'
            + "".join(_card(i) for i in items) + "</div>"
        )  # fmt: skip
    return "".join(parts)


def _card(item: GalleryItem) -> str:
    image = f'<img class="thumb" alt="" src="{item.thumbnail}">' if item.thumbnail else ""
    matched = ", ".join(item.matched)
    page = _link(item.page_url, "source page")
    return (
        f'<div class="card" data-key="{escape(item.key)}">{image}'
        f"<div class='alt'>{escape(item.caption)}</div>"
        + (f'<div class="matched">{escape(matched)}</div>' if matched else "")
        + (f'<div class="note">{escape(item.note)}</div>' if item.note else "")
        + f"<div>{page} {_link(item.url, 'image')}</div></div>"
    )


def _link(url: str, label: str) -> str:
    """A link only for http(s) URLs: nothing from the web becomes a script link."""
    if not url.startswith(("http://", "https://")):
        return ""
    return f'<a href="{escape(url)}" rel="noreferrer">{escape(label)}</a>'
