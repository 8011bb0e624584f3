"""Algorithm registry: adding an algorithm means one module in ``algorithms/`` and one line here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from fedmetamal.errors import ConfigError
from fedmetamal.fl.aggregate import Aggregator
from fedmetamal.fl.algorithms.adaptive import FedAdagrad, FedAdam, FedYogi
from fedmetamal.fl.algorithms.centralised import Centralised
from fedmetamal.fl.algorithms.fedavg import FedAvg
from fedmetamal.fl.algorithms.fedavgm import FedAvgM
from fedmetamal.fl.algorithms.fednova import FedNova
from fedmetamal.fl.algorithms.fedprox import FedProx
from fedmetamal.fl.algorithms.scaffold import Scaffold
from fedmetamal.fl.base import Algorithm

if TYPE_CHECKING:
    from fedmetamal.config import AggregationConfig

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


def build_algorithm(
    name: str,
    params: dict[str, Any],
    server_lr: float | None,
    aggregation: AggregationConfig | None = None,
    byzantine: int | None = None,
) -> Algorithm:
    """The algorithm, combining client deltas by ``aggregation`` (default: the weighted mean).

    ``byzantine``: the malicious count the caller knows (the simulated attack's), the rule's f
    when ``aggregation.byzantine`` is unset. The pooled centralised baseline has one "client" and
    nothing to aggregate robustly, so it always uses the mean (suites can sweep rules across it).
    """
    cls = algorithm_class(name)
    aggregator = None
    if aggregation is not None and aggregation.kind != "mean" and not cls.pooled:
        if cls.aggregate is not Algorithm.aggregate and not cls.robust_aggregation:
            raise ConfigError(
                f"Algorithm '{name}' combines client updates its own way and does not support "
                f"aggregation.kind '{aggregation.kind}' yet.",
                "Use aggregation.kind: mean with it, or another algorithm.",
            )
        aggregator = Aggregator(aggregation, byzantine)
    return cls(cls.Params.model_validate(params), server_lr, aggregator)
