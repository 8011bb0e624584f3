"""Byte histogram: the share of each byte value 0..255 in the whole file."""

from __future__ import annotations

import numpy as np


def byte_histogram_features(counts: np.ndarray) -> np.ndarray:
    """The 256 normalised counts, divided in float32 as the reference does."""
    as_float = counts.astype(np.float32)
    return as_float / as_float.sum()
