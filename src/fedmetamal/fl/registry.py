"""Algorithm registry: adding an algorithm means one module in ``algorithms/`` and one line here."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from fedmetamal.fl.algorithms.adaptive import FedAdagrad, FedAdam, FedYogi
from fedmetamal.fl.algorithms.centralised import Centralised
from fedmetamal.fl.algorithms.fedavg import FedAvg
from fedmetamal.fl.algorithms.fedavgm import FedAvgM
from fedmetamal.fl.algorithms.fednova import FedNova
from fedmetamal.fl.algorithms.fedprox import FedProx
from fedmetamal.fl.algorithms.scaffold import Scaffold
from fedmetamal.fl.base import Algorithm

ALGORITHMS: dict[str, type[Algorithm]] = {
    cls.name: cls
    for cls in (
        FedAvg,
        FedAvgM,
        FedProx,
        Scaffold,
        FedNova,
        FedAdam,
        FedYogi,
        FedAdagrad,
        Centralised,
    )
}


def algorithm_class(name: str) -> type[Algorithm]:
    try:
        return ALGORITHMS[name]
    except KeyError:
        raise ValueError(
            f"unknown algorithm '{name}'; choose one of: {', '.join(ALGORITHMS)}"
        ) from None


def validate_params(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """Check an algorithm's own hyperparameters; raises ValueError naming what is allowed."""
    cls = algorithm_class(name)
    try:
        model: BaseModel = cls.Params.model_validate(params)
    except ValidationError as err:
        allowed = ", ".join(cls.Params.model_fields) or "none"
        details = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        raise ValueError(f"{details} (parameters of '{name}': {allowed})") from None
    return model.model_dump()


def build_algorithm(name: str, params: dict[str, Any], server_lr: float | None) -> Algorithm:
    cls = algorithm_class(name)
    return cls(cls.Params.model_validate(params), server_lr)
