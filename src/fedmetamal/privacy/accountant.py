"""A thin wrapper over Opacus's privacy accountants (RDP, PRV) for per-round accounting.

Each federated round is one application of the subsampled Gaussian mechanism with noise
multiplier z and sample rate q = clients sampled per round / N. The simulation samples a fixed
number of clients without replacement; the accountants assume Poisson sampling at the same
rate, the usual approximation (McMahan et al., ICLR 2018), which we adopt as-is.
"""

from __future__ import annotations

import json
from typing import Literal

from opacus.accountants import IAccountant, create_accountant
from opacus.accountants.utils import get_noise_multiplier

from fedmetamal.errors import ConfigError

AccountantKind = Literal["rdp", "prv"]
#: Metrics a DP run reports every evaluated round (``clip``: with adaptive clipping only).
PRIVACY_METRIC_NAMES: tuple[str, ...] = ("epsilon", "delta", "clip")


class PrivacyAccountant:
    """Tracks (z, q, steps) of every round and answers epsilon for a delta.

    ``history`` is a plain list of ``[noise_multiplier, sample_rate, steps]`` so that it can go
    into JSON (checkpoint metadata) and come back with :meth:`from_history`; never pickled.
    """

    def __init__(self, kind: AccountantKind = "rdp") -> None:
        self.kind = kind
        self._acc: IAccountant = create_accountant(kind)

    def step(self, noise_multiplier: float, sample_rate: float, steps: int = 1) -> None:
        """Account ``steps`` releases (rounds) of the subsampled Gaussian mechanism."""
        for _ in range(steps):
            self._acc.step(noise_multiplier=noise_multiplier, sample_rate=sample_rate)

    def epsilon(self, delta: float) -> float:
        """Epsilon spent so far at this delta (0 before any step)."""
        if not self._acc.history:
            return 0.0
        return float(self._acc.get_epsilon(delta=delta))

    @property
    def steps(self) -> int:
        return sum(int(s) for _, _, s in self._acc.history)

    @property
    def history(self) -> list[list[float]]:
        return [[float(z), float(q), int(s)] for z, q, s in self._acc.history]

    def to_json(self) -> str:
        return json.dumps({"accountant": self.kind, "history": self.history})

    @classmethod
    def from_history(
        cls, history: list[list[float]], kind: AccountantKind = "rdp"
    ) -> PrivacyAccountant:
        """An accountant that has already spent ``history`` (as :attr:`history` returns it)."""
        acc = cls(kind)
        acc._acc.history = [(float(z), float(q), int(s)) for z, q, s in history]
        return acc

    @classmethod
    def from_json(cls, text: str) -> PrivacyAccountant:
        data = json.loads(text)
        return cls.from_history(data["history"], data["accountant"])


def predicted_epsilon(
    noise_multiplier: float,
    sample_rate: float,
    rounds: int,
    delta: float,
    kind: AccountantKind = "rdp",
) -> float:
    """Epsilon after ``rounds`` rounds at a fixed (z, q); inf without noise."""
    if noise_multiplier <= 0.0:
        return float("inf")
    return PrivacyAccountant.from_history([[noise_multiplier, sample_rate, rounds]], kind).epsilon(
        delta
    )


def noise_for_target(
    target_epsilon: float,
    delta: float,
    sample_rate: float,
    rounds: int,
    kind: AccountantKind = "rdp",
) -> float:
    """The noise multiplier that spends ``target_epsilon`` over ``rounds`` rounds (Opacus's
    binary search); a ConfigError, not Opacus's ValueError, when the target is unreachable."""
    try:
        return float(
            get_noise_multiplier(
                target_epsilon=target_epsilon,
                target_delta=delta,
                sample_rate=sample_rate,
                steps=rounds,
                accountant=kind,
                epsilon_tolerance=0.005,
            )
        )
    except (ValueError, RuntimeError) as err:
        raise ConfigError(
            f"privacy.target_epsilon {target_epsilon} cannot be reached with delta {delta}, "
            f"sample rate {sample_rate:.4g} and {rounds} rounds ({err}).",
            "Raise privacy.target_epsilon or set privacy.noise_multiplier directly.",
        ) from None
