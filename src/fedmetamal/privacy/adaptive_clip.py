"""Adaptive quantile clipping (Andrew, Thakkar, McMahan, Ramaswamy, "Differentially Private
Learning with Adaptive Clipping", NeurIPS 2021).

A fixed clip norm C must be tuned per task: too small biases every update, too large wastes the
noise. Instead C tracks the ``target_quantile`` gamma of the clients' update norms with a
geometric update driven by a privatised count of the clients that were not clipped:

    b_i = 1[||delta_i|| <= C],   b = (sum b_i + N(0, sigma_b^2)) / m,   C <- C exp(-eta (b - gamma))

The count is a second Gaussian release (sensitivity 1, std sigma_b); Theorem 1 of the paper
combines it with the clipped sum released at multiplier z_delta into one Gaussian mechanism of
multiplier z when z_delta = (z^-2 - (2 sigma_b)^-2)^(-1/2), so the accountant keeps using z.
"""

from __future__ import annotations

import math

import torch

from fedmetamal.errors import ConfigError

#: Seed stream of the noise on the unclipped-count (separate from the update noise stream).
DP_CLIP_STREAM = 0xDA


def default_count_stddev(clients_per_round: int) -> float:
    """sigma_b = m / 20, the paper's suggestion: the count noise then costs little privacy."""
    return clients_per_round / 20.0


def adjusted_noise_multiplier(noise_multiplier: float, count_stddev: float) -> float:
    """z_delta for the clipped sum, so that sum and count together have multiplier z.

    ``count_stddev`` 0 (no count noise, not private) returns z itself, z = 0 returns 0. Raises
    ConfigError when the count noise is too small for z to be reachable: z^-2 <= (2 sigma_b)^-2.
    """
    z, sigma_b = noise_multiplier, count_stddev
    if sigma_b < 0.0:
        raise ConfigError(
            f"privacy.clip_count_stddev must be >= 0, got {sigma_b:g}.",
            "Leave it unset for the default (clients per round / 20).",
        )
    if sigma_b == 0.0:
        return z
    if z <= 0.0:  # no noise at all: nothing private to preserve
        return 0.0
    rest = z**-2 - (2.0 * sigma_b) ** -2
    if rest <= 0.0:
        raise ConfigError(
            f"privacy.clip_count_stddev {sigma_b:.3g} is too small for the noise multiplier "
            f"{z:.3g}: adaptive clipping needs 2 * clip_count_stddev > noise_multiplier.",
            f"Raise privacy.clip_count_stddev above {z / 2:.3g}, raise clients per round, or "
            "set privacy.adaptive_clip: false.",
        )
    return rest**-0.5


def update_clip(
    clip: float,
    norms: torch.Tensor,
    target_quantile: float,
    clip_lr: float,
    count_stddev: float,
    generator: torch.Generator | None = None,
) -> tuple[float, float]:
    """One geometric step of C toward the ``target_quantile`` of ``norms``.

    Returns (new clip, noisy fraction of unclipped clients). The noise is drawn on the CPU from
    ``generator`` so a seed gives the same clip trajectory on every device.
    """
    m = int(norms.numel())
    if m == 0:
        return clip, float("nan")
    unclipped = float((norms.detach().to("cpu", torch.float64) <= clip).sum())
    if count_stddev > 0.0:
        noise = torch.randn((), generator=generator, dtype=torch.float64)
        unclipped += count_stddev * float(noise)
    fraction = unclipped / m
    return clip * math.exp(-clip_lr * (fraction - target_quantile)), fraction
