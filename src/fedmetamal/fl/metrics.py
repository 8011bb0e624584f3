"""Detection metrics from malware probabilities (or logits) and labels.

Every evaluation in FedMetaMal (global test set, per-client splits, the dashboard, benchmarks)
reports the same dictionary, so tables and plots line up. Besides the usual classification
scores it gives the detection rate at a fixed false-positive rate (1% and 0.1%), the operating
points malware papers such as EMBER report, because a detector that flags many benign files is
unusable whatever its accuracy. Rows labelled -1 (unknown) are ignored.

Metrics that need both classes (ROC AUC, TPR at an FPR) are NaN, not an error, when a split
holds only one class: small non-IID clients often do.
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    precision_recall_fscore_support,
    roc_auc_score,
    roc_curve,
)

METRIC_NAMES: tuple[str, ...] = (
    "loss",
    "accuracy",
    "precision",
    "recall",
    "f1",
    "roc_auc",
    "tpr_at_1pct_fpr",
    "tpr_at_0.1pct_fpr",
    "n",
    "malware_share",
)
"""Every key of a metrics dictionary, in display order."""

SEMI_METRIC_NAMES: tuple[str, ...] = ("pseudo_coverage", "pseudo_accuracy")
"""Keys a simulation round adds when a semi-supervised scenario hid training labels: the global
model as a pseudo-labeller on the hidden-label rows (``fedmetamal.sim.evaluate``)."""

FPR_TARGETS: dict[str, float] = {"tpr_at_1pct_fpr": 0.01, "tpr_at_0.1pct_fpr": 0.001}
"""The false-positive rates at which the detection rate is reported."""

_EPS = 1e-7


def detection_metrics(
    scores: np.ndarray, labels: np.ndarray, threshold: float = 0.5
) -> dict[str, float]:
    """Metrics of malware probabilities ``scores`` in [0, 1] against labels 1/0 (-1 ignored).

    A sample is predicted malware when its probability is >= ``threshold``. The loss is the
    mean binary cross-entropy with probabilities clipped to [1e-7, 1 - 1e-7], so one confident
    mistake cannot make it infinite.
    """
    probs, y = _select(scores, labels)
    if probs.size and (probs.min() < 0.0 or probs.max() > 1.0):
        raise ValueError(
            "scores must be probabilities in [0, 1]; use detection_metrics_from_logits for logits"
        )
    return _metrics(probs, probs, y, threshold)


def detection_metrics_from_logits(
    logits: np.ndarray, labels: np.ndarray, threshold: float = 0.5
) -> dict[str, float]:
    """Like :func:`detection_metrics`, for logits (the raw network output).

    ROC-based metrics rank the logits themselves, which keeps very confident scores apart
    where their sigmoids would round to the same 1.0. Loss and thresholded metrics use
    ``sigmoid(logits)`` exactly as :func:`detection_metrics` uses probabilities, so both entry
    points give the same numbers for the same model.
    """
    z, y = _select(logits, labels)
    return _metrics(_sigmoid(z), z, y, threshold)


def tpr_at_fpr(scores: np.ndarray, labels: np.ndarray, target_fpr: float) -> float:
    """The largest true-positive rate on the ROC curve whose false-positive rate <= target.

    Labels must be 1/0 here (callers drop -1 first); NaN unless both classes are present.
    """
    y = np.asarray(labels)
    if y.size == 0 or np.unique(y).size < 2:
        return math.nan
    fpr, tpr, _ = roc_curve(y, np.asarray(scores), drop_intermediate=False)
    return float(tpr[fpr <= target_fpr].max())


#: Decimals of every metric printed: terminal tables, thesis tables and the report agree.
DECIMALS = 4


def format_metric(name: str, value: float) -> str:
    """A metric value for tables: counts as integers (a mean of counts rounded), everything else
    with ``DECIMALS`` decimals; NaN as n/a."""
    v = float(value)
    if math.isnan(v):
        return "n/a"
    if name == "n":
        return str(round(v))
    return f"{v:.{DECIMALS}f}"


def _sigmoid(z: np.ndarray) -> np.ndarray:
    """Overflow-free logistic function."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _select(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Float64 scores and int labels of the labelled (not -1) rows, after checking inputs."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y_raw = np.asarray(labels).reshape(-1)
    if s.shape != y_raw.shape:
        raise ValueError(f"{s.size} scores but {y_raw.size} labels")
    if not np.isin(y_raw, (-1, 0, 1)).all():
        raise ValueError("labels must be 1 (malware), 0 (benign) or -1 (unlabelled)")
    keep = y_raw != -1
    s, y = s[keep], y_raw[keep].astype(np.int64)
    if not np.isfinite(s).all():
        raise ValueError("scores contain NaN or infinite values")
    return s, y


def _metrics(
    probs: np.ndarray, ranking: np.ndarray, y: np.ndarray, threshold: float
) -> dict[str, float]:
    n = int(y.size)
    if n == 0:
        out = dict.fromkeys(METRIC_NAMES, math.nan)
        out["n"] = 0
        return out
    p = np.clip(probs, _EPS, 1.0 - _EPS)
    loss = -np.mean(y * np.log(p) + (1 - y) * np.log1p(-p))
    pred = (probs >= threshold).astype(np.int64)
    precision, recall, f1, _ = precision_recall_fscore_support(
        y, pred, average="binary", pos_label=1, labels=[0, 1], zero_division=0
    )
    both_classes = np.unique(y).size == 2
    out: dict[str, float] = {
        "loss": float(loss),
        "accuracy": float(accuracy_score(y, pred)),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "roc_auc": float(roc_auc_score(y, ranking)) if both_classes else math.nan,
    }
    for name, target in FPR_TARGETS.items():
        out[name] = tpr_at_fpr(ranking, y, target)
    out["n"] = n
    out["malware_share"] = float(y.mean())
    return out
