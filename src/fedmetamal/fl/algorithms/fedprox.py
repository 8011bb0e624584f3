"""FedProx (Li et al., MLSys 2020): a proximal term keeps local models near the global one."""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field

from fedmetamal.fl.base import Algorithm, RoundContext, State


class FedProxParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mu: float = Field(0.01, ge=0.0, description="proximal coefficient")


class FedProx(Algorithm):
    name = "fedprox"
    summary = "FedAvg plus a proximal term mu/2 ||w - w_global||^2 in the local objective"
    reference = "Li et al., MLSys 2020"
    Params = FedProxParams

    def gradient_correction(
        self, params: torch.Tensor, ctx: RoundContext, client_state: State
    ) -> torch.Tensor | None:
        assert isinstance(self.params, FedProxParams)
        return self.params.mu * (params - ctx.global_params)
