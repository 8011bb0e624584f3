"""FedNova (Wang et al., NeurIPS 2020): normalised averaging removes the objective
inconsistency caused by clients taking different numbers of local steps.

Each client's update is divided by its effective step count a_i (tau_i for plain SGD; with
client momentum rho, a_i = (tau_i - rho (1 - rho^tau_i) / (1 - rho)) / (1 - rho)); the server
scales the weighted mean of the normalised updates by tau_eff = sum_i p_i a_i.
"""

from __future__ import annotations

import torch

from fedmetamal.fl.base import Algorithm, ClientOutput, RoundContext, State


def effective_steps(steps: torch.Tensor, momentum: float) -> torch.Tensor:
    tau = steps.to(torch.float64).clamp_min(1)
    if momentum == 0:
        return tau
    rho = momentum
    return (tau - rho * (1 - rho**tau) / (1 - rho)) / (1 - rho)


class FedNova(Algorithm):
    name = "fednova"
    summary = "normalised averaging for clients with different numbers of local steps"
    reference = "Wang et al., NeurIPS 2020"

    def client_finish(
        self,
        final_params: torch.Tensor,
        steps: torch.Tensor,
        ctx: RoundContext,
        client_state: State,
    ) -> tuple[State, State]:
        a = effective_steps(steps, ctx.momentum).to(final_params.dtype)
        return {"norm_steps": a}, client_state

    #: A robust rule combines the normalised updates d_i / a_i; the mean keeps the exact form.
    robust_aggregation = True

    def aggregate(self, out: ClientOutput, weights: torch.Tensor) -> torch.Tensor:
        p = weights / weights.sum()
        a = out.extras["norm_steps"]
        tau_eff = (p * a).sum()
        if self.aggregator.is_mean:
            return tau_eff * (p / a) @ out.delta
        return tau_eff * self.aggregator(out.delta / a.unsqueeze(1), weights)
