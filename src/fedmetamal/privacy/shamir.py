"""Shamir t-of-n secret sharing over the Mersenne prime field p = 2**127 - 1.

Used by secure aggregation so that any t survivors can rebuild a dropped client's mask
key (or a survivor's self-mask seed) while t - 1 colluders learn nothing. Byte secrets
longer than the field are split into 15-byte chunks, each shared with the same x.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

PRIME = 2**127 - 1
CHUNK_BYTES = 15  # 120-bit chunks are always < PRIME
_FIELD_BYTES = 16  # fixed width used when a field element is serialised


@dataclass(frozen=True)
class Share:
    """One party's share: evaluation point x and one y per secret chunk."""

    x: int
    ys: tuple[int, ...]


def _rand_field(randbytes: Callable[[int], bytes]) -> int:
    # 256 random bits reduced mod a 127-bit prime: bias < 2**-128.
    return int.from_bytes(randbytes(32), "big") % PRIME


def _eval_poly(coeffs: Sequence[int], x: int) -> int:
    acc = 0
    for c in reversed(coeffs):
        acc = (acc * x + c) % PRIME
    return acc


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
    polys = [[s] + [_rand_field(randbytes) for _ in range(threshold - 1)] for s in secrets]
    return [Share(x=x, ys=tuple(_eval_poly(p, x) for p in polys)) for x in xs]


def reconstruct_ints(shares: Sequence[Share]) -> tuple[int, ...]:
    """Lagrange-interpolate at 0; with fewer than t shares the result is meaningless."""
    if not shares:
        raise ValueError("no shares")
    xs = [s.x for s in shares]
    if len(set(xs)) != len(xs):
        raise ValueError("duplicate share points")
    width = len(shares[0].ys)
    if any(len(s.ys) != width for s in shares):
        raise ValueError("shares have different widths")
    out = [0] * width
    for i, si in enumerate(shares):
        num, den = 1, 1
        for j, xj in enumerate(xs):
            if j != i:
                num = num * (-xj) % PRIME
                den = den * (si.x - xj) % PRIME
        lam = num * pow(den, -1, PRIME) % PRIME
        for k in range(width):
            out[k] = (out[k] + lam * si.ys[k]) % PRIME
    return tuple(out)


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
