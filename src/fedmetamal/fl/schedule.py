"""Per-round choices every runtime makes the same way: client learning rate and client sampling."""

from __future__ import annotations

import math

import numpy as np
import torch

from fedmetamal.config import TrainingConfig


def client_lr(cfg: TrainingConfig, round_index: int) -> float:
    """Client learning rate in round ``round_index`` (0-based) under the configured schedule."""
    base = cfg.client_lr
    if cfg.lr_schedule == "constant":
        return base
    if cfg.lr_schedule == "cosine":
        return base * 0.5 * (1 + math.cos(math.pi * round_index / max(cfg.rounds, 1)))
    if cfg.lr_schedule == "step":
        return base * cfg.lr_decay ** (round_index // cfg.lr_step_rounds)
    return base * cfg.lr_decay**round_index


def round_seed(seed: int, round_index: int, stream: int, client: int = 0) -> int:
    """A seed for one purpose in one round (and one client), independent of how clients are run.

    Derived with numpy's SeedSequence so batched and per-client execution draw identical numbers.
    """
    ss = np.random.SeedSequence([seed, round_index, stream, client])
    return int(ss.generate_state(1, dtype=np.uint64)[0] & 0x7FFF_FFFF_FFFF_FFFF)


SAMPLING_STREAM, SHUFFLE_STREAM, DROPOUT_STREAM = 1, 2, 3


def sample_clients(n_clients: int, fraction: float, seed: int, round_index: int) -> np.ndarray:
    """Sorted ids of the clients taking part in a round: round(fraction * N), at least one."""
    m = max(1, round(fraction * n_clients))
    if m >= n_clients:
        return np.arange(n_clients)
    rng = np.random.default_rng(round_seed(seed, round_index, SAMPLING_STREAM))
    return np.sort(rng.choice(n_clients, size=m, replace=False))


def round_generators(
    device: torch.device, seed: int, round_index: int, stream: int, clients: list[int]
) -> list[torch.Generator]:
    """One generator per client for one purpose in one round (dropout masks, augmentations):
    each client draws the same numbers however the clients are grouped, or on which machine."""
    return [
        torch.Generator(device=device).manual_seed(round_seed(seed, round_index, stream, c))
        for c in clients
    ]
