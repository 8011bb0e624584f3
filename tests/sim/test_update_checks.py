"""Update validation: malformed and absurd client updates are excluded, with the reason, before
they reach the aggregate, and training still finishes with a finite model."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from fedmetamal import api
from fedmetamal.config import AttackConfig
from fedmetamal.errors import TrainingDivergedError
from fedmetamal.fl.aggregate import Aggregator, weighted_mean
from fedmetamal.fl.base import ClientOutput
from fedmetamal.sim.attacks import attack_deltas
from fedmetamal.sim.update_checks import check_updates, select_rows

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "privacy"))
from dp_settings import settings


def test_check_updates_names_each_bad_row_and_why() -> None:
    delta = torch.ones(5, 4)
    delta[1, 2] = float("nan")
    delta[3, 0] = float("inf")
    delta[4] *= 100.0  # norm 200
    clients = np.array([10, 11, 12, 13, 14])
    check = check_updates(delta, clients, max_norm=50.0)
    assert check.keep.tolist() == [0, 2]
    assert set(check.excluded) == {11, 13, 14}
    assert "1 NaN" in check.excluded[11] and "1 inf" in check.excluded[13]
    assert "max_update_norm" in check.excluded[14] and check.non_finite == 2
    assert check_updates(delta[[0, 2, 4]], clients[[0, 2, 4]]).all_pass  # no norm bound
    skip = np.array([False, True, False, False, True])  # rows whose checks never ran
    partial = check_updates(delta, clients, max_norm=50.0, unchecked=skip)
    assert partial.keep.tolist() == [0, 1, 2, 4] and set(partial.excluded) == {13}
    assert partial.non_finite == 1


def test_select_rows_keeps_outputs_aligned() -> None:
    out = ClientOutput(
        torch.arange(12.0).view(4, 3),
        torch.tensor([1.0, 2.0, 3.0, 4.0]),
        torch.tensor([5, 6, 7, 8]),
        torch.tensor([0.1, 0.2, 0.3, 0.4]),
        {"c": torch.arange(8.0).view(4, 2)},
    )
    sub = select_rows(out, np.array([1, 3]))
    assert sub.delta.tolist() == [[3.0, 4.0, 5.0], [9.0, 10.0, 11.0]]
    assert sub.num_samples.tolist() == [2.0, 4.0] and sub.steps.tolist() == [6, 8]
    assert sub.extras["c"].tolist() == [[2.0, 3.0], [6.0, 7.0]]


def test_malformed_attack_writes_nan_and_inf_deterministically() -> None:
    cfg = AttackConfig(kind="malformed", fraction=0.2)
    runs = []
    for _ in range(2):
        delta = torch.zeros(4, 300)
        attack_deltas(delta, np.array([1, 3]), cfg, 0, 2, np.array([7, 8, 9, 10]))
        runs.append(delta)
    assert torch.equal(runs[0].isnan(), runs[1].isnan())
    for row in (1, 3):
        assert int(runs[0][row].isnan().sum()) >= 1 and int(runs[0][row].isinf().sum()) >= 1
    assert bool(torch.isfinite(runs[0][[0, 2]]).all())


def malformed(**extra: Any) -> dict[str, Any]:
    return settings(attack={"kind": "malformed", "fraction": 0.2}, **extra)


def test_malformed_updates_are_excluded_and_training_finishes() -> None:
    res = api.simulate(malformed(), write_outputs=False)
    bad = set(res.simulation.malicious)
    assert len(bad) == 2
    for rec in res.history:
        assert rec.skipped is None
        assert rec.excluded is not None and set(rec.excluded) == bad
        assert all("non-finite" in why for why in rec.excluded.values())
    assert bool(torch.isfinite(res.params).all())
    assert np.isfinite(res.final_metrics["loss"])


def test_only_the_honest_rows_reach_the_aggregator(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    original = Aggregator.__call__

    def spy(self: Aggregator, deltas: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        seen.append((deltas.clone(), weights.clone()))
        return original(self, deltas, weights)

    monkeypatch.setattr(Aggregator, "__call__", spy)
    res = api.simulate(malformed(training={"rounds": 1, "client_lr": 0.3}), write_outputs=False)
    sim = res.simulation
    honest = [c for c in range(10) if c not in set(sim.malicious)]
    ((deltas, weights),) = seen
    assert deltas.shape[0] == len(honest) == 8 and bool(torch.isfinite(deltas).all())
    assert weights.tolist() == sim.store.sizes[honest].astype(float).tolist()
    init = sim.network.init(torch.Generator().manual_seed(5))
    torch.testing.assert_close(res.params, init + weighted_mean(deltas, weights))


def test_norm_bound_excludes_scaled_updates() -> None:
    data = settings(
        attack={"kind": "scale", "fraction": 0.1, "scale": 1e4},
        aggregation={"max_update_norm": 5.0},
    )
    res = api.simulate(data, write_outputs=False)
    for rec in res.history:
        assert rec.excluded is not None and len(rec.excluded) == 1
        assert "max_update_norm" in next(iter(rec.excluded.values()))
    assert bool(torch.isfinite(res.params).all())


def test_under_secagg_malformed_uploads_are_excluded_by_the_server() -> None:
    """Malicious clients skip their own checks; their masked vectors are malformed and the
    protocol's server excludes them, with the reason, and the rounds complete."""
    res = api.simulate(malformed(secagg={"enabled": True}), write_outputs=False)
    bad = set(res.simulation.malicious)
    for rec in res.history:
        assert rec.excluded is None and rec.skipped is None  # validation never saw them
        assert rec.secagg is not None and set(rec.secagg["excluded"]) == bad
        assert all("dtype" in why for why in rec.secagg["excluded"].values())
        assert rec.secagg["survivors"] == 8
    assert bool(torch.isfinite(res.params).all())


def test_under_secagg_the_norm_bound_cannot_stop_a_malicious_client() -> None:
    """The server cannot check a masked row: a scaling attacker passes (its coordinates are
    only cut to secagg.range by the encoding), while honest rows are still checked."""
    data = settings(
        attack={"kind": "scale", "fraction": 0.1, "scale": 1e4},
        aggregation={"max_update_norm": 5.0},
        secagg={"enabled": True},
    )
    res = api.simulate(data, write_outputs=False)
    for rec in res.history:
        assert rec.excluded is None
        assert rec.secagg is not None and rec.secagg["clipped_coordinates"] > 0
        assert rec.secagg["survivors"] == 10


def test_every_client_non_finite_is_divergence_not_an_attack() -> None:
    with pytest.raises(TrainingDivergedError, match="client_lr"):
        api.simulate(settings(training={"rounds": 2, "client_lr": 1e30}), write_outputs=False)


def test_too_few_valid_updates_skip_the_round() -> None:
    # bulyan needs 4f + 3 updates; the 8 malformed use up f = 1, so f = 0 remains and 3 are
    # needed, but 10 - 8 leaves 2
    data = settings(
        attack={"kind": "malformed", "fraction": 0.8},
        aggregation={"kind": "bulyan", "byzantine": 1},
    )
    res = api.simulate(data, write_outputs=False)
    init = res.simulation.network.init(torch.Generator().manual_seed(5))
    for rec in res.history:
        assert rec.skipped is not None and "needs 3" in rec.skipped
    assert torch.equal(res.params, init)  # never moved


def test_excluded_updates_count_against_the_tolerated_attackers() -> None:
    # 20 clients, 4 malformed: Bulyan was set up for f = 4 (20 >= 4f + 3); after validation
    # drops the 4, none of the 16 left needs tolerating, so the rule runs instead of skipping
    data = settings(attack={"kind": "malformed", "fraction": 0.2}, aggregation={"kind": "bulyan"})
    data["partition"] = {"clients": 20}
    res = api.simulate(data, write_outputs=False)
    for rec in res.history:
        assert rec.skipped is None and rec.excluded is not None and len(rec.excluded) == 4
    honest = api.simulate({**data, "attack": {"kind": "none"}}, write_outputs=False)
    init = res.simulation.network.init(torch.Generator().manual_seed(5))
    assert not torch.equal(res.params, init) and bool(torch.isfinite(res.params).all())
    assert res.final_metrics["roc_auc"] > honest.final_metrics["roc_auc"] - 0.05
