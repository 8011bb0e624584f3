"""Detection metrics from score histograms: federated evaluation without sharing scores.

A participant evaluating the global model on its local test split shares, per class, how many
of its files fall in each of ``BINS`` equal score bins (and its summed loss) — counts, never the
per-file scores or labels. The server adds the histograms of all participants and computes the
same metrics :func:`fedmetamal.fl.metrics.detection_metrics` gives on pooled scores, up to the
bin width (1e-4 in score): ROC AUC with ties inside a bin counted as half, TPR at an FPR read at
bin edges, and thresholded metrics at 0.5, which is a bin edge.
"""

from __future__ import annotations

import math

import numpy as np

from fedmetamal.fl.metrics import FPR_TARGETS

#: Score bins of an evaluation histogram over [0, 1].
BINS = 10_000


def score_histogram(scores: np.ndarray) -> np.ndarray:
    """Counts of ``scores`` (probabilities) in each of :data:`BINS` bins, int64."""
    idx = np.clip((np.asarray(scores, dtype=np.float64) * BINS).astype(np.int64), 0, BINS - 1)
    return np.bincount(idx, minlength=BINS).astype(np.int64)


def histogram_metrics(
    benign: np.ndarray, malware: np.ndarray, loss_sum: float, threshold: float = 0.5
) -> dict[str, float]:
    """The detection metrics of pooled histograms (``benign``/``malware`` counts per bin)."""
    b = np.asarray(benign, dtype=np.float64)
    m = np.asarray(malware, dtype=np.float64)
    nb, nm = float(b.sum()), float(m.sum())
    n = nb + nm
    cut = round(threshold * BINS)
    tp, _fn = float(m[cut:].sum()), float(m[:cut].sum())
    fp, tn = float(b[cut:].sum()), float(b[:cut].sum())
    out: dict[str, float] = {
        "loss": loss_sum / n if n else math.nan,
        "accuracy": (tp + tn) / n if n else math.nan,
        "precision": tp / (tp + fp) if tp + fp else 0.0,
        "recall": tp / nm if nm else 0.0,  # as detection_metrics: nothing to recall
    }
    p, r = out["precision"], out["recall"]
    out["f1"] = 2 * p * r / (p + r) if (p + r) and not math.isnan(r) else 0.0
    if nb and nm:
        # P(score_malware > score_benign) + 0.5 P(same bin)
        below = np.cumsum(b) - b  # benign strictly below each bin
        out["roc_auc"] = float((m * (below + 0.5 * b)).sum() / (nb * nm))
        # operating points at bin edges, from the highest threshold down
        fpr = np.cumsum(b[::-1]) / nb
        tpr = np.cumsum(m[::-1]) / nm
        for name, target in FPR_TARGETS.items():
            ok = fpr <= target
            out[name] = float(tpr[ok].max()) if ok.any() else 0.0
    else:
        out["roc_auc"] = math.nan
        for name in FPR_TARGETS:
            out[name] = math.nan
    out["n"] = n
    out["malware_share"] = nm / n if n else math.nan
    return out


def histogram_threshold(benign: np.ndarray, target_fpr: float) -> float | None:
    """The lowest bin edge at which at most ``target_fpr`` of benign files score at or above
    it (a file is malware when its score >= the threshold); None without benign counts."""
    b = np.asarray(benign, dtype=np.float64)
    if b.sum() == 0:
        return None
    above = np.cumsum(b[::-1])[::-1] / b.sum()  # share of benign at or above each bin's edge
    ok = np.flatnonzero(above <= target_fpr)
    edge = int(ok[0]) if ok.size else BINS
    return edge / BINS
