"""One self-contained HTML report of a suite, beside its tables and figures.

``report.html`` opens offline and can be mailed or archived alone: figures are embedded as base64
PNG ``data:`` URIs, styles are inline, and nothing refers to a server, CDN or web font. The HTML
tables are rendered from the same :class:`~fedmetamal.experiments.tables.Table` objects as the
CSV, Markdown and LaTeX files, so every format shows the same numbers and the same best cells.
Every file is written atomically, so a crash never leaves half a table or half a report.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, select_autoescape

from fedmetamal.experiments.atomic_write import write_atomic
from fedmetamal.experiments.figures import FigureFile, write_figures
from fedmetamal.experiments.results import SuiteResults, load_results
from fedmetamal.experiments.tables import Table, build_tables, write_tables

TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ res.name }} — FedMetaMal suite report</title>
<style>
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2rem auto;
       max-width: 1100px; padding: 0 1rem; color: #1a1a1a; line-height: 1.45; }
h1 { margin-bottom: 0.2rem; }
h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; margin-top: 2.2rem; }
.meta { color: #555; font-size: 0.9rem; }
table { border-collapse: collapse; margin: 0.8rem 0; font-size: 0.9rem; }
th, td { padding: 0.3rem 0.7rem; text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
thead th { border-top: 2px solid #333; border-bottom: 1px solid #333; }
tbody tr:last-child td { border-bottom: 2px solid #333; }
td.best { font-weight: 700; }
td.partial { color: #8a5a00; }
td.empty { color: #999; }
caption { caption-side: bottom; text-align: left; color: #555; font-size: 0.85rem;
          padding-top: 0.3rem; }
.scroll { overflow-x: auto; }
figure { margin: 1rem 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.85rem; }
pre { background: #f6f6f6; padding: 0.8rem; overflow-x: auto; font-size: 0.85rem; }
.counts td, .counts th { text-align: left; }
.status-failed, .status-unreadable { color: #b00020; font-weight: 600; }
.status-pending, .status-missing { color: #8a5a00; }
td.msg { white-space: pre-wrap; text-align: left; max-width: 40rem; }
</style>
</head>
<body>
<h1>{{ res.name }}</h1>
<p class="meta">FedMetaMal suite report · generated {{ generated }} · fedmetamal {{ version }}
{%- if res.manifest.suite_hash %} · suite hash <code>{{ res.manifest.suite_hash }}</code>{% endif %}
<br>suite directory <code>{{ res.suite_dir }}</code></p>

<h2 id="runs">Runs</h2>
<table class="counts">
<thead><tr><th>status</th><th>runs</th></tr></thead>
<tbody>
{%- for status, n in counts.items() if n or status in ("finished", "failed", "pending") %}
<tr><td class="status-{{ status }}">{{ status }}</td><td>{{ n }}</td></tr>
{%- endfor %}
<tr><td>total</td><td>{{ res.runs | length }}</td></tr>
</tbody>
</table>
<p>Methods ({{ res.method_axis }}): {{ res.methods | join(", ") }}.
Settings: {{ res.settings | join("; ") }}.
Metrics: {{ res.metrics | join(", ") }}. Tables aggregate over the seed axis: mean ± sample
standard deviation; (n/N) marks a cell where only n of its N runs have a value.</p>

{% for t in horizontal %}
<h2 id="{{ t.name }}">{{ t.title }}</h2>
{{ table(t) }}
{%- for f in figures_by_metric.get(t.metric, []) %}
{{ figure(f) }}
{%- endfor %}
{% endfor %}

{% if other_figures %}
<h2 id="figures">Further figures</h2>
{% for f in other_figures %}{{ figure(f) }}{% endfor %}
{% endif %}

<h2 id="per-method">Per method</h2>
{% for t in vertical %}
<h3 id="{{ t.name }}">{{ t.title }}</h3>
{{ table(t) }}
{% endfor %}

<h2 id="failures">Failures</h2>
{% if failures %}
<table>
<thead><tr><th>run</th><th>status</th><th>error</th><th>message</th></tr></thead>
<tbody>
{%- for r in failures %}
<tr><td><code>{{ r.id }}</code></td><td class="status-{{ r.status }}">{{ r.status }}</td>
<td>{{ r.error or "" }}</td><td class="msg">{{ r.message or "" }}</td></tr>
{%- endfor %}
</tbody>
</table>
{% else %}
<p>No run failed.</p>
{% endif %}
{% if not_run %}
<h3>Not finished</h3>
<table>
<thead><tr><th>run</th><th>status</th><th>note</th></tr></thead>
<tbody>
{%- for r in not_run %}
<tr><td><code>{{ r.id }}</code></td><td class="status-{{ r.status }}">{{ r.status }}</td>
<td class="msg">{{ r.message or "" }}</td></tr>
{%- endfor %}
</tbody>
</table>
{% endif %}

<h2 id="config">Suite configuration</h2>
<pre>{{ config_text }}</pre>

<h2 id="files">Files</h2>
<p>Beside this report:</p>
<ul>
{%- for f in files %}
<li><a href="{{ f }}">{{ f }}</a></li>
{%- endfor %}
</ul>
</body>
</html>
"""

TABLE_MACRO = """{% macro table(t) -%}
<div class="scroll"><table>
<caption>{{ t.caption }}</caption>
<thead><tr><th>{{ t.corner }}</th>{% for c in t.columns %}<th>{{ c }}</th>{% endfor %}</tr></thead>
<tbody>
{%- for label, row in t.pairs %}
<tr><td>{{ label }}</td>
{%- for c in row %}<td{% if c.css %} class="{{ c.css }}"{% endif %}>{{ c.text }}</td>
{%- endfor %}</tr>
{%- endfor %}
</tbody>
</table></div>
{%- endmacro %}
{% macro figure(f) -%}
<figure><img src="data:image/png;base64,{{ f.data }}" alt="{{ f.caption }}">
<figcaption>{{ f.caption }} (<a href="figures/{{ f.name }}.pdf">PDF</a>)</figcaption></figure>
{%- endmacro %}
"""


def _table_view(t: Table) -> dict[str, Any]:
    rows = []
    for row in t.cells:
        cells = []
        for c in row:
            css = "best" if c.best else ""
            if not c.has_value:
                css = "empty"
            elif c.n < c.runs:
                css += " partial"
            cells.append({"text": c.text(), "css": css.strip()})
        rows.append(cells)
    metric = t.name.removeprefix("horizontal_") if t.kind == "horizontal" else None
    return {
        "name": t.name,
        "title": t.title,
        "corner": t.corner,
        "columns": t.columns,
        "pairs": list(zip(t.rows, rows, strict=True)),
        "caption": t.caption(),
        "metric": metric,
    }


def _figure_view(f: FigureFile) -> dict[str, Any]:
    return {
        "name": f.name,
        "caption": f.caption,
        "data": base64.b64encode(f.png.read_bytes()).decode("ascii"),
        "kind": f.kind,
    }


def _metric_of(f: FigureFile, metrics: list[str]) -> str | None:
    """The metric a figure is about, from its file name (longest match first)."""
    for m in sorted(metrics, key=len, reverse=True):
        if f.name.startswith((f"curve_{m}_", f"final_{m}_")):
            return m
    return None


def render_report(
    res: SuiteResults, tables: list[Table], figures: list[FigureFile], files: list[str]
) -> str:
    """The report's HTML (autoescaped: labels and error messages cannot inject markup)."""
    from fedmetamal import __version__

    env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
    template = env.from_string(TABLE_MACRO + TEMPLATE)
    views = [_table_view(t) for t in tables]
    by_metric: dict[str, list[dict[str, Any]]] = {}
    others = []
    for f in figures:
        m = _metric_of(f, res.metrics)
        (by_metric.setdefault(m, []) if m else others).append(_figure_view(f))
    bad = res.problems()
    config_text = res.suite_yaml
    if config_text is None:
        config_text = json.dumps(
            {k: v for k, v in res.manifest.items() if k != "runs"}, indent=2, ensure_ascii=False
        )
    return template.render(
        res=res,
        generated=datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z"),
        version=__version__,
        counts=res.counts(),
        horizontal=[v for v in views if v["metric"] is not None],
        vertical=[v for v in views if v["metric"] is None],
        figures_by_metric=by_metric,
        other_figures=others,
        failures=[r for r in bad if r.status in ("failed", "unreadable")],
        not_run=[r for r in bad if r.status in ("pending", "missing")],
        config_text=config_text,
        files=files,
    )


def build_report(suite_dir: Path | str, *, curve_metrics: list[str] | None = None) -> Path:
    """Write ``tables/``, ``figures/`` and ``report.html`` into a suite directory.

    Works on a suite in any state (running, partly failed): what is missing is shown as such.
    Returns the path of ``report.html``. ``curve_metrics`` chooses the metrics that get
    learning-curve figures (default: the primary metric, the first of the suite's metrics).
    """
    root = Path(suite_dir)
    res = load_results(root)
    tables = build_tables(res)
    written = write_tables(res, root / "tables", tables)
    figures = write_figures(res, root / "figures", curve_metrics)
    files = [p.relative_to(root).as_posix() for p in written]
    files += [p.relative_to(root).as_posix() for f in figures for p in (f.png, f.pdf)]
    html = render_report(res, tables, figures, files)
    out = root / "report.html"
    write_atomic(out, html)
    return out


__all__ = ["build_report", "render_report"]
