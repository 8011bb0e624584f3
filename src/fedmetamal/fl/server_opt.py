"""Server optimisers applied to the aggregated client update (Reddi et al., ICLR 2021).

The aggregated update ``u`` is the weighted mean of ``local - global``, i.e. the negative of a
pseudo-gradient, so every optimiser here *adds* its step to the global parameters.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch

State = dict[str, torch.Tensor]


class ServerOptimizer(ABC):
    def init_state(self, params: torch.Tensor) -> State:
        return {}

    @abstractmethod
    def step(
        self, params: torch.Tensor, u: torch.Tensor, state: State
    ) -> tuple[torch.Tensor, State]:
        """New parameters and optimiser state after applying update ``u``."""


class ServerSGD(ServerOptimizer):
    """x <- x + lr * u (FedAvg when lr = 1)."""

    def __init__(self, lr: float) -> None:
        self.lr = lr

    def step(
        self, params: torch.Tensor, u: torch.Tensor, state: State
    ) -> tuple[torch.Tensor, State]:
        return params + self.lr * u, state


class ServerMomentum(ServerOptimizer):
    """Heavy-ball momentum on the update: v <- beta v + u; x <- x + lr v (Hsu et al. 2019)."""

    def __init__(self, lr: float, beta: float) -> None:
        self.lr, self.beta = lr, beta

    def init_state(self, params: torch.Tensor) -> State:
        return {"momentum": torch.zeros_like(params)}

    def step(
        self, params: torch.Tensor, u: torch.Tensor, state: State
    ) -> tuple[torch.Tensor, State]:
        v = self.beta * state["momentum"] + u
        return params + self.lr * v, {"momentum": v}


class ServerAdaptive(ServerOptimizer):
    """FedAdam, FedYogi and FedAdagrad: they differ only in the second-moment update."""

    def __init__(self, lr: float, beta1: float, beta2: float, tau: float, kind: str) -> None:
        if kind not in ("adam", "yogi", "adagrad"):
            raise ValueError(f"unknown adaptive server optimiser '{kind}'")
        self.lr, self.beta1, self.beta2, self.tau, self.kind = lr, beta1, beta2, tau, kind

    def init_state(self, params: torch.Tensor) -> State:
        return {
            "m": torch.zeros_like(params),
            "v": torch.full_like(params, self.tau**2),
        }

    def step(
        self, params: torch.Tensor, u: torch.Tensor, state: State
    ) -> tuple[torch.Tensor, State]:
        m = self.beta1 * state["m"] + (1 - self.beta1) * u
        u2 = u * u
        v = state["v"]
        if self.kind == "adam":
            v = self.beta2 * v + (1 - self.beta2) * u2
        elif self.kind == "yogi":
            v = v - (1 - self.beta2) * u2 * torch.sign(v - u2)
        else:
            v = v + u2
        return params + self.lr * m / (v.sqrt() + self.tau), {"m": m, "v": v}
