"""Participant-level DP-FedAvg (McMahan et al., "Learning Differentially Private Recurrent
Language Models", ICLR 2018): clip every sampled client's update, average, add Gaussian noise.

Mechanism per round, with m clients reporting: each delta is clipped to L2 norm <= ``clip``;
the server sums the clipped deltas, adds N(0, (z * clip)^2) per coordinate and divides by m.
One client changes the sum by at most ``clip``, so the sum is the Gaussian mechanism with
noise multiplier z, and the privacy unit is a whole participant (all its samples).

Weights are uniform on purpose: FedAvg's sample-count weights are themselves client data and
would let one client's influence exceed ``clip``; the uniform mean of the clipped deltas
replaces the weighted mean. Only the mean rule is covered by this analysis (robust rules are
refused), and only algorithms whose server combines deltas through ``Algorithm.aggregate``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from fedmetamal.errors import ConfigError, FedMetaMalError
from fedmetamal.fl.aggregate import Aggregator

if TYPE_CHECKING:
    from fedmetamal.config import AggregationConfig

#: Seed stream of the server's DP noise (independent of sampling, shuffling, attacks ...).
DP_NOISE_STREAM = 0xD9


class PrivacyBudgetError(FedMetaMalError):
    """Training would spend more privacy (epsilon) than ``privacy.epsilon_budget`` allows."""


def clip_rows(deltas: torch.Tensor, clip: float) -> torch.Tensor:
    """Each row scaled down to L2 norm <= ``clip``; rows already shorter are left unchanged."""
    norms = deltas.norm(dim=1, keepdim=True)
    scale = (clip / norms.clamp_min(torch.finfo(deltas.dtype).tiny)).clamp(max=1.0)
    return deltas * scale


def dp_mean(
    deltas: torch.Tensor,
    clip: float,
    noise_multiplier: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """(sum of clipped rows + N(0, (z*clip)^2 I)) / m for m rows. The noise is drawn on the CPU
    from ``generator`` so that a seed gives the same model on every device."""
    m = deltas.shape[0]
    total = clip_rows(deltas, clip).sum(0)
    if noise_multiplier > 0.0:
        noise = torch.randn(total.shape, generator=generator, dtype=torch.float32)
        total = total + (noise_multiplier * clip) * noise.to(total)
    return total / m


class DPAggregator(Aggregator):
    """Replaces an algorithm's mean aggregator: the client weights are ignored (uniform mean).

    ``generator_factory`` returns a fresh generator for each aggregation; the runtime seeds it
    from (seed, round) on its own stream, so the noise is deterministic per seed. With
    ``record_norms`` it keeps the unclipped update norms of the last call in ``last_norms``
    (adaptive clipping updates ``clip`` from them between rounds).
    """

    def __init__(
        self,
        clip: float,
        noise_multiplier: float,
        generator_factory: Callable[[], torch.Generator] | None = None,
        record_norms: bool = False,
    ) -> None:
        super().__init__()
        self.clip = clip
        self.noise_multiplier = noise_multiplier
        self.generator_factory = generator_factory
        self.record_norms = record_norms
        self.last_norms: torch.Tensor | None = None

    @property
    def kind(self) -> str:
        return "dp-mean"

    @property
    def is_mean(self) -> bool:
        return False

    def __call__(self, deltas: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        if self.record_norms:
            self.last_norms = deltas.detach().norm(dim=1).cpu()
        gen = self.generator_factory() if self.generator_factory is not None else None
        return dp_mean(deltas, self.clip, self.noise_multiplier, gen)


def check_privacy_compatible(algorithm_cls: type, aggregation: AggregationConfig) -> None:
    """ConfigError before training for combinations the DP-FedAvg analysis does not cover."""
    from fedmetamal.fl.base import Algorithm

    name = getattr(algorithm_cls, "name", "?")
    if aggregation.kind != "mean":
        raise ConfigError(
            f"privacy.mode participant covers the mean of clipped updates, not "
            f"aggregation.kind '{aggregation.kind}'.",
            "Use aggregation.kind: mean with privacy, or privacy.mode: none.",
        )
    if getattr(algorithm_cls, "pooled", False):
        raise ConfigError(
            f"Algorithm '{name}' pools all data centrally; participant-level DP does not apply.",
            "Choose a federated algorithm or privacy.mode: none.",
        )
    if algorithm_cls.server_update is not Algorithm.server_update:
        raise ConfigError(
            f"Algorithm '{name}' sends extra client state to the server (e.g. SCAFFOLD's control "
            "variates) that participant-level DP does not privatise.",
            "Use fedavg, fedprox, fedavgm or an adaptive optimiser with privacy.",
        )
    if algorithm_cls.aggregate is not Algorithm.aggregate:
        raise ConfigError(
            f"Algorithm '{name}' rescales client updates by client-dependent factors (e.g. "
            "FedNova's step counts), which would break the clipping bound.",
            "Use fedavg, fedprox, fedavgm or an adaptive optimiser with privacy.",
        )
