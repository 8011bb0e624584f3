"""Adaptive server optimisers (Reddi et al., ICLR 2021): FedAdam, FedYogi, FedAdagrad.

Clients run plain local SGD; the server treats the averaged update as a pseudo-gradient and
applies Adam, Yogi or Adagrad to it. The server learning rate defaults to 0.01, the paper's
usual range, instead of FedAvg's 1.0.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from fedmetamal.fl.base import Algorithm
from fedmetamal.fl.server_opt import ServerAdaptive, ServerOptimizer


class AdaptiveParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    beta1: float = Field(0.9, ge=0.0, lt=1.0, description="first-moment decay")
    beta2: float = Field(0.99, ge=0.0, lt=1.0, description="second-moment decay")
    tau: float = Field(1e-3, gt=0.0, description="adaptivity (epsilon) term")


class _Adaptive(Algorithm):
    Params = AdaptiveParams
    default_server_lr = 0.01
    kind = "adam"

    def make_server_optimizer(self) -> ServerOptimizer:
        assert isinstance(self.params, AdaptiveParams)
        p = self.params
        return ServerAdaptive(self.server_lr, p.beta1, p.beta2, p.tau, self.kind)


class FedAdam(_Adaptive):
    name = "fedadam"
    summary = "Adam on the server's pseudo-gradient"
    reference = "Reddi et al., ICLR 2021"
    kind = "adam"


class FedYogi(_Adaptive):
    name = "fedyogi"
    summary = "Yogi on the server's pseudo-gradient"
    reference = "Reddi et al., ICLR 2021"
    kind = "yogi"


class FedAdagrad(_Adaptive):
    name = "fedadagrad"
    summary = "Adagrad on the server's pseudo-gradient"
    reference = "Reddi et al., ICLR 2021"
    kind = "adagrad"
