"""Publication figures of a suite: learning curves, final metric vs α and vs heterogeneity.

Figures are drawn on :class:`matplotlib.figure.Figure` objects, never through pyplot, so building
a report leaves no global plotting state behind (not even the backend: a notebook that imports
this module keeps its own) and works on headless machines; no
``matplotlib.use("Agg")`` is needed because pyplot is never imported. Each figure is saved as PNG
(200 dpi, for the report and slides) and PDF (vector, TrueType fonts, for the thesis), written
atomically.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter

from fedmetamal.experiments.atomic_write import write_atomic
from fedmetamal.experiments.naming import slugify, unique_slugs
from fedmetamal.experiments.results import NO_SETTING, SEED_AXIS, SuiteResults
from fedmetamal.experiments.style import FIGSIZE, RC, metric_label, style_of

DPI = 200
FIGURE_PREFIXES = ("curve_", "final_")
DODGE_DECADES = 0.015
MAX_ALPHA_TICKS = 10


@dataclass
class FigureFile:
    kind: str  # "curve", "alpha" or "index"
    name: str  # file stem
    caption: str
    png: Path
    pdf: Path


def _new_figure() -> tuple[Figure, object]:
    fig = Figure(figsize=FIGSIZE, layout="constrained")
    return fig, fig.add_subplot()


def _save(fig: Figure, folder: Path, name: str) -> tuple[Path, Path]:
    paths = (folder / f"{name}.png", folder / f"{name}.pdf")
    for path, fmt in zip(paths, ("png", "pdf"), strict=True):
        buf = io.BytesIO()
        # Fixed metadata keeps rebuilt PDFs byte-identical for unchanged data.
        meta = {"CreationDate": None} if fmt == "pdf" else {"Software": "fedmetamal"}
        fig.savefig(buf, format=fmt, dpi=DPI, metadata=meta)
        write_atomic(path, buf.getvalue())
    return paths


def _per_method(
    res: SuiteResults, frame: pd.DataFrame
) -> Iterator[tuple[str, pd.DataFrame, dict[str, Any]]]:
    """Each method that has rows in ``frame``, with those rows and its style.

    The style follows the method's place in the suite, not in ``frame``, so a method keeps its
    colour and marker across every figure of a report.
    """
    for i, method in enumerate(res.methods):
        rows = frame[frame["method"] == method]
        if not rows.empty:
            yield method, rows, style_of(i)


def _series_order(res: SuiteResults, series: pd.Series) -> list[str]:
    """Series labelled ``"<method> — <setting>"`` in the suite's method order, then by name."""

    def key(label: str) -> tuple[int, str]:
        method = label.split(" — ")[0]
        return (res.methods.index(method) if method in res.methods else len(res.methods), label)

    return sorted(series.unique(), key=key)


def _legend(ax: object, n: int, title: str) -> None:
    if n:
        ax.legend(title=title, frameon=False, loc="best")  # type: ignore[attr-defined]


def _save_final(
    fig: Figure, ax: Any, folder: Path, metric: str, versus: str, series: int, caption: str
) -> FigureFile:
    """Label, legend and save a figure of the final ``metric`` against ``versus`` (inside the
    style context: fonts are embedded at save time), named ``final_<metric>_vs_<versus>``."""
    ax.set_ylabel(f"{metric_label(metric)} (final)")
    _legend(ax, series, "method")
    name = f"final_{_safe(metric)}_vs_{versus}"
    png, pdf = _save(fig, folder, name)
    return FigureFile(versus, name, caption, png, pdf)


# --- learning curves ------------------------------------------------------------------------------


def curve_figures(res: SuiteResults, folder: Path, metric: str) -> list[FigureFile]:
    """One figure per setting: ``metric`` vs round, a line per method, band = ± std over seeds."""
    curves = res.curves
    if curves.empty or metric not in curves:
        return []
    out = []
    slugs = unique_slugs(res.settings)
    for setting in res.settings:
        data = curves[(curves["setting"] == setting) & curves[metric].notna()]
        if data.empty:
            continue
        with matplotlib.rc_context(RC):
            fig, ax = _new_figure()
            drawn = 0
            for method, rows, st in _per_method(res, data):
                g = rows.groupby("round")[metric].agg(["mean", "std", "count"]).sort_index()
                x = g.index.to_numpy(dtype=float)
                mean, std = g["mean"].to_numpy(), g["std"].to_numpy()
                seeds = rows[SEED_AXIS].nunique() if SEED_AXIS in rows else 1
                ax.plot(
                    x,
                    mean,
                    label=f"{method} (n={seeds})" if seeds > 1 else method,
                    color=st["color"],
                    linestyle=st["linestyle"],
                    marker=st["marker"],
                    markevery=max(1, len(x) // 10),
                )
                band = np.isfinite(std)
                if band.any():
                    ax.fill_between(
                        x[band],
                        (mean - std)[band],
                        (mean + std)[band],
                        color=st["color"],
                        alpha=0.18,
                        linewidth=0,
                    )
                drawn += 1
            ax.set_xlabel("Round")
            ax.set_ylabel(metric_label(metric))
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            axes = " / ".join(a.key for a in res.setting_axes)
            title = res.name if setting == NO_SETTING else f"{axes}: {setting}"
            ax.set_title(title)
            _legend(ax, drawn, "method")
            name = f"curve_{_safe(metric)}_{slugs[setting]}"
            png, pdf = _save(fig, folder, name)
        caption = (
            f"{metric_label(metric)} on the global test set per round, {title}: mean over "
            "seeds, shaded ± one standard deviation."
        )
        out.append(FigureFile("curve", name, caption, png, pdf))
    return out


# --- final metric vs Dirichlet alpha --------------------------------------------------------------


def _alpha_axes(res: SuiteResults, f: pd.DataFrame) -> list[str]:
    """Setting axes along which α changes while everything else stays fixed."""
    keys = [a.key for a in res.setting_axes]
    found = []
    for key in keys:
        others = ["method", *[k for k in keys if k != key], SEED_AXIS]
        groups = f.groupby(others, dropna=False)["alpha"].nunique()
        if len(groups) and groups.max() > 1:
            found.append(key)
    return found


def alpha_figure(res: SuiteResults, folder: Path, metric: str) -> FigureFile | None:
    """Final ``metric`` vs Dirichlet α (log x), error bars = std over seeds; needs >= 2 alphas."""
    f = res.final
    if metric not in f or "alpha" not in f:
        return None
    f = f[(f["status"] == "finished") & np.isfinite(f["alpha"].astype(float))]
    f = f[np.isfinite(pd.to_numeric(f[metric], errors="coerce").astype(float))]
    if f["alpha"].nunique() < 2:
        return None
    f = f.copy()
    alpha_keys = set(_alpha_axes(res, f))
    series_keys = [a.key for a in res.setting_axes if a.key not in alpha_keys]
    label_parts = []
    for _, row in f.iterrows():
        parts = [str(row[k]) for k in series_keys]
        if f["partition_kind"].nunique() > 1:
            parts.append(str(row["partition_kind"]))
        label_parts.append(", ".join(parts))
    f["series"] = [
        f"{m} — {p}" if p else str(m) for m, p in zip(f["method"], label_parts, strict=True)
    ]
    order = _series_order(res, f["series"])
    with matplotlib.rc_context(RC):
        fig, ax = _new_figure()
        for i, series in enumerate(order):
            rows = f[f["series"] == series]
            g = rows.groupby("alpha")[metric].agg(["mean", "std"]).sort_index()
            st = style_of(i)
            # Dodge the series a little along the log axis so error bars do not hide each other.
            dodge = 10 ** (DODGE_DECADES * (i - (len(order) - 1) / 2))
            ax.errorbar(
                g.index.to_numpy(dtype=float) * dodge,
                g["mean"].to_numpy(),
                yerr=g["std"].fillna(0.0).to_numpy(),
                label=series,
                color=st["color"],
                linestyle=st["linestyle"],
                marker=st["marker"],
                capsize=3,
            )
        ax.set_xscale("log")
        alphas = sorted(f["alpha"].astype(float).unique())
        if len(alphas) <= MAX_ALPHA_TICKS:  # tick the grid's own values, written plainly
            ax.set_xticks(alphas, [f"{a:g}" for a in alphas])
        else:
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("Dirichlet concentration α (log scale; smaller = more non-IID)")
        caption = (
            f"Final {metric_label(metric)} against the Dirichlet concentration α: mean over "
            "seeds, error bars ± one standard deviation (series slightly offset along α for "
            "legibility)."
        )
        return _save_final(fig, ax, folder, metric, "alpha", len(order), caption)


# --- final metric vs a numeric setting (label ratio, server labels, clients, ...) -----------------


_LINESTYLES = ("-", "--", ":", "-.")


def _numeric_labels(labels: list[str]) -> list[float] | None:
    try:
        values = [float(v) for v in labels]
    except (TypeError, ValueError):
        return None
    return values if np.all(np.isfinite(values)) else None


def numeric_axis_figures(res: SuiteResults, folder: Path, metric: str) -> list[FigureFile]:
    """Final ``metric`` vs each setting axis whose values are numbers (a label ratio, a server
    share, a client count): a line per method and combination of the other settings, error bars
    ± std over seeds, log x when the values span a decade or more. α has its own figure."""
    f = res.final
    if metric not in f:
        return []
    f = f[f["status"] == "finished"].copy()
    f[metric] = pd.to_numeric(f[metric], errors="coerce").astype(float)
    f = f[np.isfinite(f[metric])]
    out = []
    for axis in res.setting_axes:
        if axis.key.endswith("alpha"):
            continue
        values = _numeric_labels([str(v) for v in f[axis.key]]) if axis.key in f else None
        if values is None or len(set(values)) < 2:
            continue
        rows = f.assign(_x=values)
        others = [a.key for a in res.setting_axes if a.key != axis.key]
        rows["series"] = [
            " — ".join([str(m), *(str(r[k]) for k in others)])
            for (_, r), m in zip(rows.iterrows(), rows["method"], strict=True)
        ]
        order = _series_order(res, rows["series"])
        with matplotlib.rc_context(RC):
            fig, ax = _new_figure()
            combos = list(dict.fromkeys(s.split(" — ", 1)[1] if " — " in s else "" for s in order))
            for series in order:
                method, _, combo = series.partition(" — ")
                g = rows[rows["series"] == series].groupby("_x")[metric].agg(["mean", "std"])
                # colour and marker say the method (as in every figure), the line the setting
                st = style_of(res.methods.index(method) if method in res.methods else 0)
                ax.errorbar(
                    g.index.to_numpy(dtype=float),
                    g["mean"].to_numpy(),
                    yerr=g["std"].fillna(0.0).to_numpy(),
                    label=series,
                    color=st["color"],
                    linestyle=_LINESTYLES[combos.index(combo) % len(_LINESTYLES)],
                    marker=st["marker"],
                    capsize=3,
                )
            xs = sorted(set(values))
            if xs[0] > 0 and xs[-1] / xs[0] >= 10:
                ax.set_xscale("log")
            if len(xs) <= MAX_ALPHA_TICKS:
                ax.set_xticks(xs, [f"{x:g}" for x in xs])
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xlabel(axis.key)
            caption = (
                f"Final {metric_label(metric)} against {axis.key}: mean over seeds, error bars "
                "± one standard deviation."
            )
            out.append(_save_final(fig, ax, folder, metric, slugify(axis.key), len(order), caption))
    return out


# --- final metric vs heterogeneity index ----------------------------------------------------------


def index_figure(res: SuiteResults, folder: Path, metric: str) -> FigureFile | None:
    """Final ``metric`` of every run vs its federation's heterogeneity index, per method."""
    f = res.final
    if metric not in f or "heterogeneity_index" not in f:
        return None
    x_all = pd.to_numeric(f["heterogeneity_index"], errors="coerce").astype(float)
    y_all = pd.to_numeric(f[metric], errors="coerce").astype(float)
    keep = (f["status"] == "finished") & np.isfinite(x_all) & np.isfinite(y_all)
    if keep.sum() < 2:
        return None
    f = f[keep]
    with matplotlib.rc_context(RC):
        fig, ax = _new_figure()
        drawn = 0
        for method, rows, st in _per_method(res, f):
            ax.scatter(
                rows["heterogeneity_index"].astype(float),
                rows[metric].astype(float),
                label=method,
                color=st["color"],
                marker=st["marker"],
                s=30,
                alpha=0.85,
                edgecolors="none",
            )
            drawn += 1
        ax.set_xlabel("Heterogeneity index (0 = IID)")
        caption = (
            f"Final {metric_label(metric)} of each run against its federation's heterogeneity "
            "index (one point per run and seed)."
        )
        return _save_final(fig, ax, folder, metric, "index", drawn, caption)


# --- all ------------------------------------------------------------------------------------------


def _safe(metric: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "._-" else "-" for ch in metric)


def write_figures(
    res: SuiteResults, figures_dir: Path, curve_metrics: list[str] | None = None
) -> list[FigureFile]:
    """Curves (primary metric unless ``curve_metrics`` says otherwise), vs-α and vs-index.

    Figures an earlier build wrote that this build no longer produces are removed, so the folder
    always matches the data.
    """
    figures_dir.mkdir(parents=True, exist_ok=True)
    primary = res.primary_metric
    out: list[FigureFile] = []
    for metric in curve_metrics or [primary]:
        out += curve_figures(res, figures_dir, metric)
    for make in (alpha_figure, index_figure):
        fig = make(res, figures_dir, primary)
        if fig is not None:
            out.append(fig)
    out += numeric_axis_figures(res, figures_dir, primary)
    from fedmetamal.experiments.privacy_figure import privacy_figures

    out += privacy_figures(res, figures_dir, res.metrics[:2])
    keep = {p.name for f in out for p in (f.png, f.pdf)}
    for old in figures_dir.iterdir():
        if (
            old.is_file()
            and old.name.startswith(FIGURE_PREFIXES)
            and old.suffix in (".png", ".pdf")
            and old.name not in keep
        ):
            old.unlink()
    return out


__all__ = [
    "FigureFile",
    "alpha_figure",
    "curve_figures",
    "index_figure",
    "numeric_axis_figures",
    "write_figures",
]
