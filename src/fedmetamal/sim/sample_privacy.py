"""Sample-level DP (DP-SGD at every participant) inside the simulation runtime: the noise
setting, per-participant accounting and the epsilon budget.

Participant i runs s_i Poisson-sampled steps a round at rate q_i = batch_size / n_i, so after
k_i rounds its samples have spent the subsampled Gaussian mechanism's epsilon at (z, q_i,
k_i s_i). Participants hold disjoint data, so a record's guarantee is its holder's epsilon; the
run reports the largest. Dataset sizes (hence q_i and s_i) are treated as public, as in Opacus.
A target epsilon picks z up front so that even a participant sampled in every round stays
within it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from fedmetamal.config import RunConfig
from fedmetamal.errors import ConfigError
from fedmetamal.fl.local import local_step_count
from fedmetamal.fl.schedule import round_seed
from fedmetamal.privacy import PrivacyAccountant, noise_for_target, predicted_epsilon
from fedmetamal.privacy.dp import PrivacyBudgetError
from fedmetamal.privacy.dp_sgd import DP_SGD_NOISE_STREAM, SampleDP


def sample_dp_enabled(cfg: RunConfig) -> bool:
    return cfg.privacy.mode == "sample"


def check_sample_dp(cfg: RunConfig) -> None:
    """ConfigError before training for settings DP-SGD here does not cover."""
    if cfg.semi.method != "supervised" or cfg.semi.scenario == "labels-at-server":
        raise ConfigError(
            f"privacy.mode sample covers clients' supervised steps only; semi.method "
            f"'{cfg.semi.method}' (scenario '{cfg.semi.scenario}') also learns from unlabelled "
            "rows, pseudo-labels or a server-held labelled set, which per-sample clipping at "
            "the participants does not cover.",
            "Set semi.method: supervised and no labels-at-server scenario, or use "
            "privacy.mode: participant.",
        )
    if cfg.model.kind == "mlp" and cfg.model.dropout > 0:
        raise ConfigError(
            f"privacy.mode sample needs model.dropout 0 (now {cfg.model.dropout}): per-sample "
            "gradients are computed without dropout masks.",
            "Set model.dropout: 0 (DP noise already regularises).",
        )


def pareto_front(points: Iterable[tuple[float, int]]) -> list[tuple[float, int]]:
    """The (rate, steps) pairs no other pair matches or beats in both coordinates."""
    front: list[tuple[float, int]] = []
    for q, n in sorted(set(points), key=lambda p: (-p[0], -p[1])):
        if not front or n > front[-1][1]:
            front.append((q, n))
    return front


class SamplePrivacy:
    """Noise multiplier, per-participant epsilon and the budget of a DP-SGD run."""

    def __init__(self, cfg: RunConfig, sizes: np.ndarray) -> None:
        check_sample_dp(cfg)
        p, t = cfg.privacy, cfg.training
        self.cfg = p
        self.seed = cfg.seed
        self.batch_size = t.batch_size
        sizes = np.asarray(sizes, dtype=np.int64)
        self.rates = np.minimum(1.0, t.batch_size / np.maximum(sizes, 1))
        self.steps = np.array(
            [local_step_count(int(n), t.batch_size, t.local_epochs, t.local_steps) for n in sizes]
        )
        self.holds_data = sizes > 0
        if not self.holds_data.any():
            raise ConfigError(
                "privacy.mode sample needs labelled training data at some participant.",
                "Check the dataset and partition settings.",
            )
        held = [
            (float(q), int(n))
            for q, n, h in zip(self.rates, self.steps, self.holds_data, strict=True)
            if h
        ]
        kinds = pareto_front(held)
        rounds = t.rounds
        if p.noise_multiplier is not None:
            self.noise_multiplier = p.noise_multiplier
        else:
            assert p.target_epsilon is not None
            self.noise_multiplier = max(
                noise_for_target(p.target_epsilon, p.delta, q, s * rounds, p.accountant)
                for q, s in kinds
            )
        #: Epsilon of a participant sampled in every round (an upper bound on the run's).
        self.predicted = max(
            predicted_epsilon(self.noise_multiplier, q, s * rounds, p.delta, p.accountant)
            for q, s in kinds
        )
        if p.epsilon_budget is not None and self.predicted > p.epsilon_budget:
            raise ConfigError(
                f"DP-SGD over {rounds} rounds could spend epsilon {self.predicted:.3g} (noise "
                f"multiplier {self.noise_multiplier:.3g}, participants sampled every round), "
                f"more than privacy.epsilon_budget {p.epsilon_budget:g}.",
                "Raise privacy.noise_multiplier, train fewer rounds or local epochs, or set "
                "privacy.target_epsilon.",
            )
        #: Rounds each participant has trained in (its accountant history is (z, q, k s)).
        self.rounds_taken = np.zeros(len(sizes), dtype=np.int64)
        self._cache: dict[tuple[float, int], float] = {}

    def group(self, clients: list[int], round_index: int) -> SampleDP:
        """The DP-SGD settings of one group: a noise generator per client and round."""
        stream = DP_SGD_NOISE_STREAM
        gens = [
            torch.Generator().manual_seed(round_seed(self.seed, round_index, stream, c))
            for c in clients
        ]
        return SampleDP(self.cfg.clip, self.noise_multiplier, float(self.batch_size), gens)

    def _epsilon_at(self, rate: float, steps: int) -> float:
        key = (rate, steps)
        if self.noise_multiplier <= 0.0:
            return float("inf")
        if key not in self._cache:
            acc = PrivacyAccountant.from_history(
                [[self.noise_multiplier, rate, steps]], self.cfg.accountant
            )
            self._cache[key] = acc.epsilon(self.cfg.delta)
        return self._cache[key]

    def _epsilon_with(self, taken: np.ndarray) -> float:
        """The largest participant epsilon, evaluated only on the Pareto front of (rate, steps):
        epsilon grows with both, and each evaluation costs an RDP computation."""
        points = {
            (float(self.rates[c]), int(self.steps[c]) * int(k))
            for c, k in enumerate(taken)
            if k > 0 and self.holds_data[c]
        }
        return max((self._epsilon_at(q, n) for q, n in pareto_front(points)), default=0.0)

    def check_next_round(self, r: int, clients: np.ndarray) -> None:
        """Stop cleanly, before round ``r``, if it would take a participant past the budget."""
        budget = self.cfg.epsilon_budget
        if budget is None:
            return
        after = self.rounds_taken.copy()
        after[clients] += 1
        eps = self._epsilon_with(after)
        if eps > budget:
            raise PrivacyBudgetError(
                f"Round {r + 1} would raise a participant's epsilon to {eps:.3g}, past "
                f"privacy.epsilon_budget {budget:g}; training stopped after round {r}.",
                "Raise the budget or the noise multiplier, or train fewer rounds.",
            )

    def account(self, clients: np.ndarray) -> None:
        self.rounds_taken[clients] += 1

    def epsilon(self) -> float:
        """The largest epsilon any participant's samples have spent so far."""
        return self._epsilon_with(self.rounds_taken)

    def metadata(self) -> dict[str, Any]:
        """JSON-ready summary for the checkpoint: enough to recompute every epsilon."""
        return {
            "mode": "sample",
            "clip": self.cfg.clip,
            "noise_multiplier": self.noise_multiplier,
            "delta": self.cfg.delta,
            "accountant": self.cfg.accountant,
            "epsilon": self.epsilon(),
            "sampling": "poisson",
            "participants": [
                {"sample_rate": float(q), "steps_per_round": int(s), "rounds": int(k)}
                for q, s, k in zip(self.rates, self.steps, self.rounds_taken, strict=True)
            ],
        }
