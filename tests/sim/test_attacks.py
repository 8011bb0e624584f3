"""Attacks: who is malicious, what their data and updates become, and what evaluation reports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from fedmetamal.api import simulate
from fedmetamal.config import AttackConfig, build_config
from fedmetamal.data.dataset import Dataset
from fedmetamal.data.federation import ClientData, Federation
from fedmetamal.errors import ConfigError
from fedmetamal.sim.attacks import (
    ATTACK_METRIC_NAMES,
    Attack,
    alie_z,
    attack_deltas,
    malicious_clients,
)
from fedmetamal.sim.runtime import Simulation


def _cfg(attack: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "seed": 3,
        "dataset": {"source": "synthetic", "synthetic": {"n_samples": 1500, "n_features": 32}},
        "partition": {"clients": 6},
        "model": {"hidden": [16]},
        "training": {"rounds": 3, "client_lr": 0.3, "local_epochs": 10},
        "evaluation": {"per_client": False},
        "output": {"onnx": False, "checkpoint": False},
        **extra,
    }
    if attack is not None:
        cfg["attack"] = attack
    return cfg


def _dataset(rng: np.random.Generator, n: int, d: int = 8) -> Dataset:
    X = rng.normal(size=(n, d)).astype(np.float32)
    y = (X[:, 0] + 0.3 * rng.normal(size=n) > 0).astype(np.int8)
    return Dataset(X, y, [f"f{i}" for i in range(d)])


@pytest.fixture(scope="module")
def fed() -> Federation:
    rng = np.random.default_rng(5)
    sizes = [40, 64, 30, 51, 70, 45, 38, 60]
    clients = [ClientData(i, _dataset(rng, n), _dataset(rng, 10)) for i, n in enumerate(sizes)]
    return Federation(clients, _dataset(rng, 200))


@pytest.fixture(scope="module")
def clean() -> Any:
    return simulate(_cfg(), write_outputs=False)


def test_malicious_ids_are_seeded_and_counted() -> None:
    cfg = AttackConfig(kind="sign-flip", fraction=0.3)
    ids = malicious_clients(10, cfg, seed=1)
    assert len(ids) == 3 and len(set(ids.tolist())) == 3
    assert np.array_equal(ids, malicious_clients(10, cfg, seed=1))
    assert all(0 <= i < 10 for i in ids) and np.all(np.diff(ids) > 0)
    assert len(malicious_clients(10, AttackConfig(kind="none", fraction=0.3), 1)) == 0
    assert len(malicious_clients(5, AttackConfig(kind="scale", fraction=0.05), 1)) == 1
    draws = {tuple(malicious_clients(10, cfg, seed=s).tolist()) for s in range(6)}
    assert len(draws) > 1


def test_label_flip_changes_exactly_the_malicious_labels(fed: Federation) -> None:
    attack = Attack(AttackConfig(kind="label-flip", fraction=0.25), fed, seed=0)
    poisoned = attack.poison(fed)
    assert len(attack.malicious) == 2
    for c, p in zip(fed.clients, poisoned.clients, strict=True):
        np.testing.assert_array_equal(c.train.X, p.train.X)
        if c.client_id in attack.malicious:
            np.testing.assert_array_equal(p.train.y, 1 - c.train.y)
        else:
            np.testing.assert_array_equal(p.train.y, c.train.y)
        np.testing.assert_array_equal(p.test.y, c.test.y)
    np.testing.assert_array_equal(poisoned.test.y, fed.test.y)


def test_backdoor_adds_triggered_benign_copies(fed: Federation) -> None:
    cfg = AttackConfig(kind="backdoor", fraction=0.25, trigger_features=2, trigger_value=4.0)
    attack = Attack(cfg, fed, seed=0)
    poisoned = attack.poison(fed)
    assert attack.features is not None and len(attack.features) == 2
    for c, p in zip(fed.clients, poisoned.clients, strict=True):
        if c.client_id not in attack.malicious:
            assert p is c
            continue
        n, m = c.n_train, int((c.train.y == 1).sum())
        assert p.n_train == n + m
        assert np.all(p.train.y[n:] == 0)
        assert np.all(p.train.X[n:][:, attack.features] == 4.0)
    probe = attack.probe(fed.test)
    assert probe is not None and len(probe) == int((fed.test.y == 1).sum())


def _delta_case() -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    delta = torch.randn(6, 20, generator=torch.Generator().manual_seed(0))
    clients = np.array([0, 2, 3, 5, 7, 9])
    rows = np.array([1, 4])
    return delta, clients, rows


@pytest.mark.parametrize("kind", ["sign-flip", "scale", "gaussian", "alie"])
def test_update_attacks_touch_only_malicious_rows(kind: str) -> None:
    delta, clients, rows = _delta_case()
    cfg = AttackConfig(kind=kind, scale=3.0, noise_std=0.5)
    out = delta.clone()
    attack_deltas(out, rows, cfg, seed=1, round_index=2, clients=clients)
    honest = np.setdiff1d(np.arange(6), rows)
    torch.testing.assert_close(out[honest], delta[honest], rtol=0, atol=0)
    bad = out[rows]
    if kind == "sign-flip":
        torch.testing.assert_close(bad, -delta[rows])
    elif kind == "scale":
        torch.testing.assert_close(bad, 3.0 * delta[rows])
    elif kind == "gaussian":
        again = delta.clone()
        attack_deltas(again, rows, cfg, seed=1, round_index=2, clients=clients)
        torch.testing.assert_close(again, out, rtol=0, atol=0)
        assert not torch.allclose(bad[0], bad[1])
        assert 0.2 < float(bad.std()) < 1.0
    else:
        z = alie_z(6, 2)  # s = 4 - 2 = 2, z = Phi^-1(4/6)
        assert z == pytest.approx(0.4307, abs=1e-3)
        want = delta.mean(0) - z * delta.std(0, correction=0)
        torch.testing.assert_close(bad, want.expand(2, -1))


@pytest.mark.parametrize("kind", ["gaussian", "alie", "backdoor"])
def test_attacks_are_the_same_batched_or_looped(fed: Federation, kind: str) -> None:
    params = {}
    for strategy in ("batched", "loop"):
        cfg = build_config(
            {
                "training": {"rounds": 2, "batch_size": 16, "client_fraction": 0.75},
                "model": {"hidden": [8]},
                "runtime": {"strategy": strategy},
                "evaluation": {"per_client": False},
                "attack": {"kind": kind, "fraction": 0.3, "trigger_features": 2},
            }
        )
        sim = Simulation(cfg, fed)
        sim.run()
        params[strategy] = sim.state.params
    torch.testing.assert_close(params["batched"], params["loop"], atol=1e-5, rtol=1e-5)


def test_attack_none_is_a_no_op(fed: Federation, clean: Any) -> None:
    again = simulate(_cfg({"kind": "none", "fraction": 0.5}), write_outputs=False)
    torch.testing.assert_close(again.params, clean.params, rtol=0, atol=0)
    assert again.simulation.malicious == []
    assert again.simulation.evaluator.probe is None
    assert not set(ATTACK_METRIC_NAMES) & set(clean.final_metrics)
    attack = Attack(AttackConfig(), fed, seed=0)
    assert attack.poison(fed) is fed


def test_sign_flip_hurts(clean: Any) -> None:
    bad = simulate(_cfg({"kind": "sign-flip", "fraction": 0.3}), write_outputs=False)
    assert len(bad.simulation.malicious) == 2
    assert not torch.equal(bad.params, clean.params)
    assert bad.final_metrics["roc_auc"] < clean.final_metrics["roc_auc"] - 0.05


def test_backdoor_success_rate(clean: Any, tmp_path: Path) -> None:
    attack = {"kind": "backdoor", "fraction": 0.5, "trigger_features": 3, "trigger_value": 6.0}
    cfg = _cfg(attack, output={"dir": str(tmp_path), "name": "bd", "onnx": False})
    cfg["output"]["checkpoint"] = False
    bd = simulate(cfg)
    asr = bd.final_metrics["attack_success_rate"]
    assert 0.0 <= asr <= 1.0
    sim = bd.simulation
    clean_asr = sim.evaluator.global_metrics(sim.network, clean.params.to(sim.device))
    assert clean_asr is not None
    assert asr > clean_asr["attack_success_rate"] + 0.3
    rows = [
        json.loads(line) for line in (tmp_path / "bd" / "metrics.jsonl").read_text().splitlines()
    ]
    assert all("test_attack_success_rate" in r for r in rows)
    assert "test_attack_success_rate" in (tmp_path / "bd" / "metrics.csv").read_text()


def test_targeted_flip_reports_target_family() -> None:
    res = simulate(_cfg({"kind": "targeted-flip", "fraction": 0.3}), write_outputs=False)
    assert res.simulation.attack.family is not None
    assert 0.0 <= res.final_metrics["attack_success_rate"] <= 1.0


def test_unknown_target_family_fails_before_training() -> None:
    stages: list[str] = []
    with pytest.raises(ConfigError, match="target_family"):
        simulate(
            _cfg({"kind": "targeted-flip", "target_family": "no-such-family"}),
            write_outputs=False,
            on_stage=stages.append,
        )
    assert "training" not in stages


def test_target_family_needs_metadata(fed: Federation) -> None:
    with pytest.raises(ConfigError, match="metadata"):
        Attack(AttackConfig(kind="targeted-flip", target_family="x"), fed, seed=0)
    default = Attack(AttackConfig(kind="targeted-flip", fraction=0.25), fed, seed=0)
    assert default.family is None and default.probe(fed.test) is None
    poisoned = default.poison(fed)
    for i in default.malicious:
        assert not (poisoned.clients[i].train.y == 1).any()
