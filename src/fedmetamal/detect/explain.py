"""Which features pushed a file's score up or down, from the model's own gradient.

Both methods use the ``logit_gradient`` output of the exported graph (the analytic derivative of
the logit with respect to the raw features), so they need onnxruntime only:

* ``grad-input``: gradient x input, ``x_i * d logit / d x_i`` at the file itself. Cheap (no
  extra model run), but it measures against an all-zero file, so header fields that are the same
  in every PE file (``e_magic``, ``Magic``) can rank high.
* ``ig`` (integrated gradients, Sundararajan et al. 2017) in the model's standardised space:
  ``z_i`` times d logit / dz_i averaged along the straight line from z = 0 (the training mean)
  to the file's z. The attributions add up to ``logit(x) - logit(baseline)`` up to the
  quadrature error, and a field at its usual value (z_i = 0) gets no credit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from fedmetamal.detect.model import Detector
from fedmetamal.detect.standardizer import Standardizer

Method = Literal["ig", "grad-input"]
METHODS: tuple[str, ...] = ("ig", "grad-input")
#: Midpoint-rule steps for integrated gradients: enough for the small MLPs trained here.
IG_STEPS = 16
#: Rows (files x steps) per onnxruntime call, bounding memory for wide schemas.
_ROWS_PER_RUN = 8192


@dataclass(frozen=True)
class Contribution:
    """One feature's signed share of a file's logit (positive: towards malware)."""

    feature: str
    value: float
    contribution: float


def grad_input(X: np.ndarray, gradient: np.ndarray) -> np.ndarray:
    """Gradient x input (N, d) from the inputs and the logit gradient at them."""
    return X.astype(np.float64) * gradient.astype(np.float64)


def integrated_gradients(
    detector: Detector, X: np.ndarray, standardizer: Standardizer, steps: int = IG_STEPS
) -> np.ndarray:
    """Integrated gradients (N, d) of the logit from the training mean (z = 0) to each row.

    The path is the straight line ``alpha * z`` in the model's standardised space; at each
    midpoint the exported raw gradient is turned into d logit / dz, and feature i gets
    ``z_i * mean(d logit / dz_i)``. The attributions add up to ``logit(x) - logit(baseline)``.
    """
    n, d = X.shape
    Z = standardizer.to_z(X)
    alphas = (np.arange(steps) + 0.5) / steps
    total = np.zeros((n, d), np.float64)
    per_run = max(1, _ROWS_PER_RUN // steps)
    for start in range(0, n, per_run):
        block = Z[start : start + per_run]
        points = standardizer.from_z(alphas[None, :, None] * block[:, None, :]).reshape(-1, d)
        points = np.ascontiguousarray(points, dtype=np.float32)
        grad = detector.run(points).gradient
        assert grad is not None
        grad_z = grad.astype(np.float64) * standardizer.dx_dz(points)
        total[start : start + block.shape[0]] = block * grad_z.reshape(-1, steps, d).mean(axis=1)
    return total


def top_contributions(
    contributions: np.ndarray, X: np.ndarray, names: list[str], k: int
) -> list[list[Contribution]]:
    """The ``k`` largest contributions by magnitude for each row, largest first."""
    if k <= 0:
        return [[] for _ in range(contributions.shape[0])]
    k = min(k, contributions.shape[1])
    order = np.argsort(-np.abs(contributions), axis=1, kind="stable")[:, :k]
    return [
        [Contribution(names[j], float(X[i, j]), float(contributions[i, j])) for j in row]
        for i, row in enumerate(order)
    ]
