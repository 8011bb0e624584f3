"""Choosing the decision threshold at a target false-positive rate.

A detector's score is only useful with a cut-off, and the cost of a false alarm on a clean
file is what users notice first, so the cut-off is the lowest score at which at most
``target_fpr`` of held-out benign files would be flagged. Numpy only: the training runtime
calls it, and the scanner reads its result back from the model's metadata.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

#: The share of benign files a stored threshold may flag (on the data it was chosen on).
TARGET_FPR = 0.01
#: Used when a model carries no threshold, or no held-out benign data was there to choose one.
DEFAULT_THRESHOLD = 0.5


def choose_threshold(
    benign: np.ndarray, malware: np.ndarray, target_fpr: float = TARGET_FPR, source: str = ""
) -> dict[str, Any]:
    """The smallest threshold flagging at most ``target_fpr`` of ``benign`` scores.

    A file is malware when ``score >= value``. Returns ``value`` and how it was chosen: the
    target, ``source``, the counts, and the false- and true-positive rates it gets on these
    scores. Without benign scores it falls back to :data:`DEFAULT_THRESHOLD` and says so.
    """
    if not 0.0 <= target_fpr < 1.0:
        raise ValueError(f"target_fpr must lie in [0, 1), got {target_fpr}")
    benign = np.sort(np.asarray(benign, dtype=np.float32))[::-1]
    malware = np.asarray(malware, dtype=np.float32)
    info: dict[str, Any] = {
        "target_fpr": target_fpr,
        "source": source,
        "benign": int(benign.size),
        "malware": int(malware.size),
    }
    if benign.size == 0:
        value = DEFAULT_THRESHOLD
        info["method"] = "default: no held-out benign samples"
    else:
        allowed = math.floor(target_fpr * benign.size + 1e-9)
        if allowed >= benign.size:
            value = 0.0
        else:  # just above the (allowed + 1)-th highest benign score
            value = float(np.nextafter(benign[allowed], np.float32(np.inf)))
        value = min(value, 1.0)
        info["method"] = "target false-positive rate on held-out benign samples"
    info["value"] = value
    info["fpr"] = float(np.mean(benign >= value)) if benign.size else None
    info["tpr"] = float(np.mean(malware >= value)) if malware.size else None
    return info
