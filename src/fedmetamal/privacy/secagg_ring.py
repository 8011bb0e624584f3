"""Fixed-point encoding of clipped float updates into Z_{2^32} for secure aggregation.

Masks cancel only in modular arithmetic, so updates are clipped to [-c, c] and mapped to
integers q in [0, 2^bits - 1]. The offset makes every q non-negative; requiring
n * 2^bits < 2^32 guarantees the true sum of n encodings never wraps mod 2^32.

Error bound: each coordinate is rounded to the nearest of 2^bits - 1 equal steps of width
delta = 2c / (2^bits - 1), so one client's error is at most delta / 2 and the decoded sum of
n clients is within n * delta / 2 = n * c / (2^bits - 1) of the sum of the *clipped* floats
(plus negligible float64 rounding).
"""

from __future__ import annotations

import numpy as np

RING_BITS = 32


def check_capacity(n_clients: int, bits: int) -> None:
    """Refuse parameter choices whose sum could wrap modulo 2^32."""
    if not 1 <= bits <= 31:
        raise ValueError(f"bits must be in [1, 31], got {bits}")
    if n_clients < 1:
        raise ValueError("need at least one client")
    if n_clients * 2**bits >= 2**RING_BITS:
        raise ValueError(
            f"n * 2^bits = {n_clients} * 2^{bits} >= 2^32: the aggregate could wrap; "
            "lower bits or the cohort size"
        )


def _step(clip: float, bits: int) -> float:
    if not clip > 0:
        raise ValueError("clip must be positive")
    return 2.0 * clip / (2**bits - 1)


def quantise(x: np.ndarray, clip: float, bits: int = 16) -> np.ndarray:
    """Clip to [-clip, clip] and round to uint32 levels in [0, 2^bits - 1]."""
    xf = np.clip(np.asarray(x, dtype=np.float64), -clip, clip)
    q = np.rint((xf + clip) / _step(clip, bits))
    return np.clip(q, 0, 2**bits - 1).astype(np.uint32)


def dequantise_sum(s: np.ndarray, n_clients: int, clip: float, bits: int = 16) -> np.ndarray:
    """Decode the (non-wrapped) sum of ``n_clients`` encodings back to a float sum."""
    check_capacity(n_clients, bits)
    return np.asarray(s, dtype=np.float64) * _step(clip, bits) - n_clients * clip


def sum_error_bound(n_clients: int, clip: float, bits: int = 16) -> float:
    """Per-coordinate max |decoded sum - sum of clipped floats| = n * clip / (2^bits - 1)."""
    return n_clients * _step(clip, bits) / 2.0
