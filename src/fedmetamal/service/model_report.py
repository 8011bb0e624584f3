"""What the dashboard shows about one model version: architecture, metrics, ROC curve and the
confusion matrix at a chosen false-positive rate.

The curve and the matrix come from the score histograms the round's checkpoint keeps
(``service/evaluation_data.py``): the pooled counts of benign and malware test files per score
bin. A file counts as malware when its score is at or above the threshold, and thresholds are
bin edges, so the curve's trapezoid area is the histogram's ROC AUC (ties inside a bin counted
as half) and every point on it is a threshold the scanner could use.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from fedmetamal.errors import ConfigError, FedMetaMalError
from fedmetamal.fl.histogram_metrics import BINS, histogram_threshold
from fedmetamal.service.evaluation_data import read_eval
from fedmetamal.service.store import NotFound
from fedmetamal.v1 import dashboard_pb2

if TYPE_CHECKING:
    from fedmetamal.service.server_core import ServerCore

#: Most points a report's ROC curve carries (enough for a chart, small on the wire).
MAX_ROC_POINTS = 500


def model_report(core: ServerCore, model_id: str, target_fpr: float) -> dashboard_pb2.ModelReport:
    """The report of model version ``model_id``; the threshold is the lowest bin edge that
    flags at most ``target_fpr`` of the evaluation's benign files, or (``target_fpr`` 0) the
    threshold stored with the model. NotFound for an unknown model or a missing file."""
    from fedmetamal.detect.threshold import DEFAULT_THRESHOLD
    from fedmetamal.models.checkpoint import load_checkpoint, network_header

    if not (math.isfinite(target_fpr) and 0.0 <= target_fpr < 1.0):
        raise ConfigError(
            f"target_fpr must lie in [0, 1), not {target_fpr:g}.",
            "Give a false-positive rate such as 0.01, or 0 for the model's stored threshold.",
        )
    rec = core.store.get_model(model_id)
    path = core.data_dir / rec.path
    if not path.is_file():
        raise NotFound(
            f"The file of model {model_id[:64]!r} ({rec.path}) is missing from the server's "
            "data directory.",
            "Restore the data directory from a backup that matches the database.",
        )
    try:
        ckpt = load_checkpoint(path)
    except FedMetaMalError as err:
        raise NotFound(
            f"The file of model {model_id[:64]!r} cannot be read: {err.problem}",
            "Restore the data directory from a backup that matches the database.",
        ) from None
    meta = ckpt.metadata
    stored = meta.get("threshold") if isinstance(meta.get("threshold"), dict) else {}
    stored_value = _number(stored.get("value"), DEFAULT_THRESHOLD)
    report = dashboard_pb2.ModelReport(
        model_id=rec.model_id,
        run_id=rec.run_id,
        round=rec.round,
        architecture_json=json.dumps(network_header(ckpt.network)),
        num_params=rec.num_params,
        feature_schema=rec.feature_schema or "",
        n_features=ckpt.network.n_features,
        metrics={k: float(v) for k, v in rec.metrics.items() if _finite(v)},
    )
    hists = read_eval(ckpt.extra_tensors)
    if hists is None or hists[0].sum() + hists[1].sum() == 0:
        report.threshold = stored_value
        report.evaluated_on = (
            f"no evaluation data: round {rec.round} was not evaluated "
            "(see training.evaluation.every), so there is no ROC curve for this version"
        )
        return report
    benign, malware = hists
    value = histogram_threshold(benign, target_fpr) if target_fpr > 0 else None
    report.threshold = float(value) if value is not None else stored_value
    report.roc.extend(
        dashboard_pb2.RocPoint(fpr=f, tpr=t, threshold=th)
        for f, t, th in roc_points(benign, malware)
    )
    tp, fp, tn, fn = confusion(benign, malware, report.threshold)
    report.confusion.CopyFrom(
        dashboard_pb2.ConfusionMatrix(
            true_positives=tp, false_positives=fp, true_negatives=tn, false_negatives=fn
        )
    )
    evaluation = meta.get("evaluation") if isinstance(meta.get("evaluation"), dict) else {}
    source = str(evaluation.get("source") or "evaluation data")
    n = int(benign.sum() + malware.sum())
    report.evaluated_on = f"{source} ({n} files: {int(malware.sum())} malware)"
    return report


def roc_points(
    benign: np.ndarray, malware: np.ndarray, max_points: int = MAX_ROC_POINTS
) -> list[tuple[float, float, float]]:
    """(fpr, tpr, threshold) at every bin edge where the curve moves, from threshold 1 (nothing
    flagged) down to 0 (everything), thinned evenly along the curve to ``max_points``. A class
    without files gives rates of 0 for it."""
    b = np.asarray(benign, dtype=np.float64)
    m = np.asarray(malware, dtype=np.float64)
    nb, nm = b.sum(), m.sum()
    # edge k (threshold k / BINS) flags the bins k..BINS-1; from k = BINS down to 0
    fp = np.concatenate([[0.0], np.cumsum(b[::-1])])
    tp = np.concatenate([[0.0], np.cumsum(m[::-1])])
    edges = np.arange(BINS, -1, -1, dtype=np.float64) / BINS
    fpr = fp / nb if nb else np.zeros_like(fp)
    tpr = tp / nm if nm else np.zeros_like(tp)
    # keep the first edge and each edge whose bin holds files (the curve moves there)
    moved = np.concatenate([[True], (b[::-1] + m[::-1]) > 0])
    idx = np.flatnonzero(moved)
    if idx.size > max_points:
        # evenly along the curve's length (fpr + tpr grows monotonically from 0 to <= 2)
        s = fpr[idx] + tpr[idx]
        targets = np.linspace(s[0], s[-1], max_points - 1)
        picked = np.searchsorted(s, targets, side="left")
        idx = idx[np.unique(np.concatenate([picked, [idx.size - 1]]))]
    return [(float(fpr[i]), float(tpr[i]), float(edges[i])) for i in idx]


def confusion(benign: np.ndarray, malware: np.ndarray, threshold: float) -> tuple[int, ...]:
    """(tp, fp, tn, fn) when files scoring at or above ``threshold`` are flagged, read at the
    nearest bin edge (histograms hold scores to 1 / BINS)."""
    cut = int(np.clip(round(threshold * BINS), 0, BINS))
    b = np.asarray(benign, dtype=np.int64)
    m = np.asarray(malware, dtype=np.int64)
    return int(m[cut:].sum()), int(b[cut:].sum()), int(b[:cut].sum()), int(m[:cut].sum())


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and math.isfinite(v)


def _number(v: Any, default: float) -> float:
    return float(v) if _finite(v) else default
