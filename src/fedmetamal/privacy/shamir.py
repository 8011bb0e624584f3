"""Shamir t-of-n secret sharing over Mersenne prime fields.

Used by secure aggregation so that any t survivors can rebuild a dropped client's mask
key (or a survivor's self-mask seed) while t - 1 colluders learn nothing.

Two interchangeable encodings (Shamir's secrecy holds in any field with more elements
than parties):

* ``share_ints`` / ``share_bytes``: p = 2**127 - 1, Python ints, byte secrets split into
  15-byte chunks, each shared with the same x. General purpose.
* ``share_bytes_batch`` / ``reconstruct_bytes_batch``: p = 2**31 - 1 with numpy uint64
  arithmetic, secrets split into 3-byte chunks and every chunk of every secret shared in
  one vectorised Horner pass. Secure aggregation shares 2 secrets to up to n points per
  client per round, so this is ~5x faster than the big-int path at n = 200.

Lagrange coefficients at 0 are cached per (point set, prime): with few dropouts most
owners are rebuilt from the same lowest-t points, so they are computed once per round.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from operator import mul

import numpy as np

PRIME = 2**127 - 1
CHUNK_BYTES = 15  # 120-bit chunks are always < PRIME
_FIELD_BYTES = 16  # fixed width used when a field element is serialised

SMALL_PRIME = 2**31 - 1
SMALL_CHUNK_BYTES = 3  # 24-bit chunks are always < SMALL_PRIME
_P64 = np.uint64(SMALL_PRIME)


@dataclass(frozen=True)
class Share:
    """One party's share: evaluation point x and one y per secret chunk."""

    x: int
    ys: tuple[int, ...]


@lru_cache(maxsize=1024)
def _power_rows(xs: tuple[int, ...], degree: int) -> tuple[tuple[int, ...], ...]:
    """Row i holds x_i^0 .. x_i^degree mod p (shared by every secret over the same xs)."""
    rows = []
    for x in xs:
        row = [1]
        for _ in range(degree):
            row.append(row[-1] * x % PRIME)
        rows.append(tuple(row))
    return tuple(rows)


def share_ints(
    secrets: Sequence[int],
    threshold: int,
    xs: Sequence[int],
    randbytes: Callable[[int], bytes] = os.urandom,
) -> list[Share]:
    """Share field elements so that any ``threshold`` of the points in ``xs`` rebuild them."""
    if threshold < 1 or threshold > len(xs):
        raise ValueError(f"need 1 <= threshold <= n, got t={threshold}, n={len(xs)}")
    if len(set(xs)) != len(xs) or any(not 0 < x < PRIME for x in xs):
        raise ValueError("evaluation points must be distinct and in (0, p)")
    if any(not 0 <= s < PRIME for s in secrets):
        raise ValueError("secrets must lie in [0, p)")
    deg = threshold - 1
    # One randomness call for all coefficients; 256 random bits mod a 127-bit prime has
    # bias < 2**-128.
    raw = randbytes(32 * deg * len(secrets)) if deg else b""
    polys = []
    for i, s in enumerate(secrets):
        base = 32 * deg * i
        coeffs = [s] + [
            int.from_bytes(raw[base + 32 * j : base + 32 * j + 32], "big") % PRIME
            for j in range(deg)
        ]
        polys.append(coeffs)
    rows = _power_rows(tuple(xs), deg)
    return [
        Share(x=x, ys=tuple(sum(map(mul, c, row)) % PRIME for c in polys))
        for x, row in zip(xs, rows, strict=True)
    ]


@lru_cache(maxsize=4096)
def lagrange_at_zero(xs: tuple[int, ...], prime: int = PRIME) -> tuple[int, ...]:
    """Coefficients l_i with f(0) = sum_i l_i f(x_i) for deg f < len(xs); cached per point set."""
    if len(set(xs)) != len(xs) or any(not 0 < x < prime for x in xs):
        raise ValueError("share points must be distinct and in (0, p)")
    out = []
    for i, xi in enumerate(xs):
        num, den = 1, 1
        for j, xj in enumerate(xs):
            if j != i:
                num = num * (-xj) % prime
                den = den * (xi - xj) % prime
        out.append(num * pow(den, -1, prime) % prime)
    return tuple(out)


def reconstruct_ints(shares: Sequence[Share]) -> tuple[int, ...]:
    """Lagrange-interpolate at 0; with fewer than t shares the result is meaningless."""
    if not shares:
        raise ValueError("no shares")
    xs = tuple(s.x for s in shares)
    if len(set(xs)) != len(xs):
        raise ValueError("duplicate share points")
    width = len(shares[0].ys)
    if any(len(s.ys) != width for s in shares):
        raise ValueError("shares have different widths")
    lam = lagrange_at_zero(xs)
    return tuple(sum(map(mul, lam, (s.ys[k] for s in shares))) % PRIME for k in range(width))


def bytes_to_chunks(secret: bytes) -> list[int]:
    """Split bytes into 15-byte big-endian field elements (last chunk may be short)."""
    return [
        int.from_bytes(secret[i : i + CHUNK_BYTES], "big")
        for i in range(0, len(secret), CHUNK_BYTES)
    ]


def chunks_to_bytes(chunks: Sequence[int], length: int) -> bytes:
    """Inverse of :func:`bytes_to_chunks`; raises if a chunk does not fit (bad shares)."""
    out = b""
    for i, c in enumerate(chunks):
        width = min(CHUNK_BYTES, length - i * CHUNK_BYTES)
        if width <= 0:
            raise ValueError("too many chunks for the declared length")
        out += c.to_bytes(width, "big")  # OverflowError on garbage reconstruction
    if len(out) != length:
        raise ValueError("chunk count does not match length")
    return out


def share_bytes(
    secret: bytes,
    threshold: int,
    xs: Sequence[int],
    randbytes: Callable[[int], bytes] = os.urandom,
) -> list[Share]:
    """Share an arbitrary byte string chunk-wise."""
    return share_ints(bytes_to_chunks(secret), threshold, xs, randbytes)


def reconstruct_bytes(shares: Sequence[Share], length: int) -> bytes:
    """Rebuild a byte secret of known ``length`` from at least t shares."""
    return chunks_to_bytes(reconstruct_ints(shares), length)


def field_to_bytes(v: int) -> bytes:
    """Fixed 16-byte encoding of a field element, for wire formats."""
    return v.to_bytes(_FIELD_BYTES, "big")


def field_from_bytes(b: bytes) -> int:
    """Decode a 16-byte field element, rejecting values outside [0, p)."""
    if len(b) != _FIELD_BYTES:
        raise ValueError("field element must be 16 bytes")
    v = int.from_bytes(b, "big")
    if v >= PRIME:
        raise ValueError("field element out of range")
    return v


# --------------------------------------------------------------------------- batched, p = 2^31 - 1


def batch_chunks(length: int) -> int:
    """Number of 3-byte field elements a ``length``-byte secret takes in the batch encoding."""
    return -(-length // SMALL_CHUNK_BYTES)


def _uniform_small(randbytes: Callable[[int], bytes], count: int) -> np.ndarray:
    """``count`` exactly uniform elements of [0, 2^31 - 1) (31-bit draws, p itself rejected)."""
    out = np.frombuffer(randbytes(4 * count), dtype="<u4") & np.uint32(0x7FFFFFFF)
    out = out.astype(np.uint64)
    bad = np.flatnonzero(out == _P64)
    while bad.size:
        fresh = np.frombuffer(randbytes(4 * bad.size), dtype="<u4") & np.uint32(0x7FFFFFFF)
        out[bad] = fresh
        bad = bad[fresh == SMALL_PRIME]
    return out


def share_bytes_batch(
    secrets: Sequence[bytes],
    threshold: int,
    xs: Sequence[int],
    randbytes: Callable[[int], bytes] = os.urandom,
) -> np.ndarray:
    """Share several byte secrets at once over p = 2^31 - 1.

    Returns a (len(xs), sum of batch_chunks(len(s))) uint32 array whose row i is the
    share held by point ``xs[i]`` of every chunk of every secret, in order.
    """
    if threshold < 1 or threshold > len(xs):
        raise ValueError(f"need 1 <= threshold <= n, got t={threshold}, n={len(xs)}")
    if len(set(xs)) != len(xs) or any(not 0 < x < SMALL_PRIME for x in xs):
        raise ValueError("evaluation points must be distinct and in (0, 2^31 - 1)")
    chunks = [
        int.from_bytes(sec[i : i + SMALL_CHUNK_BYTES], "big")
        for sec in secrets
        for i in range(0, len(sec), SMALL_CHUNK_BYTES)
    ]
    width = len(chunks)
    coeffs = _uniform_small(randbytes, (threshold - 1) * width).reshape(threshold - 1, width)
    x = np.asarray(xs, dtype=np.uint64)[:, None]
    acc = np.zeros((len(xs), width), dtype=np.uint64)
    for row in coeffs[::-1]:  # Horner; acc, x < 2^31 so acc * x + c < 2^63
        acc *= x
        acc += row
        acc %= _P64
    acc *= x
    acc += np.asarray(chunks, dtype=np.uint64)
    acc %= _P64
    return acc.astype(np.uint32)


def reconstruct_bytes_batch(
    xs: Sequence[int], ys: np.ndarray, lengths: Sequence[int]
) -> list[bytes]:
    """Inverse of :func:`share_bytes_batch` from the rows ``ys`` held by points ``xs``.

    Needs at least t rows; raises ValueError when the result cannot be an encoding of
    secrets of these lengths (too few or corrupted shares).
    """
    ys = np.asarray(ys)
    width = sum(batch_chunks(n) for n in lengths)
    if ys.shape != (len(xs), width):
        raise ValueError(f"share matrix must have shape ({len(xs)}, {width})")
    if ys.size and int(ys.max()) >= SMALL_PRIME:
        raise ValueError("field element out of range")
    lam = np.asarray(lagrange_at_zero(tuple(xs), SMALL_PRIME), dtype=np.uint64)
    vals = ((lam[:, None] * ys.astype(np.uint64)) % _P64).sum(axis=0) % _P64
    out, pos = [], 0
    for n in lengths:
        sec = b""
        for i in range(batch_chunks(n)):
            w = min(SMALL_CHUNK_BYTES, n - i * SMALL_CHUNK_BYTES)
            try:
                sec += int(vals[pos]).to_bytes(w, "big")
            except OverflowError as exc:
                raise ValueError("shares do not decode to a secret of this length") from exc
            pos += 1
        out.append(sec)
    return out
