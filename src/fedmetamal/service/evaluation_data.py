"""The evaluation data a model version keeps: pooled score histograms in its checkpoint.

Both engines store, for every evaluated round, how many benign and how many malware test files
fell in each of :data:`~fedmetamal.fl.histogram_metrics.BINS` score bins (extra tensors
``eval.hist_benign`` / ``eval.hist_malware``) and what data that was (metadata ``evaluation``).
Counts, not scores: a network run only ever sees its participants' histograms, and from them
the model report draws the ROC curve and the confusion matrix at any threshold later.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from fedmetamal.fl.histogram_metrics import BINS

HIST_BENIGN = "eval.hist_benign"
HIST_MALWARE = "eval.hist_malware"

#: What the histograms were computed on (``evaluation.source`` in the checkpoint's metadata).
GLOBAL_TEST_SET = "global test set"
SERVER_TEST_SET = "server test set"
LOCAL_SPLITS = "participants' local test splits"


def eval_tensors(benign: np.ndarray, malware: np.ndarray) -> dict[str, torch.Tensor]:
    """The checkpoint's extra tensors for a round's histograms (int64, BINS each)."""
    out = {}
    for key, hist in ((HIST_BENIGN, benign), (HIST_MALWARE, malware)):
        arr = np.ascontiguousarray(hist, dtype=np.int64)
        if arr.shape != (BINS,):
            raise ValueError(f"{key} must have shape ({BINS},), not {arr.shape}")
        out[key] = torch.from_numpy(arr.copy())
    return out


def eval_metadata(benign: np.ndarray, malware: np.ndarray, source: str) -> dict[str, Any]:
    """The checkpoint's ``evaluation`` metadata: the data's name and its class counts."""
    return {"source": source, "benign": int(np.sum(benign)), "malware": int(np.sum(malware))}


def read_eval(extra: dict[str, torch.Tensor]) -> tuple[np.ndarray, np.ndarray] | None:
    """The histograms among a loaded checkpoint's extra tensors; None when the round was not
    evaluated (or the file predates them, or they are malformed)."""
    b, m = extra.get(HIST_BENIGN), extra.get(HIST_MALWARE)
    if b is None or m is None or tuple(b.shape) != (BINS,) or tuple(m.shape) != (BINS,):
        return None
    bn, mn = b.numpy().astype(np.int64), m.numpy().astype(np.int64)
    if (bn < 0).any() or (mn < 0).any():
        return None
    return bn, mn
