"""Robust aggregation in the simulation runtime: every rule runs against an attack, bad settings
fail before training, and FLTrust gets its root update from the server's own data."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from fedmetamal import api
from fedmetamal.config import build_config
from fedmetamal.errors import ConfigError
from fedmetamal.fl.aggregate import RULES


def config(kind: str, attack: str = "sign-flip", **aggregation: Any) -> Any:
    return build_config(
        {
            "seed": 3,
            "dataset": {"source": "synthetic", "synthetic": {"n_samples": 1500, "n_features": 32}},
            "partition": {"clients": 12},
            "model": {"hidden": [16]},
            "training": {"rounds": 3, "client_lr": 0.3},
            "aggregation": {"kind": kind, **aggregation},
            "attack": {"kind": attack, "fraction": 0.2},
            "evaluation": {"per_client": False},
            "runtime": {"threads": 1},
            "output": {"onnx": False, "checkpoint": False},
        }
    )


@pytest.mark.parametrize("kind", RULES)
def test_every_rule_runs_against_sign_flipping(kind: str) -> None:
    result = api.simulate(config(kind), write_outputs=False)
    assert 0.0 <= result.final_metrics["roc_auc"] <= 1.0
    assert len(result.simulation.malicious) == 2  # round(0.2 * 12)


def test_robust_rule_changes_the_outcome_of_an_attack() -> None:
    mean = api.simulate(config("mean"), write_outputs=False)
    median = api.simulate(config("median"), write_outputs=False)
    assert not torch.equal(mean.params, median.params)


def test_too_few_clients_for_the_rule_fail_before_training() -> None:
    stages: list[str] = []
    with pytest.raises(ConfigError, match="bulyan"):
        api.simulate(config("bulyan", byzantine=3), write_outputs=False, on_stage=stages.append)
    assert "training" not in stages


def test_fednova_goes_through_the_robust_rule() -> None:
    data = config("median").model_dump()
    data["algorithm"] = {"name": "fednova"}
    result = api.simulate(build_config(data), write_outputs=False)
    assert 0.0 <= result.final_metrics["roc_auc"] <= 1.0
