"""The simulation runtime: batching is exact, runs are deterministic, divergence is caught."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fedmetamal.config import build_config
from fedmetamal.data.dataset import Dataset
from fedmetamal.data.federation import ClientData, Federation
from fedmetamal.errors import TrainingDivergedError
from fedmetamal.fl.registry import ALGORITHMS
from fedmetamal.sim.runtime import Simulation, group_size


def _dataset(rng: np.random.Generator, n: int, d: int = 10) -> Dataset:
    X = rng.normal(size=(n, d)).astype(np.float32)
    y = (X[:, 0] + 0.5 * X[:, 1] * X[:, 2] + 0.3 * rng.normal(size=n) > 0).astype(np.int8)
    return Dataset(X, y, [f"f{i}" for i in range(d)])


@pytest.fixture(scope="module")
def fed() -> Federation:
    rng = np.random.default_rng(7)
    sizes = [23, 64, 90, 41, 130, 57, 75]
    clients = [ClientData(i, _dataset(rng, n), _dataset(rng, 15)) for i, n in enumerate(sizes)]
    return Federation(clients, _dataset(rng, 300))


def _cfg(algorithm: str, strategy: str, **training: object) -> object:
    t = {"rounds": 3, "batch_size": 16, "client_lr": 0.1, "client_fraction": 0.7, **training}
    return build_config(
        {
            "algorithm": {"name": algorithm},
            "training": t,
            "model": {"hidden": [16, 8]},
            "runtime": {"strategy": strategy},
            "evaluation": {"per_client": False},
        }
    )


@pytest.mark.parametrize("algorithm", list(ALGORITHMS))
def test_batched_equals_loop(fed: Federation, algorithm: str) -> None:
    extra = {"client_momentum": 0.5} if algorithm in ("fednova", "fedavgm") else {}
    results = {}
    for strategy in ("batched", "loop"):
        sim = Simulation(_cfg(algorithm, strategy, **extra), fed)
        sim.run()
        results[strategy] = sim.state.params
    torch.testing.assert_close(results["batched"], results["loop"], atol=1e-5, rtol=1e-5)


def test_batched_strategy_really_batches(fed: Federation) -> None:
    sim = Simulation(_cfg("fedavg", "batched"), fed)
    assert group_size(sim.cfg, sim.network, 5) == 5
    assert group_size(_cfg("fedavg", "loop"), sim.network, 5) == 1
    capped = build_config({"runtime": {"max_batched_clients": 2}})
    assert group_size(capped, sim.network, 5) == 2


def test_auto_groups_for_the_cpu() -> None:
    from fedmetamal.models.networks import Network

    wide, small = Network(2568, (256, 64)), Network(55, (64, 64))

    def cfg(threads: int) -> object:
        return build_config(
            {"runtime": {"strategy": "auto", "threads": threads}, "training": {"batch_size": 64}}
        )

    assert 1 < group_size(cfg(2), wide, 100) < 100  # cache-sized groups
    assert group_size(cfg(1), wide, 100) == 1  # one thread: loop
    assert group_size(cfg(2), small, 100) == group_size(cfg(1), small, 100) == 100
    assert group_size(cfg(2), wide, 100, torch.device("cuda")) == 100


def test_same_seed_same_model_other_seed_other_model(fed: Federation) -> None:
    def run(seed: int) -> torch.Tensor:
        cfg = _cfg("fedavg", "batched", rounds=2)
        cfg.seed = seed
        sim = Simulation(cfg, fed)
        sim.run()
        return sim.state.params

    assert torch.equal(run(1), run(1))
    assert not torch.equal(run(1), run(2))


def test_training_learns(fed: Federation) -> None:
    cfg = _cfg("fedavg", "batched", rounds=10, client_fraction=1.0, client_lr=0.3)
    history = Simulation(cfg, fed).run()
    assert history[-1].metrics is not None
    assert history[-1].metrics["roc_auc"] > 0.8
    assert history[-1].train_loss < history[0].train_loss


def test_local_steps_override_epochs(fed: Federation) -> None:
    sim = Simulation(_cfg("fednova", "batched", local_steps=3, client_fraction=1.0), fed)
    sizes = sim.store.step_counts(range(7), 16, 1.0, 3)
    assert sizes == [3] * 7


def test_divergence_is_reported(fed: Federation) -> None:
    sim = Simulation(_cfg("fedavg", "batched", client_lr=1e30), fed)
    with pytest.raises(TrainingDivergedError, match="client_lr"):
        sim.run()


def test_scaffold_keeps_client_state_between_rounds(fed: Federation) -> None:
    sim = Simulation(_cfg("scaffold", "batched", client_fraction=1.0), fed)
    sim.run_round()
    control = sim.state.client_state["control"]
    assert control.shape == (7, sim.network.num_params)
    assert bool((control.abs().sum(1) > 0).all())
    assert float(sim.state.server_state["control"].abs().sum()) > 0
