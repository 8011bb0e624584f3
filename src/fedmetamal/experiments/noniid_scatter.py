"""Scatter plots of each heterogeneity measure against FedAvg's AUC drop.

One figure per measure (for a thesis page) and one panel with all of them (to compare at a
glance). Points are coloured and shaped by partition kind, so a measure that only orders one kind
of skew shows up as separate clouds; the grey band is the IID baseline's seed noise (±1 std).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.axes import Axes

from fedmetamal.experiments.noniid_figure import OKABE_ITO

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")
_RC = {"font.size": 11, "axes.titlesize": 12, "axes.labelsize": 11, "legend.fontsize": 9}


def _groups(frame: pd.DataFrame) -> pd.Series:
    mixed = frame["description"].str.contains("+ feature", regex=False)
    return frame["kind"].where(~mixed, frame["kind"] + " + feature skew")


def _style(groups: list[str]) -> dict[str, tuple[str, str]]:
    return {
        g: (OKABE_ITO[i % len(OKABE_ITO)], MARKERS[i % len(MARKERS)]) for i, g in enumerate(groups)
    }


def _draw(ax: Axes, frame: pd.DataFrame, measure: str, rho: float, noise: float) -> None:
    groups = _groups(frame)
    style = _style(sorted(groups.unique()))
    if noise > 0:
        ax.axhspan(-noise, noise, color="0.88", zorder=0, label="IID seed noise (±1 std)")
    ax.axhline(0.0, color="0.5", lw=0.8, zorder=1)
    for g, (colour, marker) in style.items():
        sel = groups == g
        ax.scatter(
            frame.loc[sel, measure],
            frame.loc[sel, "auc_drop"],
            c=colour,
            marker=marker,
            s=36,
            edgecolors="black",
            linewidths=0.4,
            label=g,
            zorder=3,
        )
    shown = "undefined" if math.isnan(rho) else f"{rho:.2f}"
    ax.set_title(f"{measure}  (Spearman ρ = {shown})")
    ax.set_xlabel(measure)
    ax.set_ylabel("ROC AUC drop vs IID")
    # Symmetric log: linear within the seed noise, logarithmic beyond, so one catastrophic
    # federation does not flatten all the others onto the axis.
    ax.set_yscale("symlog", linthresh=max(noise, 1e-3))
    ax.grid(alpha=0.3)


def plot_scatters(
    frame: pd.DataFrame, corr: pd.DataFrame, out: Path, baseline: dict[str, Any]
) -> list[Path]:
    """``scatter_<measure>.png`` for each measure with values, and ``scatter_panel.png/.pdf``."""
    rhos = dict(zip(corr["measure"], corr["spearman_auc"], strict=True))
    measures = [m for m, note in zip(corr["measure"], corr["note"], strict=True) if note != "n/a"]
    noise = float(baseline.get("roc_auc_std", 0.0))
    files: list[Path] = []
    with plt.rc_context(_RC):
        for m in measures:
            fig, ax = plt.subplots(figsize=(6.4, 4.6))
            # Fixed margins (inches) instead of tight_layout, which draws every figure twice.
            fig.subplots_adjust(left=0.9 / 6.4, right=1 - 0.2 / 6.4, bottom=0.6 / 4.6, top=0.9)
            _draw(ax, frame, m, rhos[m], noise)
            ax.legend(loc="best", framealpha=0.9)
            path = out / f"scatter_{m}.png"
            fig.savefig(path, dpi=150)
            plt.close(fig)
            files.append(path)
        if measures:
            files += _panel(frame, measures, rhos, noise, out)
    return files


def _panel(
    frame: pd.DataFrame, measures: list[str], rhos: dict[str, float], noise: float, out: Path
) -> list[Path]:
    cols = min(4, len(measures))
    rows = math.ceil(len(measures) / cols)
    height = 3.6 * rows + 0.8
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, height), squeeze=False)
    # Fixed margins (inches): tight_layout would redraw the whole grid to measure it.
    fig.subplots_adjust(
        left=0.85 / (4.2 * cols),
        right=1 - 0.15 / (4.2 * cols),
        top=1 - 0.4 / height,
        bottom=1.35 / height,
        wspace=0.25,
        hspace=0.5,
    )
    for i, (ax, m) in enumerate(zip(axes.flat, measures, strict=False)):
        _draw(ax, frame, m, rhos[m], noise)
        if i % cols:
            ax.set_ylabel("")
    for ax in list(axes.flat)[len(measures) :]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 5), frameon=False)
    paths = [out / "scatter_panel.png", out / "scatter_panel.pdf"]
    fig.savefig(paths[0], dpi=150)
    fig.savefig(paths[1])
    plt.close(fig)
    return paths
