"""Every algorithm: the batched and the looped runtime give the global model of a plain loop.

The reference (``reference_loop.py``) trains each sampled client alone with ``torch.optim.SGD``
on an ``nn.Module`` and applies each paper's server update by hand. The federation has clients
of uneven sizes, so last batches are partial and clients take different numbers of local steps.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from functools import cache
from typing import Any

import numpy as np
import pytest
import torch
from reference_loop import reference_run

from fedmetamal.config import RunConfig, build_config
from fedmetamal.data.dataset import Dataset
from fedmetamal.data.federation import ClientData, Federation
from fedmetamal.fl.local import local_step_count
from fedmetamal.fl.registry import ALGORITHMS
from fedmetamal.fl.schedule import sample_clients
from fedmetamal.models.networks import Network
from fedmetamal.sim.runtime import Simulation, group_size

D = 12
SIZES = (37, 150, 64, 91, 52, 118)
ROUNDS = 3
TOL = 1e-5

#: Algorithm hyperparameters strong enough that each algorithm's own term matters.
ALGO_PARAMS: dict[str, dict[str, Any]] = {
    "fedprox": {"mu": 0.5},
    # a short second-moment memory makes FedAdam and FedYogi part ways from the first rounds
    **{name: {"beta2": 0.5} for name in ("fedadam", "fedyogi", "fedadagrad")},
}

#: Training set-ups; together they cover sampling, fractional epochs, weight decay, client
#: momentum, an LR schedule, uniform weighting and logistic regression.
SCENARIOS: dict[str, dict[str, Any]] = {
    "mlp-full": {
        "model": {"kind": "mlp", "hidden": [16, 8]},
        "training": {"batch_size": 16, "client_lr": 0.1},
    },
    "mlp-sampled-wd": {
        "model": {"kind": "mlp", "hidden": [16, 8], "activation": "tanh"},
        "training": {
            "batch_size": 24,
            "client_lr": 0.1,
            "client_fraction": 0.5,
            "local_epochs": 1.5,
            "weight_decay": 1e-3,
            "lr_schedule": "cosine",
        },
    },
    "logreg-momentum": {
        "model": {"kind": "logreg"},
        "training": {
            "batch_size": 20,
            "client_lr": 0.05,
            "client_momentum": 0.9,
            "client_fraction": 0.67,
            "weighting": "uniform",
        },
    },
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Tiny tensors: one intra-op thread is far faster than several, above all on a busy box."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


#: How the simulation runs the sampled clients: all stacked in one group, stacked in groups of
#: at most 4 (outputs of several groups are concatenated), or one at a time.
GROUPED = "batched-groups-of-4"
RUNTIMES: dict[str, dict[str, Any]] = {
    "batched": {"strategy": "batched"},
    GROUPED: {"strategy": "batched", "max_batched_clients": 4},
    "loop": {"strategy": "loop"},
}


def _dataset(rng: np.random.Generator, n: int, w: np.ndarray) -> Dataset:
    X = rng.standard_normal((n, D)).astype(np.float32)
    y = (X @ w + 0.5 * rng.standard_normal(n) > 0).astype(np.int8)
    return Dataset(X, y, [f"f{i}" for i in range(D)])


@cache
def federation() -> Federation:
    rng = np.random.default_rng(7)
    w = rng.standard_normal(D)
    clients = [ClientData(i, _dataset(rng, n, w), _dataset(rng, 0, w)) for i, n in enumerate(SIZES)]
    return Federation(clients, _dataset(rng, 200, w))


def config(
    algorithm: str, scenario: str, runtime: str, model: dict[str, Any] | None = None
) -> RunConfig:
    spec = SCENARIOS[scenario]
    return build_config(
        {
            "seed": 3,
            "model": {**spec["model"], **(model or {})},
            "algorithm": {"name": algorithm, "params": ALGO_PARAMS.get(algorithm, {})},
            "training": {"rounds": ROUNDS, **spec["training"]},
            "evaluation": {"every": ROUNDS, "per_client": False},
            "runtime": {**RUNTIMES[runtime], "device": "cpu"},
            "output": {"onnx": False, "checkpoint": False},
        }
    )


@cache
def simulated(algorithm: str, scenario: str, runtime: str) -> torch.Tensor:
    return _run(config(algorithm, scenario, runtime))


def _run(cfg: RunConfig) -> torch.Tensor:
    sim = Simulation(cfg, federation(), torch.device("cpu"))
    sim.run()
    return sim.state.params.detach().cpu()


@cache
def reference(algorithm: str, scenario: str) -> torch.Tensor:
    return reference_run(config(algorithm, scenario, "loop"), federation())


def _init_params(scenario: str) -> torch.Tensor:
    cfg = config("fedavg", scenario, "loop")
    net = Network.from_config(cfg.model, D)
    return net.init(torch.Generator().manual_seed(cfg.seed))


#: Every algorithm under every scenario and runtime; groups of 4 only split the clients of the
#: scenario that samples all six (4 + 2), so the other scenarios skip it to save time.
CASES = [
    (runtime, algorithm, scenario)
    for runtime in RUNTIMES
    for algorithm in ALGORITHMS
    for scenario in SCENARIOS
    if runtime != GROUPED or scenario == "mlp-full"
]


@pytest.mark.parametrize(("runtime", "algorithm", "scenario"), CASES)
def test_runtime_matches_plain_reference_loop(algorithm: str, scenario: str, runtime: str) -> None:
    expected = reference(algorithm, scenario)
    got = simulated(algorithm, scenario, runtime)
    assert got.shape == expected.shape
    # training moved the model, so agreement is not agreement of two untouched inits
    assert (expected - _init_params(scenario)).abs().max() > 1e-3
    torch.testing.assert_close(got, expected, atol=TOL, rtol=TOL)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_setup_is_not_vacuous(scenario: str) -> None:
    """The batched runtime really stacks clients, and clients take different step counts."""
    cfg = config("fedavg", scenario, "batched")
    net = Network.from_config(cfg.model, D)
    t = cfg.training
    for r in range(ROUNDS):
        n_sampled = len(sample_clients(len(SIZES), t.client_fraction, cfg.seed, r))
        assert group_size(cfg, net, n_sampled) == n_sampled > 1
        assert group_size(config("fedavg", scenario, "loop"), net, n_sampled) == 1
        capped = group_size(config("fedavg", scenario, GROUPED), net, n_sampled)
        assert capped == min(4, n_sampled)
        if scenario == "mlp-full":
            assert capped < n_sampled  # really several groups
    steps = {local_step_count(n, t.batch_size, t.local_epochs, t.local_steps) for n in SIZES}
    assert len(steps) > 2
    assert any(n % t.batch_size for n in SIZES)  # partial last batches
    if t.client_fraction < 1:
        rounds = [tuple(sample_clients(len(SIZES), t.client_fraction, cfg.seed, r)) for r in (0, 1)]
        assert len(rounds[0]) < len(SIZES) and rounds[0] != rounds[1]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_algorithms_give_different_models(scenario: str) -> None:
    models = {name: simulated(name, scenario, "batched") for name in ALGORITHMS}
    for (a, pa), (b, pb) in itertools.combinations(models.items(), 2):
        assert (pa - pb).abs().max() > 10 * TOL, f"{a} and {b} gave the same model"


def test_dropout_batched_matches_loop() -> None:
    """With dropout the model must still not depend on how clients are grouped."""
    drop = {"dropout": 0.3}
    batched = _run(config("fedavg", "mlp-full", "batched", drop))
    looped = _run(config("fedavg", "mlp-full", "loop", drop))
    torch.testing.assert_close(batched, looped, atol=TOL, rtol=TOL)
