"""The report page: one HTML file with its styles, its charts (inline SVG, report_svg.py) and a few
lines of script (the switch of the spend chart) all inside it, so it opens with no network."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from html import escape

from .report_data import DIMENSIONS, ReportData, as_json
from .report_svg import bars_by_name, money, number, percent, rate_line, stacked_bars

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1f2328;background:#f6f8fa}
main{max-width:960px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:0 0 8px}
.sub{color:#57606a;margin:0 0 16px}
section{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:16px;margin:0 0 16px}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:0 0 16px}
.card{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:10px 14px;flex:1;min-width:100px}
.card b{display:block;font-size:20px}.card span{color:#57606a;font-size:12px}
.chart .grid{stroke:#eaeef2}.chart .tick{font-size:11px;fill:#57606a}
.chart .name,.chart .value{font-size:12px;fill:#1f2328}
.legend{list-style:none;padding:0;margin:6px 0;display:flex;flex-wrap:wrap;gap:4px 14px;font-size:12px}
.swatch{display:inline-block;width:10px;height:10px;margin-right:5px;border-radius:2px}
table.figures{border-collapse:collapse;font-size:12px;margin-top:8px;width:100%}
.figures th,.figures td{border-bottom:1px solid #eaeef2;padding:3px 6px;text-align:right;white-space:nowrap}
.figures th:first-child,.figures td:first-child{text-align:left}
.switch button{font:inherit;border:1px solid #d0d7de;background:#f6f8fa;border-radius:6px;padding:3px 10px;
cursor:pointer}
.switch button[aria-pressed=true]{background:#0969da;color:#fff;border-color:#0969da}
.note{color:#57606a}
"""
# The switch: show the panel of one dimension; the page's address may name it (report.html#owner).
SCRIPT = """
(function(){
  var buttons=document.querySelectorAll('.switch button');
  function show(dim){
    document.querySelectorAll('.spend-panel').forEach(function(p){p.hidden=p.dataset.dim!==dim;});
    buttons.forEach(function(b){b.setAttribute('aria-pressed',String(b.dataset.dim===dim));});
    document.getElementById('spend').dataset.shown=dim;
  }
  buttons.forEach(function(b){b.addEventListener('click',function(){show(b.dataset.dim);});});
  var wanted=location.hash.slice(1);
  show(document.querySelector('.spend-panel[data-dim="'+wanted+'"]')?wanted:'model');
  document.documentElement.dataset.script='ran';
})();
"""


def figures(head: Sequence[str], rows: Sequence[Sequence[str]], name: str) -> str:
    """The numbers of a chart, as a table under it: the page reads without hovering."""
    th = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    head_row = f"<thead><tr>{th}</tr></thead>"
    return f'<table class="figures" data-figures="{escape(name)}">{head_row}<tbody>{body}</tbody></table>'


def _cards(data: ReportData) -> str:
    t = data.totals
    hit = percent(t.cache_hits / t.rows) if t.rows else "n/a"
    cards = [
        ("usd", money(t.usd), "spent"),
        ("rows", number(t.rows), "rows"),
        ("calls", number(t.calls), "API calls"),
        ("tokens", number(t.tokens), "tokens"),
        ("cache", hit, "cache hits"),
        ("failed", number(t.failed_rows), "failed rows"),
    ]
    return '<div class="cards">' + "".join(
        f'<div class="card"><b data-total="{key}">{value}</b><span>{label}</span></div>' for key, value, label in cards
    ) + "</div>"  # fmt: skip


def _spend(data: ReportData) -> str:
    buttons = "".join(
        f'<button type="button" data-dim="{dim}" aria-pressed="{str(dim == "model").lower()}">{label}</button>'
        for dim, (label, _) in DIMENSIONS.items()
    )
    panels = []
    for dim, series in data.spend.items():
        names = list(series)
        rows = [
            [day, *(money(series[n][i]) for n in names), money(sum(series[n][i] for n in names))]
            for i, day in enumerate(data.days)
        ]
        rows.append(["total", *(money(sum(series[n])) for n in names), money(sum(sum(v) for v in series.values()))])
        panels.append(
            f'<div class="spend-panel" data-dim="{dim}"{"" if dim == "model" else " hidden"}>'
            + stacked_bars(f"USD per day by {dim}", data.days, series)
            + figures(["day", *names, "total"], rows, f"spend-{dim}")
            + "</div>"
        )
    return (
        '<section id="spend"><h2>Spend per day</h2><div class="switch" role="group" aria-label="split by">'
        f"split by {buttons}</div>{''.join(panels)}</section>"
    )


def _top(data: ReportData, key: str, title: str, name: str) -> str:
    items = data.top[key]
    rows = [[n, money(usd), number(r), number(c)] for n, usd, r, c in items]
    return (
        f'<section id="top-{key}"><h2>{escape(title)}</h2>'
        + bars_by_name(title, [(n, usd) for n, usd, _, _ in items])
        + figures([name, "USD", "rows", "API calls"], rows, f"top-{key}")
        + "</section>"
    )


def _day_rows(data: ReportData, columns: Sequence[tuple[str, str]]) -> list[list[str]]:
    shows = {"money": money, "number": number, "percent": percent}
    return [
        [day, *("-" if data.daily[k][i] is None else shows[fmt](data.daily[k][i] or 0.0) for k, fmt in columns)]
        for i, day in enumerate(data.days)
    ]


def _counts(data: ReportData, key: str) -> list[float]:
    return [v or 0.0 for v in data.daily[key]]


def _cache(data: ReportData) -> str:
    return (
        '<section id="cache"><h2>Cache hit rate and rows per day</h2>'
        + rate_line("Cache hit rate per day", data.days, data.daily["cache_rate"])
        + stacked_bars("Rows per day", data.days, {"rows": _counts(data, "rows")}, fmt="number")
        + figures(["day", "rows", "cache hit rate"], _day_rows(data, [("rows", "number"), ("cache_rate", "percent")]),
                  "cache")
        + "</section>"
    )  # fmt: skip


def _failures(data: ReportData) -> str:
    kinds = data.error_kinds
    by_kind = (
        bars_by_name("Failed rows by kind", [(k, float(n)) for k, n in kinds], fmt="number")
        + figures(["kind", "rows"], [[k, number(n)] for k, n in kinds], "error-kinds")
        if kinds
        else '<p class="note">No row failed in this window.</p>'
    )
    return (
        '<section id="failures"><h2>Failed rows and their kinds</h2>'
        + stacked_bars("Failed rows per day", data.days, {"failed rows": _counts(data, "failed_rows")}, fmt="number")
        + figures(["day", "failed rows"], _day_rows(data, [("failed_rows", "number")]), "failed")
        + by_kind
        + "</section>"
    )


def _simple(data: ReportData, key: str, title: str, head: str, fmt: str, note: str) -> str:
    total = sum(_counts(data, key))
    shown = money(total) if fmt == "money" else number(total)
    return (
        f'<section id="{key}"><h2>{escape(title)}</h2><p class="note">{escape(note)} Total: '
        f'<b data-total="{key}">{shown}</b>.</p>'
        + stacked_bars(title, data.days, {head: _counts(data, key)}, fmt=fmt)
        + figures(["day", head], _day_rows(data, [(key, fmt)]), key)
        + "</section>"
    )


def _quality(data: ReportData) -> str:
    parts = ['<section id="quality"><h2>Golden accuracy and recheck agreement</h2>']
    for key, title, absent in (
        ("golden", "Golden accuracy per day", "No golden set was scored in this window (golden= on a call)."),
        ("recheck", "Recheck agreement per day", "No cached row was rechecked in this window (dbt_llm_recheck)."),
    ):
        if any(v is not None for v in data.daily[key]):
            parts.append(rate_line(title, data.days, data.daily[key]))
            parts.append(figures(["day", title.split(" per ")[0].lower()], _day_rows(data, [(key, "percent")]), key))
        else:
            parts.append(f'<p class="note">{escape(absent)}</p>')
    return "".join(parts) + "</section>"


def page(data: ReportData, schema: str, days: int, now: datetime) -> str:
    window = f"{data.days[0]} to {data.days[-1]}" if data.days else "no day"
    body = "".join(
        [
            _cards(data),
            _spend(data),
            _top(data, "nodes", "Top nodes by cost", "node"),
            _top(data, "owners", "Top owners by cost", "owner"),
            _cache(data),
            _failures(data),
            _simple(data, "saved_usd", "Batch savings per day", "USD saved", "money",
                    "What batch mode saved against the list price of the same tokens."),
            _simple(data, "cached_tokens", "Cached prompt tokens per day", "cached prompt tokens", "number",
                    "Prompt tokens the provider served from its prefix cache, at the cached-input price."),
            _quality(data),
        ]
    )  # fmt: skip
    figures_json = json.dumps(as_json(data)).replace("</", "<\\/")
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>dbt-llm report</title><style>{STYLE}</style></head><body><main>"
        f'<h1>dbt-llm: who spends what</h1><p class="sub">{escape(schema)}.llm_audit, the last {days} day(s): '
        f"{escape(window)} (UTC). Written {escape(now.strftime('%Y-%m-%d %H:%M'))} UTC.</p>"
        f'{body}<script type="application/json" id="figures">{figures_json}</script>'
        f"<script>{SCRIPT}</script></main></body></html>"
    )
