"""The hashing trick exactly as EMBER2024 applies it (scikit-learn's ``FeatureHasher``).

Names are hashed with signed 32-bit MurmurHash3 (seed 0) of their UTF-8 bytes; the bucket is
``|h| mod n`` and, with alternating signs, the value is negated when ``h < 0``. Values landing in
one bucket are added in input order in float64. scikit-learn sums duplicates after sorting the
entries, which keeps input order for fewer than 16 entries (bit-identical results) and may
reorder ties beyond that (a float64 rounding difference, invisible after the float32 cast in
all but rare cases; only non-integer values such as section entropies are affected). Calling
the hash directly skips FeatureHasher's sparse matrix machinery, which costs far more than
the hashing for the handful of names a file has.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from sklearn.utils import murmurhash3_32

_INT32_MIN = -(2**31)


def _bucket(name: str, width: int) -> tuple[int, int]:
    h = murmurhash3_32(name.encode("utf-8"), seed=0, positive=False)
    if h == _INT32_MIN:  # |h| does not fit in int32; scikit-learn defines the bucket this way
        return (2**31 - 1 - (width - 1)) % width, -1
    return abs(h) % width, 1 if h >= 0 else -1


def hash_pairs(
    pairs: Iterable[tuple[str, float]], width: int, alternate_sign: bool = True
) -> np.ndarray:
    """``width`` buckets of the summed (signed) values of ``(name, value)`` pairs."""
    out = [0.0] * width
    for name, value in pairs:
        if value == 0:
            continue
        index, sign = _bucket(name, width)
        out[index] += value * sign if alternate_sign else value
    return np.asarray(out, dtype=np.float64)


def hash_names(names: Iterable[str], width: int, alternate_sign: bool = True) -> np.ndarray:
    """``width`` buckets counting ``names`` (each weighs 1, signed when alternating)."""
    return hash_pairs(((n, 1) for n in names), width, alternate_sign)
