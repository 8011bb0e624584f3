"""Rich header: the number of (tool id, count) pairs, and the pairs hashed into 32 buckets."""

from __future__ import annotations

import numpy as np
import pefile

from fedmetamal.features.ember.hashing import hash_pairs

WIDTH = 1 + 32


def rich_header_features(pe: pefile.PE) -> np.ndarray:
    """The 33 rich-header columns (all 0 when there is no rich header)."""
    rich = getattr(pe, "RICH_HEADER", None)
    values = list(getattr(rich, "values", None) or ())
    if not values:
        return np.zeros(WIDTH, dtype=np.float32)
    pairs = [(str(values[i]), values[i + 1]) for i in range(0, len(values) - 1, 2)]
    return np.hstack([[len(values) // 2], hash_pairs(pairs, 32)]).astype(np.float32)
