"""The thesis tables of a suite: seeds aggregated to mean ± std, best per column marked.

Two shapes, the ones papers use: a *horizontal* table per metric (methods × settings) to compare
methods across data distributions, and a *vertical* table per method (settings × metrics). Each
is written as CSV (separate mean/std/n columns, full precision, for scripts), Markdown (GitHub
pipe table, best in bold) and LaTeX (booktabs, best in ``\\textbf``). A cell whose seeds did not
all finish shows what it has and how many, ``0.9120 ± 0.0040 (2/3)``, so that a partial result
can never pass for a complete one.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fedmetamal.experiments.atomic_write import write_atomic
from fedmetamal.experiments.naming import unique_slugs
from fedmetamal.experiments.results import SEED_AXIS, SuiteResults
from fedmetamal.experiments.style import higher_is_better, metric_label
from fedmetamal.fl.metrics import DECIMALS, format_metric

DASH = "—"


@dataclass
class Cell:
    """One table cell: a metric aggregated over the seeds of one method and setting."""

    metric: str
    mean: float
    std: float
    n: int  # finished runs with a finite value of the metric
    runs: int  # runs the suite planned for this cell
    failed: int
    finished: int
    best: bool = False

    @property
    def has_value(self) -> bool:
        return self.n > 0

    def text(self, pm: str = " ± ") -> str:
        """``mean ± std`` (std left out for a single value), ``(n/runs)`` when incomplete."""
        if not self.has_value:
            if self.finished:
                return "n/a"
            return "failed" if self.failed else DASH
        out = format_metric(self.metric, self.mean)
        if self.n > 1:
            out += pm + format_metric(self.metric, self.std)
        if self.n < self.runs:
            out += f" ({self.n}/{self.runs})"
        return out


@dataclass
class Table:
    kind: str  # "horizontal" or "vertical"
    name: str  # file stem, e.g. horizontal_roc_auc
    title: str
    corner: str  # header of the row-label column
    rows: list[str]
    columns: list[str]  # display labels
    cells: list[list[Cell]]
    column_keys: list[str] | None = None  # CSV names (metric keys), default: the labels

    def caption(self) -> str:
        return (
            f"{self.title}: mean ± std over seeds; (n/N) where only n of N runs have a value; "
            "best per column in bold."
        )


# --- aggregation -------------------------------------------------------------------------------


def aggregate(res: SuiteResults, metrics: list[str] | None = None) -> pd.DataFrame:
    """One row per method × setting × metric: mean, sample std (ddof=1), n, runs, failed."""
    metrics = metrics or res.metrics
    final = res.final
    rows = []
    groups = {key: g for key, g in final.groupby(["method", "setting"], sort=False)}
    for method in res.methods:
        for setting in res.settings:
            cell_runs = groups.get((method, setting), final.iloc[0:0])
            done = cell_runs[cell_runs["status"] == "finished"]
            failed = int((cell_runs["status"].isin(["failed", "unreadable"])).sum())
            for metric in metrics:
                vals = (
                    pd.to_numeric(done[metric], errors="coerce").to_numpy(dtype=float)
                    if metric in done
                    else np.array([])
                )
                vals = vals[np.isfinite(vals)]
                rows.append(
                    {
                        "method": method,
                        "setting": setting,
                        "metric": metric,
                        "mean": float(vals.mean()) if vals.size else math.nan,
                        "std": float(vals.std(ddof=1)) if vals.size > 1 else math.nan,
                        "n": int(vals.size),
                        "runs": len(cell_runs),
                        "failed": failed,
                        "finished": len(done),
                    }
                )
    return pd.DataFrame(rows)


_CellIndex = dict[tuple[str, str, str], Cell]


def _cells(agg: pd.DataFrame) -> _CellIndex:
    """The aggregate as cells keyed by (method, setting, metric)."""
    out: _CellIndex = {}
    for r in agg.itertuples(index=False):
        out[(str(r.method), str(r.setting), str(r.metric))] = Cell(
            str(r.metric),
            float(r.mean),
            float(r.std),
            int(r.n),
            int(r.runs),
            int(r.failed),
            int(r.finished),
        )
    return out


def mark_best(cells: list[list[Cell]]) -> None:
    """Mark, per column, the cells whose displayed mean is the best (max; min for loss)."""
    for j in range(len(cells[0]) if cells else 0):
        column = [row[j] for row in cells if row[j].has_value]
        if not column:
            continue
        pick = max if higher_is_better(column[0].metric) else min
        best = round(pick(c.mean for c in column), DECIMALS)
        for c in column:
            c.best = round(c.mean, DECIMALS) == best


def horizontal_table(res: SuiteResults, metric: str, agg: pd.DataFrame | None = None) -> Table:
    index = _cells(aggregate(res, [metric]) if agg is None else agg)
    cells = [[index[(m, s, metric)] for s in res.settings] for m in res.methods]
    mark_best(cells)
    return Table(
        "horizontal",
        f"horizontal_{metric}",
        metric_label(metric),
        "method",
        list(res.methods),
        list(res.settings),
        cells,
    )


def vertical_table(
    res: SuiteResults, method: str, slug: str, agg: pd.DataFrame | None = None
) -> Table:
    index = _cells(aggregate(res) if agg is None else agg)
    cells = [[index[(method, s, m)] for m in res.metrics] for s in res.settings]
    mark_best(cells)
    corner = " / ".join(a.key for a in res.setting_axes) or "setting"
    return Table(
        "vertical",
        f"vertical_{slug}",
        f"{method}: metrics per setting",
        corner,
        list(res.settings),
        [metric_label(m) for m in res.metrics],
        cells,
        list(res.metrics),
    )


def build_tables(res: SuiteResults) -> list[Table]:
    """Horizontal tables (one per metric, in manifest order), then vertical (one per method)."""
    agg = aggregate(res)
    tables = [horizontal_table(res, m, agg) for m in res.metrics]
    slugs = unique_slugs(res.methods)
    tables += [vertical_table(res, m, slugs[m], agg) for m in res.methods]
    return tables


# --- formats -----------------------------------------------------------------------------------


def _csv_number(v: float) -> str:
    return "" if math.isnan(v) else repr(float(v))


def to_csv(table: Table) -> str:
    """Wide CSV: the row label, then ``<column> mean/std/n/runs`` for every column."""
    data: dict[str, list[object]] = {table.corner: list(table.rows)}
    for j, col in enumerate(table.column_keys or table.columns):
        cells = [row[j] for row in table.cells]
        data[f"{col} mean"] = [_csv_number(c.mean) for c in cells]
        data[f"{col} std"] = [_csv_number(c.std) for c in cells]
        data[f"{col} n"] = [c.n for c in cells]
        data[f"{col} runs"] = [c.runs for c in cells]
    buf = io.StringIO()
    pd.DataFrame(data).to_csv(buf, index=False, lineterminator="\n")
    return buf.getvalue()


def _md_escape(text: str) -> str:
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("*", "\\*")


def to_markdown(table: Table) -> str:
    head = [table.corner, *table.columns]
    lines = [
        "| " + " | ".join(_md_escape(h) for h in head) + " |",
        "| :--- |" + " ---: |" * len(table.columns),
    ]
    for label, row in zip(table.rows, table.cells, strict=True):
        texts = [f"**{c.text()}**" if c.best else c.text() for c in row]
        lines.append("| " + " | ".join([_md_escape(label), *texts]) + " |")
    return "\n".join(lines) + f"\n\nTable: {_md_escape(table.caption())}\n"


_LATEX = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "α": r"$\alpha$",
    "β": r"$\beta$",
    "γ": r"$\gamma$",
    "δ": r"$\delta$",
    "ε": r"$\varepsilon$",
    "η": r"$\eta$",
    "λ": r"$\lambda$",
    "μ": r"$\mu$",
    "ρ": r"$\rho$",
    "σ": r"$\sigma$",
    "τ": r"$\tau$",
    "±": r"$\pm$",
    "×": r"$\times$",
    "≤": r"$\leq$",
    "≥": r"$\geq$",
    "—": "---",
    "–": "--",
}


def latex_escape(text: str) -> str:
    """Plain text as LaTeX: specials escaped, Greek letters and ± as math."""
    return "".join(_LATEX.get(ch, ch) for ch in str(text))


def to_latex(table: Table, suite_name: str = "") -> str:
    from fedmetamal import __version__

    def comment(text: str) -> str:
        return "% " + " ".join(str(text).split())

    lines = [
        comment(table.caption()),
        comment(f"Generated by fedmetamal {__version__} from suite '{suite_name}'."),
        comment("Needs \\usepackage{booktabs}."),
        "\\begin{tabular}{l" + "r" * len(table.columns) + "}",
        "\\toprule",
        " & ".join(latex_escape(h) for h in [table.corner, *table.columns]) + " \\\\",
        "\\midrule",
    ]
    for label, row in zip(table.rows, table.cells, strict=True):
        texts = [latex_escape(c.text()) for c in row]
        texts = [f"\\textbf{{{t}}}" if c.best else t for c, t in zip(row, texts, strict=True)]
        lines.append(" & ".join([latex_escape(label), *texts]) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    return "\n".join(lines) + "\n"


# --- files -------------------------------------------------------------------------------------


def runs_frame(res: SuiteResults) -> pd.DataFrame:
    """The raw data: every run with its settings, seed, final metrics and outcome."""
    return res.final.drop(columns=["setting"], errors="ignore")


def failures_frame(res: SuiteResults) -> pd.DataFrame:
    bad = res.final[res.final["status"].isin(["failed", "unreadable"])]
    cols = ["id", "status", "method", "setting", SEED_AXIS, "error", "message"]
    return bad.reindex(columns=cols)


def _frame_csv(frame: pd.DataFrame) -> str:
    buf = io.StringIO()
    frame.to_csv(buf, index=False, lineterminator="\n")
    return buf.getvalue()


def write_tables(
    res: SuiteResults, tables_dir: Path, tables: list[Table] | None = None
) -> list[Path]:
    """Write every table as .csv/.md/.tex, plus runs.csv and (if any failed) failures.csv."""
    tables = build_tables(res) if tables is None else tables
    written: list[Path] = []
    for t in tables:
        for ext, text in (
            ("csv", to_csv(t)),
            ("md", to_markdown(t)),
            ("tex", to_latex(t, res.name)),
        ):
            path = tables_dir / f"{t.name}.{ext}"
            write_atomic(path, text)
            written.append(path)
    write_atomic(tables_dir / "runs.csv", _frame_csv(runs_frame(res)))
    written.append(tables_dir / "runs.csv")
    failures = failures_frame(res)
    if len(failures):
        write_atomic(tables_dir / "failures.csv", _frame_csv(failures))
        written.append(tables_dir / "failures.csv")
    else:
        (tables_dir / "failures.csv").unlink(missing_ok=True)  # from an earlier, failed build
    return written


__all__ = [
    "Cell",
    "Table",
    "aggregate",
    "build_tables",
    "horizontal_table",
    "latex_escape",
    "mark_best",
    "to_csv",
    "to_latex",
    "to_markdown",
    "vertical_table",
    "write_tables",
]
