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

Noise placement: ``central`` (above) trusts the server to add the noise. ``distributed`` has
each of the m reporting clients add N(0, (z * clip)^2 / m) to its clipped update before it is
masked (secure aggregation), so the sum carries the same N(0, (z * clip)^2) and the server adds
none: it never sees an un-noised aggregate. Accounting is unchanged. Caveats: clients that drop
out after drawing their share take it with them (m' < m survivors leave variance
(z * clip)^2 * m' / m, slightly less noise than accounted), and the noise is continuous
Gaussian added before secure aggregation's quantisation, not a discrete Gaussian on the ring.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

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


NoisePlacement = Literal["central", "distributed"]


def distributed_noise(
    rows: torch.Tensor,
    clip: float,
    noise_multiplier: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Each of the m rows plus its client's share N(0, (z*clip)^2 / m) of the round's noise
    (drawn on the CPU from ``generator``), so the m shares sum to N(0, (z*clip)^2)."""
    m = rows.shape[0]
    if noise_multiplier <= 0.0 or m == 0:
        return rows
    noise = torch.randn(rows.shape, generator=generator, dtype=torch.float32)
    return rows + (noise_multiplier * clip / m**0.5) * noise.to(rows)


def dp_mean(
    deltas: torch.Tensor,
    clip: float,
    noise_multiplier: float,
    generator: torch.Generator | None = None,
    placement: NoisePlacement = "central",
) -> torch.Tensor:
    """(sum of clipped rows + N(0, (z*clip)^2 I)) / m for m rows. The noise is drawn on the CPU
    from ``generator`` so that a seed gives the same model on every device; ``distributed``
    draws it as m per-client shares added to the rows before they are summed."""
    m = deltas.shape[0]
    if placement == "distributed":
        return (
            distributed_noise(clip_rows(deltas, clip), clip, noise_multiplier, generator).sum(0) / m
        )
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
    (adaptive clipping updates ``clip`` from them between rounds). ``placement``: who adds
    the noise (see the module docstring).
    """

    def __init__(
        self,
        clip: float,
        noise_multiplier: float,
        generator_factory: Callable[[], torch.Generator] | None = None,
        record_norms: bool = False,
        placement: NoisePlacement = "central",
    ) -> None:
        super().__init__()
        self.clip = clip
        self.noise_multiplier = noise_multiplier
        self.generator_factory = generator_factory
        self.record_norms = record_norms
        self.placement: NoisePlacement = placement
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
        return dp_mean(deltas, self.clip, self.noise_multiplier, gen, self.placement)


def check_privacy_compatible(algorithm_cls: type, aggregation: AggregationConfig) -> None:
    """ConfigError before training for combinations the DP-FedAvg analysis does not cover."""
    name = getattr(algorithm_cls, "name", "?")
    if aggregation.kind != "mean":
        raise ConfigError(
            f"privacy.mode participant covers the mean of clipped updates, not "
            f"aggregation.kind '{aggregation.kind}'.",
            "Use aggregation.kind: mean with privacy, or privacy.mode: none.",
        )
    problem = sum_only_problem(algorithm_cls)
    if problem == "pooled":
        raise ConfigError(
            f"Algorithm '{name}' pools all data centrally; participant-level DP does not apply.",
            "Choose a federated algorithm or privacy.mode: none.",
        )
    if problem == "extra-state":
        raise ConfigError(
            f"Algorithm '{name}' sends extra client state to the server (e.g. SCAFFOLD's control "
            "variates) that participant-level DP does not privatise.",
            "Use fedavg, fedprox, fedavgm or an adaptive optimiser with privacy.",
        )
    if problem == "rescales":
        raise ConfigError(
            f"Algorithm '{name}' rescales client updates by client-dependent factors (e.g. "
            "FedNova's step counts), which would break the clipping bound.",
            "Use fedavg, fedprox, fedavgm or an adaptive optimiser with privacy.",
        )


def sum_only_problem(algorithm_cls: type) -> str | None:
    """Why the server of ``algorithm_cls`` needs more than the sum of the client deltas:
    ``pooled`` (no participants), ``extra-state`` (clients upload more than a delta, e.g.
    SCAFFOLD), ``rescales`` (per-client factors, e.g. FedNova); None when the sum suffices.
    Shared by participant-level DP and secure aggregation, which both see only that sum."""
    from fedmetamal.fl.base import Algorithm

    if getattr(algorithm_cls, "pooled", False):
        return "pooled"
    if algorithm_cls.server_update is not Algorithm.server_update:
        return "extra-state"
    if algorithm_cls.aggregate is not Algorithm.aggregate:
        return "rescales"
    return None
