"""One figure that shows how a federation is skewed: who holds what, and how far from IID.

Top: each client's benign/malware counts (label and quantity skew at a glance). Middle, when the
data has families: each client's family mix (family skew). Bottom: each client's own distance
from the pooled data (label TV and JS, feature JS). The federation-level measures sit under the
title. Bars thin out and tick labels thin out for many clients, so 100 clients stay readable.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.ticker import MaxNLocator

if TYPE_CHECKING:
    from fedmetamal.data.heterogeneity import HeterogeneityReport

#: Okabe & Ito's colour-blind-safe palette (black left out).
OKABE_ITO = ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#999999")
#: Paul Tol's "muted" colour-blind-safe palette for the family mix; "other" is pale grey.
TOL_MUTED = (
    "#CC6677",
    "#332288",
    "#DDCC77",
    "#117733",
    "#88CCEE",
    "#882255",
    "#44AA99",
    "#999933",
    "#AA4499",
)
OTHER_COLOUR = "#DDDDDD"
BENIGN_COLOUR, MALWARE_COLOUR = "#0072B2", "#D55E00"
TOP_FAMILIES = len(TOL_MUTED)
#: Per-client measures drawn in the bottom panel, when the report has them.
CLIENT_PANEL = ("label_tv", "label_js", "feature_js")
#: Federation-level measures shown under the title, with their display names.
HEADLINE = {
    "index": "index",
    "label_emd": "label EMD",
    "quantity_gini": "size Gini",
    "feature_js": "feature JS",
}
MAX_TICK_LABELS = 30


def _fmt(v: Any) -> str:
    f = float("nan") if v is None else float(v)
    return "n/a" if math.isnan(f) else f"{f:.3f}"


def _client_axis(ax: Axes, n: int) -> None:
    ax.set_xlim(-0.6, n - 0.4)
    if n <= MAX_TICK_LABELS:
        ax.set_xticks(range(n))
    else:
        ax.xaxis.set_major_locator(MaxNLocator(nbins=10, integer=True))
    ax.set_xlabel("client")


def _stacked(ax: Axes, values: np.ndarray, bottom: np.ndarray, colour: str, label: str) -> None:
    """One layer of a stacked bar chart: separate bars for few clients; for many, one stepped
    patch (the same picture without thousands of rectangles, so PNG and SVG stay fast)."""
    n = len(values)
    if n <= MAX_TICK_LABELS:
        ax.bar(
            np.arange(n),
            values,
            0.8,
            bottom=bottom,
            color=colour,
            label=label,
            edgecolor="white",
            lw=0.5,
        )
    else:
        edges = np.arange(n + 1) - 0.5
        ax.stairs(bottom + values, edges, baseline=bottom, fill=True, color=colour, label=label)


def _labels_panel(ax: Axes, counts: np.ndarray) -> None:
    n = len(counts)
    benign, malware = counts[:, 0].astype(float), counts[:, 1].astype(float)
    _stacked(ax, benign, np.zeros(n), BENIGN_COLOUR, "benign")
    _stacked(ax, malware, benign, MALWARE_COLOUR, "malware")
    ax.set_ylabel("training samples")
    ax.set_title("label composition per client", loc="left")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    _client_axis(ax, n)


def family_shares(family_counts: pd.DataFrame, top: int = TOP_FAMILIES) -> pd.DataFrame:
    """Each client's share of its samples per family: the ``top`` largest families overall,
    the rest summed as ``other``."""
    totals = family_counts.sum(axis=0).sort_values(ascending=False, kind="stable")
    keep = list(totals.index[:top])
    shares = family_counts[keep].astype(float)
    rest = family_counts.drop(columns=keep)
    if rest.shape[1]:
        shares["other"] = rest.sum(axis=1).astype(float)
    sizes = family_counts.sum(axis=1).replace(0, np.nan).astype(float)
    return shares.div(sizes, axis=0).fillna(0.0)


def _families_panel(ax: Axes, family_counts: pd.DataFrame) -> None:
    shares = family_shares(family_counts)
    n = len(shares)
    bottom = np.zeros(n)
    for i, name in enumerate(shares.columns):
        colour = OTHER_COLOUR if name == "other" else TOL_MUTED[i % len(TOL_MUTED)]
        vals = shares[name].to_numpy(dtype=float)
        _stacked(ax, vals, bottom.copy(), colour, str(name))
        bottom += vals
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of samples")
    ax.set_title("family / category composition per client", loc="left")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8)
    _client_axis(ax, n)


def _client_values(clients: list[dict[str, Any]], key: str) -> np.ndarray:
    return np.array([float("nan") if c.get(key) is None else float(c[key]) for c in clients])


def _measures_panel(ax: Axes, clients: list[dict[str, Any]], keys: list[str]) -> None:
    """Label distances as bars (lines beyond 30 clients); feature measures on their own right
    axis, since their scale (a few hundredths of a bit) would vanish beside label distances."""
    n = len(clients)
    x = np.arange(n)
    left = [k for k in keys if not k.startswith("feature_")]
    right = [k for k in keys if k.startswith("feature_")]
    for i, key in enumerate(left):
        vals, colour = _client_values(clients, key), OKABE_ITO[(2, 4, 6)[i % 3]]
        if n <= MAX_TICK_LABELS:
            w = 0.8 / len(left)
            ax.bar(x - 0.4 + w * (i + 0.5), vals, w, color=colour, label=key)
        else:
            ax.plot(x, vals, color=colour, lw=1.2, marker=".", ms=3, label=key)
    ax.set_ylabel("label distance")
    ax.set_ylim(bottom=0)
    handles, labels = ax.get_legend_handles_labels()
    if right:
        twin = ax.twinx()
        for key in right:
            twin.plot(
                x,
                _client_values(clients, key),
                color="black",
                lw=1.0,
                marker="o",
                ms=4 if n <= MAX_TICK_LABELS else 2,
                label=f"{key} (right axis)",
            )
        twin.set_ylabel("feature JS (bits)")
        twin.set_ylim(bottom=0)
        more = twin.get_legend_handles_labels()
        handles, labels = handles + more[0], labels + more[1]
    ax.set_title("per-client distance from the pooled data", loc="left")
    ax.legend(
        handles,
        labels,
        loc="upper left",
        bbox_to_anchor=(1.12 if right else 1.01, 1.0),
        frameon=False,
    )
    _client_axis(ax, n)


def headline(report: HeterogeneityReport) -> str:
    """The federation-level measures in one line, e.g. ``index 0.412 · label EMD 0.300 · ...``."""
    return " · ".join(f"{label} {_fmt(report.federation.get(k))}" for k, label in HEADLINE.items())


def plot_federation(report: HeterogeneityReport, path_stem: Path | str, title: str) -> list[Path]:
    """Draw ``report`` and save it as ``<path_stem>.png`` (150 dpi) and ``.svg``."""
    stem = Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    families = report.family_counts
    has_families = families is not None and families.shape[1] > 0
    keys = [k for k in CLIENT_PANEL if report.clients and k in report.clients[0]]
    panels = 2 + int(has_families)
    n = len(report.clients)
    width = 9.5 if n <= MAX_TICK_LABELS else 12.0
    fig, axes = plt.subplots(
        panels, 1, figsize=(width, 2.9 * panels + 0.9), squeeze=False, layout="constrained"
    )
    axes = axes[:, 0]
    _labels_panel(axes[0], np.asarray(report.label_counts))
    if has_families:
        assert families is not None
        _families_panel(axes[1], families)
    _measures_panel(axes[-1], report.clients, keys)
    fig.suptitle(f"{title}\n{headline(report)}", fontsize=12, x=0.02, ha="left")
    paths = [stem.with_name(stem.name + ".png"), stem.with_name(stem.name + ".svg")]
    fig.savefig(paths[0], dpi=150, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight")
    plt.close(fig)
    return paths
