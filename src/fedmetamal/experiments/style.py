"""How metrics, numbers and figures look, shared by tables, figures and the report.

One place for display names and the colour-blind-safe palette keeps the thesis tables, the plots
and the HTML report consistent with one another; numbers are written by
:func:`fedmetamal.fl.metrics.format_metric`, as in the terminal.
"""

from __future__ import annotations

from typing import Any

from fedmetamal.experiments.results import LOWER_IS_BETTER

METRIC_LABELS: dict[str, str] = {
    "loss": "Test loss (BCE)",
    "train_loss": "Training loss (BCE)",
    "accuracy": "Accuracy",
    "precision": "Precision",
    "recall": "Recall (TPR)",
    "f1": "F1 score",
    "roc_auc": "ROC AUC",
    "tpr_at_1pct_fpr": "TPR at 1% FPR",
    "tpr_at_0.1pct_fpr": "TPR at 0.1% FPR",
    "n": "Test samples",
    "malware_share": "Malware share",
    "seconds": "Run time (s)",
    "heterogeneity_index": "Heterogeneity index",
}

# Okabe & Ito (2008), "Color Universal Design": distinguishable with every common colour-vision
# deficiency; black last so that it is used only when there are many methods.
PALETTE: tuple[str, ...] = (
    "#0072B2",  # blue
    "#E69F00",  # orange
    "#009E73",  # bluish green
    "#D55E00",  # vermillion
    "#CC79A7",  # reddish purple
    "#56B4E9",  # sky blue
    "#F0E442",  # yellow
    "#000000",  # black
)
MARKERS: tuple[str, ...] = ("o", "s", "^", "D", "v", "P", "X", "*")
LINESTYLES: tuple[str, ...] = ("-", "--", "-.", ":")

RC: dict[str, Any] = {
    "font.size": 11,
    "axes.titlesize": 11,
    "axes.labelsize": 11,
    "legend.fontsize": 10,
    "legend.title_fontsize": 10,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "lines.linewidth": 1.8,
    "lines.markersize": 5,
    "savefig.dpi": 200,
    "pdf.fonttype": 42,  # TrueType in PDFs: editable text, accepted by publishers
}
FIGSIZE = (6.4, 4.0)


def metric_label(name: str) -> str:
    return METRIC_LABELS.get(name, name.replace("_", " "))


def higher_is_better(metric: str) -> bool:
    return metric not in LOWER_IS_BETTER


def style_of(i: int) -> dict[str, Any]:
    """Colour, marker and line style of the i-th series (distinct beyond the palette's size)."""
    return {
        "color": PALETTE[i % len(PALETTE)],
        "marker": MARKERS[i % len(MARKERS)],
        "linestyle": LINESTYLES[(i // len(PALETTE)) % len(LINESTYLES)],
    }
