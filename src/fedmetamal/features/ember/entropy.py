"""Shannon entropy of a byte range, computed so it equals pefile's ``entropy_H`` bit for bit.

pefile (and the EMBER2024 reference, which copies it) sums ``-p log2 p`` over byte values in
the order each value first occurs in the data (a ``Counter``'s order). Floating-point addition
is not associative, so we use the same order: counts come from one ``numpy.bincount`` over a
zero-copy view, and each present value's first position from ``find`` (a ``memchr`` that stops
at the first hit), which never copies the data.
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np

_SLAB = 1 << 20


class Searchable(Protocol):
    """A byte buffer with ``find`` (``bytes`` and ``mmap`` both qualify)."""

    def find(self, sub: bytes, start: int = ..., end: int = ...) -> int: ...

    def __len__(self) -> int: ...


def byte_counts(data: Searchable, start: int = 0, end: int | None = None) -> np.ndarray:
    """Occurrences of each byte value 0..255 in ``data[start:end]`` (int64, no copy)."""
    stop = len(data) if end is None else min(end, len(data))
    if stop <= start:
        return np.zeros(256, dtype=np.int64)
    view = np.frombuffer(data, dtype=np.uint8, count=stop - start, offset=start)  # type: ignore[call-overload]
    counts = np.zeros(256, dtype=np.int64)
    # bincount widens its input to int64: count in slabs so that stays 8 x 1 MiB, not 8 x file.
    for begin in range(0, len(view), _SLAB):
        counts += np.bincount(view[begin : begin + _SLAB], minlength=256)
    return counts


def shannon_entropy(
    data: Searchable, counts: np.ndarray, start: int = 0, end: int | None = None
) -> float:
    """Entropy in bits per byte of ``data[start:end]`` whose byte ``counts`` are given."""
    stop = len(data) if end is None else min(end, len(data))
    size = stop - start
    if size <= 0:
        return 0.0
    present = np.flatnonzero(counts)
    first = sorted((data.find(bytes((int(v),)), start, stop), int(v)) for v in present)
    entropy = 0.0
    for _, value in first:
        p_x = float(counts[value]) / size
        entropy -= p_x * math.log(p_x, 2)
    return entropy
