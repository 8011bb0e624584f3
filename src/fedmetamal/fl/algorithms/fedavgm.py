"""FedAvgM (Hsu et al. 2019): server momentum on the averaged update, steadier under skew."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from fedmetamal.fl.base import Algorithm
from fedmetamal.fl.server_opt import ServerMomentum, ServerOptimizer


class FedAvgMParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    server_momentum: float = Field(0.9, ge=0.0, lt=1.0, description="server momentum beta")


class FedAvgM(Algorithm):
    name = "fedavgm"
    summary = "FedAvg with server momentum"
    reference = "Hsu et al., arXiv:1909.06335, 2019"
    Params = FedAvgMParams

    def make_server_optimizer(self) -> ServerOptimizer:
        assert isinstance(self.params, FedAvgMParams)
        return ServerMomentum(self.server_lr, self.params.server_momentum)
