"""The exported model's preprocessing in numpy, both ways, for integrated gradients.

The model sees ``z = (where(log_mask, sign(x) log1p|x|, x) - mean) / std``. Integrated gradients
walk a straight line in z (where the network is smooth) rather than in raw x, where a log
feature changes by orders of magnitude near zero and a fixed number of steps would miss it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Standardizer:
    """``log_mask`` (bool), ``mean`` and ``std`` (float64), one entry per model input."""

    log_mask: np.ndarray
    mean: np.ndarray
    std: np.ndarray

    def to_z(self, X: np.ndarray) -> np.ndarray:
        """Raw features (N, d) -> the model's standardised inputs."""
        X = np.asarray(X, dtype=np.float64)
        logged = np.sign(X) * np.log1p(np.abs(X))
        return (np.where(self.log_mask, logged, X) - self.mean) / self.std

    def from_z(self, Z: np.ndarray) -> np.ndarray:
        """The raw features that map to ``Z`` (the inverse of :meth:`to_z`)."""
        u = np.asarray(Z, dtype=np.float64) * self.std + self.mean
        out = u.copy()
        logged = np.broadcast_to(self.log_mask, u.shape)  # only those columns are exponentiated
        out[logged] = np.sign(u[logged]) * np.expm1(np.abs(u[logged]))
        return out

    def dx_dz(self, X: np.ndarray) -> np.ndarray:
        """How fast raw x moves per unit of z at X: turns d logit/dx into d logit/dz."""
        X = np.asarray(X, dtype=np.float64)
        return np.where(self.log_mask, 1.0 + np.abs(X), 1.0) * self.std
