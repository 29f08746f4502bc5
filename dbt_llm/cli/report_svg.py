"""The report's charts, drawn in Python as inline SVG: no script draws them, so the page reads in any
browser with no network, in a mail client, or printed. Three shapes: stacked bars per day, bars by
name, and a line of a rate per day."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape

WIDTH, HEIGHT = 720, 220
LEFT, RIGHT, TOP, BOTTOM = 64, 12, 12, 36
# Tableau-10 style colours: distinct, readable on white.
PALETTE = (
    "#4e79a7",
    "#f28e2b",
    "#e15759",
    "#76b7b2",
    "#59a14f",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
)


def colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def money(value: float) -> str:
    return f"${value:,.4f}" if abs(value) < 10 else f"${value:,.2f}"


def number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def percent(value: float) -> str:
    return f"{value * 100:.1f}%"


def _nice_max(value: float) -> float:
    """A round top for the axis, at or above `value`."""
    if value <= 0:
        return 1.0
    base = 10.0 ** math.floor(math.log10(value))
    return next(base * m for m in (1, 2, 2.5, 5, 10) if base * m >= value * 0.999999)


def _frame(label: str, top: float, fmt: str, kind: str) -> list[str]:
    """The SVG's opening, y axis with 4 gridlines labelled in `fmt` (money, number, percent)."""
    show = {"money": money, "number": number, "percent": percent}[fmt]
    parts = [
        f'<svg class="chart" data-chart="{escape(kind)}" role="img" aria-label="{escape(label)}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(label)}</title>",
    ]
    plot_h = HEIGHT - TOP - BOTTOM
    for i in range(5):
        y = TOP + plot_h - plot_h * i / 4
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" class="tick" text-anchor="end">{show(top * i / 4)}</text>')
    return parts


def _day_labels(days: Sequence[str], step: float) -> list[str]:
    every = max(1, len(days) // 8)  # at most ~8 labels under the axis
    return [
        f'<text x="{LEFT + step * (i + 0.5):.1f}" y="{HEIGHT - BOTTOM + 16}" class="tick" '
        f'text-anchor="middle">{escape(day[5:])}</text>'
        for i, day in enumerate(days)
        if i % every == 0 or i == len(days) - 1
    ]


def stacked_bars(label: str, days: Sequence[str], series: Mapping[str, Sequence[float]], fmt: str = "money") -> str:
    """One bar per day, one colour per series (a model, an owner, ...), with a legend."""
    totals = [sum(values[i] for values in series.values()) for i in range(len(days))]
    top = _nice_max(max(totals, default=0.0))
    parts = _frame(label, top, fmt, "stacked")
    plot_h = HEIGHT - TOP - BOTTOM
    step = (WIDTH - LEFT - RIGHT) / max(len(days), 1)
    for i, day in enumerate(days):
        y = float(TOP + plot_h)
        for n, (name, values) in enumerate(series.items()):
            h = plot_h * values[i] / top
            if h <= 0:
                continue
            y -= h
            parts.append(
                f'<rect x="{LEFT + step * i + step * 0.15:.1f}" y="{y:.1f}" width="{step * 0.7:.1f}" '
                f'height="{h:.1f}" fill="{colour(n)}" data-series="{escape(name)}">'
                f"<title>{escape(day)} {escape(name)}: {money(values[i]) if fmt == 'money' else number(values[i])}"
                "</title></rect>"
            )
    parts += _day_labels(days, step)
    parts.append("</svg>")
    return "".join(parts) + legend(list(series))


def legend(names: Sequence[str]) -> str:
    items = "".join(
        f'<li><span class="swatch" style="background:{colour(i)}"></span>{escape(name)}</li>'
        for i, name in enumerate(names)
    )
    return f'<ul class="legend">{items}</ul>'


def bars_by_name(label: str, items: Sequence[tuple[str, float]], fmt: str = "money") -> str:
    """Horizontal bars, largest first: the top nodes or owners by cost."""
    show = money if fmt == "money" else number
    row_h, name_w = 24, 300
    height = max(row_h * len(items) + 8, 32)
    top = max((v for _, v in items), default=0.0) or 1.0
    parts = [
        f'<svg class="chart" data-chart="bars" role="img" aria-label="{escape(label)}" '
        f'viewBox="0 0 {WIDTH} {height}" width="100%" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(label)}</title>",
    ]
    room = WIDTH - name_w - 110
    for i, (name, value) in enumerate(items):
        y = 4 + i * row_h
        shown = name if len(name) <= 44 else "…" + name[-43:]
        parts.append(
            f'<text x="{name_w - 8}" y="{y + 16}" class="name" text-anchor="end">{escape(shown)}</text>'
            f'<rect x="{name_w}" y="{y + 3}" width="{max(room * value / top, 1):.1f}" height="{row_h - 8}" '
            f'fill="{colour(i)}"><title>{escape(name)}: {show(value)}</title></rect>'
            f'<text x="{name_w + room * value / top + 6:.1f}" y="{y + 16}" class="value">{show(value)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def rate_line(label: str, days: Sequence[str], values: Sequence[float | None], fmt: str = "percent") -> str:
    """A rate per day (a share from 0 to 1, or a count): a line through the days that have one."""
    top = 1.0 if fmt == "percent" else _nice_max(max((v for v in values if v is not None), default=0.0))
    parts = _frame(label, top, fmt, "line")
    plot_h = HEIGHT - TOP - BOTTOM
    step = (WIDTH - LEFT - RIGHT) / max(len(days), 1)
    points = [
        (LEFT + step * (i + 0.5), TOP + plot_h - plot_h * v / top, days[i], v)
        for i, v in enumerate(values)
        if v is not None
    ]
    if len(points) > 1:
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _, _ in points)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{colour(0)}" stroke-width="2"/>')
    show = percent if fmt == "percent" else number
    for x, y, day, v in points:
        parts.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{colour(0)}">'
            f"<title>{escape(day)}: {show(v)}</title></circle>"
        )
    parts += _day_labels(days, step)
    parts.append("</svg>")
    return "".join(parts)
