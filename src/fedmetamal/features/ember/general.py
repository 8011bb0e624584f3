"""General file information: size, whole-file entropy, whether pefile parsed it, first 4 bytes."""

from __future__ import annotations

import numpy as np

from fedmetamal.features.ember.entropy import Searchable, shannon_entropy


def general_features(data: Searchable, counts: np.ndarray, is_pe: bool) -> np.ndarray:
    """The 7 general columns; ``counts`` is the whole-file byte histogram (already computed)."""
    size = len(data)
    head = bytes(data[:4])  # type: ignore[index]
    start = [head[i] if i < len(head) else 0 for i in range(4)]
    entropy = shannon_entropy(data, counts)
    return np.array([size, entropy, int(is_pe), *start], dtype=np.float32)
