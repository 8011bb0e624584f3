"""Byte-entropy histogram (Saxe and Berlin, 2015): joint distribution of byte and local entropy.

A 2048-byte window slides in 1024-byte steps; each window's entropy over the 16 high nibbles
picks one of 16 rows, and the window's 16 nibble counts are added to that row. Because the step
is half the window, each window is two adjacent 1 KiB chunks: we count nibbles per chunk once,
over the file in slabs (bounded memory for any file size), and add neighbouring chunks.

The reference computes each window's entropy in float32 with ``numpy.sum`` over the non-zero
terms only, whose pairwise summation groups terms differently for fewer than 8, 8 to 15, and
16 terms. The row index truncates ``2 * H``, so a last-bit difference can move a window across a
row boundary; we reproduce that summation order exactly rather than accept such flips.
"""

from __future__ import annotations

import numpy as np

from fedmetamal.features.ember.entropy import Searchable

WINDOW = 2048
STEP = 1024
#: Chunks counted per slab: 1 MiB of file at a time (bincount widens it 8 times).
_SLAB_CHUNKS = 1024


def _term_table() -> np.ndarray:
    """``-p log2 p`` in float32 for every possible nibble count 0..WINDOW (0 for count 0)."""
    counts = np.arange(WINDOW + 1, dtype=np.float32)
    p = counts / np.float32(WINDOW)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = -p * np.log2(p)
    terms[0] = 0
    return terms.astype(np.float32)


_TERMS = _term_table()


def _window_rows(counts: np.ndarray) -> np.ndarray:
    """Entropy row (0..15) of each window, given its (n, 16) nibble counts."""
    present = counts > 0
    k = present.sum(axis=1)
    # Non-zero terms first, in nibble order, zeros after: the reference's compacted array.
    order = np.argsort(~present, axis=1, kind="stable")
    terms = np.take_along_axis(_TERMS[counts], order, axis=1)
    sequential = np.zeros(len(counts), dtype=np.float32)
    for j in range(16):  # fewer than 8 terms: a plain left-to-right sum (zeros add nothing)
        sequential = sequential + terms[:, j]
    r = terms[:, :8].copy()
    full = k == 16
    r[full] += terms[full, 8:16]
    low = (r[:, 0] + r[:, 1]) + (r[:, 2] + r[:, 3])
    blocked = low + ((r[:, 4] + r[:, 5]) + (r[:, 6] + r[:, 7]))
    for j in range(8, 16):  # 8..15 terms: eight accumulators, then the rest one by one
        blocked = np.where(full, blocked, blocked + terms[:, j])
    total = np.where(k < 8, sequential, blocked).astype(np.float32)
    entropy = total * np.float32(2)
    rows = (entropy * np.float32(2)).astype(np.int64)
    return np.minimum(rows, 15)


def _chunk_nibbles(data: Searchable, first_chunk: int, n_chunks: int) -> np.ndarray:
    """(n_chunks, 16) counts of high nibbles in consecutive 1 KiB chunks (no file copy)."""
    offset = first_chunk * STEP
    view = np.frombuffer(data, dtype=np.uint8, count=n_chunks * STEP, offset=offset)  # type: ignore[call-overload]
    nibbles = (view >> 4).reshape(n_chunks, STEP)
    index = nibbles.astype(np.int32) + np.arange(0, n_chunks * 16, 16, dtype=np.int32)[:, None]
    return np.bincount(index.ravel(), minlength=n_chunks * 16).reshape(n_chunks, 16)


def byte_entropy_features(data: Searchable) -> np.ndarray:
    """The 256 normalised cells (16 entropy rows x 16 nibble columns) in float32."""
    size = len(data)
    output = np.zeros((16, 16), dtype=np.int64)
    if size < WINDOW:
        view = np.frombuffer(data, dtype=np.uint8, count=size)  # type: ignore[call-overload]
        counts = np.bincount(view >> 4, minlength=16)[None, :]
        output[_window_rows(counts)[0]] += counts[0]
    else:
        n_windows = (size - WINDOW) // STEP + 1
        n_chunks = n_windows + 1
        start = 0
        carry: np.ndarray | None = None
        while start < n_chunks:
            take = min(_SLAB_CHUNKS, n_chunks - start)
            chunks = _chunk_nibbles(data, start, take)
            if carry is not None:
                chunks = np.vstack([carry, chunks])
            windows = chunks[:-1] + chunks[1:]
            rows = _window_rows(windows)
            np.add.at(output, rows, windows)
            carry = chunks[-1:]
            start += take
    cells = output.reshape(-1).astype(np.float32)
    return cells / cells.sum()
