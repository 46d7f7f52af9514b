"""Plots for the HTML report as inline SVG: horizontal bars and line charts (linear or
log-log), drawn from plain numbers so the page needs no script and fetches nothing.

Every plot is `<svg class="plot" data-plot=NAME>` with a `<title>`, so a reader (or a test)
finds each by name.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape

WIDTH, HEIGHT = 640, 260
MARGIN = {"left": 64, "right": 16, "top": 28, "bottom": 40}
COLOURS = ("#3b6ea8", "#d9822b", "#4c9a5b", "#b0413e", "#7a5aa6")
Series = Sequence[tuple[float, float]]


def _open(name: str, title: str, width: int, height: int) -> str:
    return (
        f'<svg class="plot" data-plot="{escape(name)}" xmlns="http://www.w3.org/2000/svg"'
        f' viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img">'
        f"<title>{escape(title)}</title>"
        f'<text x="{width / 2}" y="16" text-anchor="middle" class="plot-title">'
        f"{escape(title)}</text>"
    )


def bars(name: str, title: str, rows: Sequence[tuple[str, float]], label_width: int = 220) -> str:
    """One horizontal bar per (label, value), longest first as given, value printed."""
    row_height = 20
    height = MARGIN["top"] + row_height * max(1, len(rows)) + 8
    top = max((v for _, v in rows), default=0) or 1
    span = WIDTH - label_width - 80
    parts = [_open(name, title, WIDTH, height)]
    for i, (label, value) in enumerate(rows):
        y = MARGIN["top"] + i * row_height
        length = max(1.0, span * value / top) if value else 0.0
        parts.append(
            f'<text x="{label_width - 6}" y="{y + 14}" text-anchor="end">{escape(label)}</text>'
            f'<rect x="{label_width}" y="{y + 3}" width="{length:.1f}" height="{row_height - 6}"'
            f' fill="{COLOURS[0]}"/>'
            f'<text x="{label_width + length + 4:.1f}" y="{y + 14}">{_number(value)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def lines(
    name: str,
    title: str,
    series: Mapping[str, Series],
    xlabel: str,
    ylabel: str,
    log: bool = False,
) -> str:
    """A line per named series of (x, y) points; `log` draws both axes in log10 (points
    with x or y <= 0 are left out there)."""
    kept = {k: [(x, y) for x, y in v if not log or (x > 0 and y > 0)] for k, v in series.items()}
    points = [p for v in kept.values() for p in v]
    scale = _Scale(points, log)
    parts = [_open(name, title, WIDTH, HEIGHT), scale.axes(xlabel, ylabel)]
    for i, (label, values) in enumerate(kept.items()):
        colour = COLOURS[i % len(COLOURS)]
        path = " ".join(f"{scale.x(x):.1f},{scale.y(y):.1f}" for x, y in values)
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{path}"/>')
        if len(values) == 1:
            x, y = values[0]
            parts.append(
                f'<circle cx="{scale.x(x):.1f}" cy="{scale.y(y):.1f}" r="3" fill="{colour}"/>'
            )
        parts.append(
            f'<text x="{WIDTH - MARGIN["right"] - 4}" y="{MARGIN["top"] + 14 * (i + 1)}"'
            f' text-anchor="end" fill="{colour}">{escape(label)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


class _Scale:
    """Maps data to the plot area; log10 on both axes when `log`."""

    def __init__(self, points: Sequence[tuple[float, float]], log: bool) -> None:
        self.log = log
        xs = [self._t(x) for x, _ in points] or [0.0, 1.0]
        ys = [self._t(y) for _, y in points] or [0.0, 1.0]
        self.x0, self.x1 = _padded(min(xs), max(xs))
        self.y0, self.y1 = _padded(min(ys), max(ys))

    def _t(self, v: float) -> float:
        return math.log10(v) if self.log else float(v)

    def x(self, v: float) -> float:
        span = WIDTH - MARGIN["left"] - MARGIN["right"]
        return MARGIN["left"] + span * (self._t(v) - self.x0) / (self.x1 - self.x0)

    def y(self, v: float) -> float:
        span = HEIGHT - MARGIN["top"] - MARGIN["bottom"]
        return HEIGHT - MARGIN["bottom"] - span * (self._t(v) - self.y0) / (self.y1 - self.y0)

    def axes(self, xlabel: str, ylabel: str) -> str:
        left, bottom = MARGIN["left"], HEIGHT - MARGIN["bottom"]
        parts = [
            f'<line x1="{left}" y1="{bottom}" x2="{WIDTH - MARGIN["right"]}" y2="{bottom}"'
            ' stroke="#444"/>',
            f'<line x1="{left}" y1="{MARGIN["top"]}" x2="{left}" y2="{bottom}" stroke="#444"/>',
            f'<text x="{WIDTH / 2}" y="{HEIGHT - 6}" text-anchor="middle">{escape(xlabel)}</text>',
            f'<text x="12" y="{HEIGHT / 2}" text-anchor="middle"'
            f' transform="rotate(-90 12 {HEIGHT / 2})">{escape(ylabel)}</text>',
        ]
        for t in (self.x0, (self.x0 + self.x1) / 2, self.x1):
            x = left + (WIDTH - left - MARGIN["right"]) * (t - self.x0) / (self.x1 - self.x0)
            parts.append(
                f'<text x="{x:.1f}" y="{bottom + 14}" text-anchor="middle">{self._tick(t)}</text>'
            )
        for t in (self.y0, (self.y0 + self.y1) / 2, self.y1):
            y = bottom - (bottom - MARGIN["top"]) * (t - self.y0) / (self.y1 - self.y0)
            parts.append(
                f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">{self._tick(t)}</text>'
            )
        return "".join(parts)

    def _tick(self, t: float) -> str:
        return _number(10**t if self.log else t)


def _padded(low: float, high: float) -> tuple[float, float]:
    if high - low <= 1e-12 * max(1.0, abs(high)):
        pad = abs(high) * 0.1 or 0.5
        return low - pad, high + pad
    return low, high


def _number(value: float) -> str:
    if float(value).is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"
