"""Differential privacy inside the simulation runtime: the DP aggregator, per-round accounting
and the epsilon budget (the mechanism and the accountant themselves live in ``privacy/``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from fedmetamal.config import RunConfig
from fedmetamal.errors import ConfigError
from fedmetamal.fl.schedule import round_seed

if TYPE_CHECKING:
    from fedmetamal.sim.runtime import Simulation


def dp_enabled(cfg: RunConfig) -> bool:
    return cfg.privacy.mode == "participant"


class RoundPrivacy:
    """The runtime's DP hook: swaps the algorithm's aggregator for the DP one, accounts every
    round at q = clients sampled per round / N, and enforces ``privacy.epsilon_budget``."""

    def __init__(self, sim: Simulation, per_round: int, n_clients: int) -> None:
        from fedmetamal.fl.registry import algorithm_class
        from fedmetamal.privacy import (
            DP_NOISE_STREAM,
            DPAggregator,
            PrivacyAccountant,
            check_privacy_compatible,
            noise_for_target,
            predicted_epsilon,
        )

        cfg = sim.cfg
        p = cfg.privacy
        check_privacy_compatible(algorithm_class(cfg.algorithm.name), cfg.aggregation)
        self.cfg = p
        self.rounds = cfg.training.rounds
        self.sample_rate = per_round / n_clients
        if p.noise_multiplier is not None:
            self.noise_multiplier = p.noise_multiplier
        else:
            assert p.target_epsilon is not None
            self.noise_multiplier = noise_for_target(
                p.target_epsilon, p.delta, self.sample_rate, self.rounds, p.accountant
            )
        self.predicted = predicted_epsilon(
            self.noise_multiplier, self.sample_rate, self.rounds, p.delta, p.accountant
        )
        if p.epsilon_budget is not None and self.predicted > p.epsilon_budget:
            raise ConfigError(
                f"Training would spend epsilon {self.predicted:.3g} over {self.rounds} rounds "
                f"(noise multiplier {self.noise_multiplier:.3g}, sample rate "
                f"{self.sample_rate:.3g}, delta {p.delta:g}), more than privacy.epsilon_budget "
                f"{p.epsilon_budget:g}.",
                "Raise privacy.noise_multiplier, lower training.rounds or "
                "training.client_fraction, or set privacy.target_epsilon.",
            )
        self.accountant = PrivacyAccountant(p.accountant)
        seed = cfg.seed
        self.sim = sim
        #: Adaptive clipping: sigma_b of the unclipped count, and the multiplier of the clipped
        #: sum (z_delta < z) so that sum and count together stay a Gaussian mechanism of z.
        self.count_stddev = 0.0
        sum_multiplier = self.noise_multiplier
        if p.adaptive_clip:
            from fedmetamal.privacy import adjusted_noise_multiplier, default_count_stddev

            if self.noise_multiplier > 0.0:
                self.count_stddev = (
                    p.clip_count_stddev
                    if p.clip_count_stddev is not None
                    else default_count_stddev(per_round)
                )
            sum_multiplier = adjusted_noise_multiplier(self.noise_multiplier, self.count_stddev)
        self.sum_multiplier = sum_multiplier
        #: Clip norm the last round's updates were clipped to (reported as metric ``clip``).
        self.round_clip = p.clip

        def generator() -> torch.Generator:
            r = sim.state.round
            return torch.Generator().manual_seed(round_seed(seed, r, DP_NOISE_STREAM))

        self.aggregator = DPAggregator(
            p.clip,
            sum_multiplier,
            generator,
            record_norms=p.adaptive_clip,
            placement=p.noise_placement,
        )
        sim.algorithm.aggregator = self.aggregator

    def check_next_round(self, r: int) -> None:
        """Stop cleanly, before training round ``r``, if releasing it would pass the budget."""
        budget = self.cfg.epsilon_budget
        if budget is None:
            return
        from fedmetamal.privacy import PrivacyAccountant, PrivacyBudgetError

        after = PrivacyAccountant.from_history(self.accountant.history, self.cfg.accountant)
        after.step(self.noise_multiplier, self.sample_rate)
        eps = after.epsilon(self.cfg.delta)
        if eps > budget:
            raise PrivacyBudgetError(
                f"Round {r + 1} would raise epsilon to {eps:.3g}, past privacy.epsilon_budget "
                f"{budget:g}; training stopped after round {r}.",
                "Raise the budget or the noise multiplier, or train fewer rounds.",
            )

    def account(self) -> None:
        """Account the round at z; with adaptive clipping, also move the clip for the next."""
        self.accountant.step(self.noise_multiplier, self.sample_rate)
        if self.cfg.adaptive_clip:
            self._adapt_clip()

    def _adapt_clip(self) -> None:
        from fedmetamal.privacy import DP_CLIP_STREAM, update_clip

        agg = self.aggregator
        norms, agg.last_norms = agg.last_norms, None
        self.round_clip = agg.clip
        if norms is None or not norms.numel():  # no aggregation this round: clip unchanged
            return
        r = self.sim.state.round
        gen = torch.Generator().manual_seed(round_seed(self.sim.cfg.seed, r, DP_CLIP_STREAM))
        agg.clip, _ = update_clip(
            agg.clip,
            norms,
            self.cfg.target_quantile,
            self.cfg.clip_lr,
            self.count_stddev,
            gen,
        )

    def epsilon(self) -> float:
        return self.accountant.epsilon(self.cfg.delta)

    def metadata(self) -> dict[str, Any]:
        """JSON-ready summary for the checkpoint (the accountant's history restores it)."""
        out: dict[str, Any] = {
            "mode": self.cfg.mode,
            "clip": self.cfg.clip,
            "noise_multiplier": self.noise_multiplier,
            "sample_rate": self.sample_rate,
            "delta": self.cfg.delta,
            "accountant": self.cfg.accountant,
            "noise_placement": self.cfg.noise_placement,
            "epsilon": self.epsilon(),
            "history": self.accountant.history,
        }
        if self.cfg.adaptive_clip:
            out["adaptive_clip"] = {
                "clip": self.aggregator.clip,
                "target_quantile": self.cfg.target_quantile,
                "clip_lr": self.cfg.clip_lr,
                "count_stddev": self.count_stddev,
                "sum_noise_multiplier": self.sum_multiplier,
            }
        return out
