"""Flat parameter vectors: the one representation algorithms, runtimes and the wire share.

A model's parameters live in one float32 vector of length P. Algorithms do their math on that
vector (or on a stack of them, one row per client), and the model reads named views of it.
This keeps aggregation, clipping, noise and masking trivially the same code for one client or
a hundred stacked clients.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ParamSpec:
    """Names and shapes of a model's parameters, in their order inside the flat vector."""

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(math.prod(s) for s in self.shapes)

    @property
    def size(self) -> int:
        return sum(self.sizes)

    def offsets(self) -> list[tuple[int, int]]:
        out, start = [], 0
        for n in self.sizes:
            out.append((start, start + n))
            start += n
        return out

    def unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named views of ``flat`` of shape (..., P): each becomes (..., *shape)."""
        lead = flat.shape[:-1]
        if flat.shape[-1] != self.size:
            raise ValueError(f"flat vector has {flat.shape[-1]} entries, expected {self.size}")
        return {
            name: flat[..., a:b].reshape(*lead, *shape)
            for name, shape, (a, b) in zip(self.names, self.shapes, self.offsets(), strict=True)
        }

    def flatten(self, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
        missing = set(self.names) - set(tensors)
        if missing:
            raise ValueError(f"missing parameters: {sorted(missing)}")
        return torch.cat([tensors[n].reshape(-1).float() for n in self.names])
