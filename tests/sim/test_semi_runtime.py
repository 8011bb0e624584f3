"""Semi-supervised training end to end: every method runs, uses unlabelled data, never sees a
hidden label, does not depend on how clients are grouped, and reports pseudo-label metrics."""

from __future__ import annotations

import csv
import json
import math
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from fedmetamal import api
from fedmetamal.config import RunConfig, build_config
from fedmetamal.data.federation import Federation
from fedmetamal.sim.runtime import Simulation

ROUNDS = 3
CLIENT_METHODS = ("supervised", "pseudo-label", "fixmatch", "fedmatch")
SERVER_METHODS = ("supervised", "pseudo-label", "semifl")
CASES = [("labels-at-clients", m) for m in CLIENT_METHODS] + [
    ("labels-at-server", m) for m in SERVER_METHODS
]


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Any:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def config(
    scenario: str = "labels-at-clients", method: str = "supervised", **overrides: Any
) -> RunConfig:
    semi: dict[str, Any] = {
        "scenario": scenario,
        "method": method,
        "threshold": 0.6,  # a young model: low enough that pseudo-labels get selected
        "warmup_rounds": 1,
    }
    if scenario == "labels-at-clients":
        semi["label_ratio"] = 0.1
    elif scenario == "labels-at-server":
        semi["server_labels"] = 0.1
    semi |= overrides.pop("semi", {})
    data: dict[str, Any] = {
        "seed": 4,
        "dataset": {"source": "synthetic", "synthetic": {"n_samples": 1500, "n_features": 32}},
        "partition": {"clients": 4},
        "model": {"hidden": [16]},
        "training": {"rounds": ROUNDS, "batch_size": 32, "client_lr": 0.3},
        "semi": semi,
        "evaluation": {"per_client": False},
        "runtime": {"device": "cpu"},
        "output": {"onnx": False, "checkpoint": False},
    }
    for key, value in overrides.items():
        data[key] = {**data.get(key, {}), **value}
    return build_config(data)


@cache
def federation(scenario: str) -> Federation:
    return api.build_federation(config(scenario))


def run(cfg: RunConfig, fed: Federation | None = None) -> api.SimulationResult:
    return api.simulate(cfg, write_outputs=False, federation=fed)


@cache
def trained(scenario: str, method: str) -> api.SimulationResult:
    return run(config(scenario, method), federation(scenario))


@pytest.mark.parametrize(("scenario", "method"), CASES)
def test_method_runs_and_reports_pseudo_label_metrics(scenario: str, method: str) -> None:
    res = trained(scenario, method)
    assert len(res.history) == ROUNDS
    for rec in res.history:
        assert rec.metrics is not None
        assert 0.0 <= rec.metrics["pseudo_coverage"] <= 1.0
        acc = rec.metrics["pseudo_accuracy"]
        assert math.isnan(acc) or 0.0 <= acc <= 1.0
    assert res.final_metrics["pseudo_coverage"] > 0
    assert 0.0 <= res.final_metrics["pseudo_accuracy"] <= 1.0
    assert torch.isfinite(res.params).all()


@pytest.mark.parametrize(("scenario", "method"), [c for c in CASES if c[1] != "supervised"])
def test_unlabelled_data_changes_the_model(scenario: str, method: str) -> None:
    ours = trained(scenario, method).params
    assert (ours - trained(scenario, "supervised").params).abs().max() > 1e-4


def test_supervised_under_labels_at_server_is_server_fine_tuning_alone() -> None:
    res = trained("labels-at-server", "supervised")
    assert all(rec.clients == [] for rec in res.history)  # clients have no labels: sit out
    init = Simulation(config("labels-at-server"), federation("labels-at-server")).state.params
    assert (res.params - init.cpu()).abs().max() > 1e-3


def _flipped(fed: Federation) -> Federation:
    """The same federation with every hidden label flipped (what training must not see)."""
    clients = []
    for c in fed.clients:
        h = c.hidden_labels
        assert h is not None and (h >= 0).any()
        flipped = np.where(h >= 0, 1 - h, h).astype(h.dtype)
        clients.append(type(c)(c.client_id, c.train, c.test, flipped))
    return Federation(clients, fed.test, dict(fed.info), server=fed.server)


@pytest.mark.parametrize(("scenario", "method"), CASES)
def test_no_label_leak(scenario: str, method: str) -> None:
    """Flipping every hidden label leaves the trained model bit-identical."""
    fed = federation(scenario)
    honest, flipped = trained(scenario, method), run(config(scenario, method), _flipped(fed))
    assert torch.equal(honest.params, flipped.params)
    # ... while the evaluation, which may read hidden labels, sees the flip
    a, b = honest.final_metrics["pseudo_accuracy"], flipped.final_metrics["pseudo_accuracy"]
    assert a == pytest.approx(1.0 - b)


@pytest.mark.parametrize("method", ["fixmatch", "fedmatch"])
def test_batched_equals_loop(method: str) -> None:
    fed = federation("labels-at-clients")
    params = {}
    for name, runtime in {
        "batched": {"strategy": "batched"},
        "groups": {"strategy": "batched", "max_batched_clients": 3},
        "loop": {"strategy": "loop"},
    }.items():
        params[name] = run(config(method=method, runtime=runtime), fed).params
    torch.testing.assert_close(params["batched"], params["loop"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(params["groups"], params["loop"], atol=1e-5, rtol=1e-5)


def test_warmup_covering_every_round_is_supervised_training() -> None:
    fed = federation("labels-at-clients")
    cfg = config(method="pseudo-label", semi={"warmup_rounds": ROUNDS})
    assert torch.equal(run(cfg, fed).params, trained("labels-at-clients", "supervised").params)


def test_supervised_without_scenario_does_no_semi_work() -> None:
    cfg = config("none")
    sim = Simulation(cfg, api.build_federation(cfg))
    assert sim.store.X_u.numel() == 0 and sim.server_set is None
    assert not sim.evaluator.semi and not sim.objective.uses_unlabelled
    rec = sim.run_round()
    assert rec.metrics is not None and "pseudo_coverage" not in rec.metrics


def test_pseudo_metrics_reach_the_run_directory(tmp_path: Path) -> None:
    cfg = config(
        method="fixmatch",
        evaluation={"per_client": True},
        output={"dir": str(tmp_path), "name": "semi"},
    )
    res = api.simulate(cfg, federation=federation("labels-at-clients"))
    assert res.run_dir is not None
    rows = [json.loads(line) for line in (res.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert all("test_pseudo_coverage" in r and "test_pseudo_accuracy" in r for r in rows)
    with (res.run_dir / "metrics.csv").open() as f:
        header = next(csv.reader(f))
    assert {"test_pseudo_coverage", "test_pseudo_accuracy"} <= set(header)
    clients = (res.run_dir / "client_metrics.jsonl").read_text().splitlines()
    assert clients and all("pseudo_coverage" in json.loads(line) for line in clients)


def test_fedmatch_helpers_change_the_pseudo_labels() -> None:
    """FedMatch is FixMatch plus helper agreement: once helpers exist, the models part ways."""
    fix = trained("labels-at-clients", "fixmatch").params
    assert (trained("labels-at-clients", "fedmatch").params - fix).abs().max() > 1e-4
    sim = trained("labels-at-clients", "fedmatch").simulation
    assert bool(sim.state.semi_state["has_history"].all())


@pytest.mark.parametrize("algorithm", ["fedprox", "scaffold", "fedadam"])
def test_methods_combine_with_any_server_algorithm(algorithm: str) -> None:
    """The semi method is the client's objective; the server algorithm is chosen apart."""
    fed = federation("labels-at-clients")
    semi = run(config(method="fixmatch", algorithm={"name": algorithm}), fed)
    plain = run(config(method="supervised", algorithm={"name": algorithm}), fed)
    assert semi.config.algorithm.name == algorithm
    assert math.isfinite(semi.final_metrics["roc_auc"])
    assert 0.0 <= semi.final_metrics["pseudo_coverage"] <= 1.0
    assert not torch.equal(semi.params, plain.params)
