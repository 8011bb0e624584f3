"""Participant-level DP-FedAvg: clipping, the noisy uniform mean, and the runtime hook."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from dp_settings import settings

from fedmetamal import api
from fedmetamal.config import build_config
from fedmetamal.errors import ConfigError
from fedmetamal.privacy import DPAggregator, PrivacyAccountant, clip_rows, dp_mean
from fedmetamal.sim.round_privacy import RoundPrivacy

# ---- mechanism ------------------------------------------------------------------------------


def test_clipping_bounds_long_rows_and_keeps_short_ones() -> None:
    g = torch.Generator().manual_seed(0)
    d = torch.randn(50, 40, generator=g) * torch.linspace(0.01, 2.0, 50).unsqueeze(1)
    clip = 1.5
    out = clip_rows(d, clip)
    norms = d.norm(dim=1)
    assert bool((out.norm(dim=1) <= clip * (1 + 1e-6)).all())
    short = norms <= clip
    assert short.any() and (~short).any()
    assert torch.equal(out[short], d[short])
    long_dir = out[~short] / out[~short].norm(dim=1, keepdim=True)
    assert torch.allclose(long_dir, d[~short] / norms[~short].unsqueeze(1), atol=1e-6)
    assert torch.equal(clip_rows(torch.zeros(2, 3), clip), torch.zeros(2, 3))


def test_without_noise_it_is_the_uniform_mean_of_clipped_deltas() -> None:
    d = torch.randn(7, 30, generator=torch.Generator().manual_seed(1)) * 3
    weights = torch.arange(1.0, 8.0)  # ignored: sample counts would leak
    agg = DPAggregator(0.8, 0.0)
    assert torch.equal(agg(d, weights), clip_rows(d, 0.8).sum(0) / 7)
    assert not agg.is_mean


def test_noise_std_is_z_clip_over_m_and_deterministic() -> None:
    m, p, clip, z = 8, 200_000, 0.5, 1.3
    d = torch.randn(m, p, generator=torch.Generator().manual_seed(2))
    clean = clip_rows(d, clip).sum(0) / m

    def gen() -> torch.Generator:
        return torch.Generator().manual_seed(42)

    agg = DPAggregator(clip, z, gen)
    noisy = agg(d, torch.ones(m))
    noise = noisy - clean
    assert float(noise.std()) == pytest.approx(z * clip / m, rel=0.01)
    assert abs(float(noise.mean())) < 5 * z * clip / m / p**0.5
    assert torch.equal(agg(d, torch.ones(m)), noisy)
    other = dp_mean(d, clip, z, torch.Generator().manual_seed(43))
    assert not torch.equal(other, noisy)


# ---- runtime ------------------------------------------------------------------------------


def test_participant_dp_runs_and_reports_growing_epsilon() -> None:
    cfg = settings({"mode": "participant", "noise_multiplier": 1.0, "clip": 0.5})
    result = api.simulate(cfg, write_outputs=False)
    eps = [rec.epsilon for rec in result.history]
    assert all(e is not None and e > 0 for e in eps)
    assert eps == sorted(eps) and eps[0] < eps[-1]  # type: ignore[type-var]
    assert result.final_metrics["epsilon"] == pytest.approx(eps[-1])
    assert result.final_metrics["delta"] == 1e-5
    acc = PrivacyAccountant("rdp")
    acc.step(1.0, 1.0, steps=3)  # all 10 of 10 clients each round: q = 1
    assert eps[-1] == pytest.approx(acc.epsilon(1e-5))
    plain = api.simulate(settings(), write_outputs=False)
    assert not torch.equal(plain.params, result.params)
    again = api.simulate(cfg, write_outputs=False)
    assert torch.equal(again.params, result.params)  # noise is deterministic per seed
    assert all(rec.epsilon is None for rec in plain.history)


def test_target_epsilon_sets_noise_and_checkpoint_keeps_history(tmp_path: Any) -> None:
    from fedmetamal.models.checkpoint import load_checkpoint

    data = settings(
        {"mode": "participant", "target_epsilon": 4.0},
        training={"rounds": 2, "client_lr": 0.3, "client_fraction": 0.5},
        output={"dir": str(tmp_path), "onnx": False, "checkpoint": True},
    )
    result = api.simulate(data)
    priv = result.simulation.privacy
    assert priv is not None and priv.sample_rate == 0.5
    assert result.history[-1].epsilon == pytest.approx(4.0, rel=0.02)
    assert result.run_dir is not None
    ckpt = load_checkpoint(result.run_dir / "model.safetensors")
    meta = ckpt.metadata["privacy"]
    assert meta["history"] == [[priv.noise_multiplier, 0.5, 2]]
    assert meta["epsilon"] == pytest.approx(result.history[-1].epsilon)


def test_mode_none_is_bit_identical_to_no_privacy_section() -> None:
    a = api.simulate(settings(), write_outputs=False)
    b = api.simulate(settings({"mode": "none", "noise_multiplier": 3.0}), write_outputs=False)
    assert torch.equal(a.params, b.params)
    assert b.simulation.privacy is None


# ---- bad settings ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "privacy",
    [
        {"mode": "participant"},
        {"mode": "participant", "noise_multiplier": 1.0, "target_epsilon": 3.0},
    ],
)
def test_exactly_one_noise_setting(privacy: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="exactly one of"):
        build_config(settings(privacy))


def test_non_positive_clip_is_rejected() -> None:
    with pytest.raises(ConfigError, match=r"privacy\.clip"):
        build_config(settings({"mode": "participant", "noise_multiplier": 1.0, "clip": 0.0}))


def refused(data: dict[str, Any], match: str) -> None:
    stages: list[str] = []
    with pytest.raises(ConfigError, match=match):
        api.simulate(data, write_outputs=False, on_stage=stages.append)
    assert "training" not in stages


def test_budget_below_predicted_epsilon_refuses_to_start() -> None:
    refused(
        settings({"mode": "participant", "noise_multiplier": 0.5, "epsilon_budget": 1.0}),
        "epsilon_budget",
    )


def test_unreachable_target_refuses_to_start() -> None:
    refused(settings({"mode": "participant", "target_epsilon": 1e-6}), "target_epsilon")


def test_robust_aggregation_with_dp_refuses_to_start() -> None:
    data = settings({"mode": "participant", "noise_multiplier": 1.0})
    data["aggregation"] = {"kind": "median"}
    refused(data, "aggregation.kind 'median'")


@pytest.mark.parametrize(("name", "match"), [("scaffold", "control"), ("fednova", "FedNova")])
def test_algorithms_outside_the_analysis_are_refused(name: str, match: str) -> None:
    data = settings({"mode": "participant", "noise_multiplier": 1.0})
    data["algorithm"] = {"name": name}
    refused(data, match)


@pytest.mark.parametrize("name", ["fedprox", "fedadam"])
def test_other_mean_algorithms_run_with_dp(name: str) -> None:
    data = settings({"mode": "participant", "noise_multiplier": 0.5})
    data["algorithm"] = {"name": name}
    data["training"] = {"rounds": 2, "client_lr": 0.3}
    result = api.simulate(data, write_outputs=False)
    assert result.history[-1].epsilon is not None


def test_budget_stops_cleanly_between_rounds() -> None:
    from fedmetamal.privacy import PrivacyBudgetError

    cfg = build_config(settings({"mode": "participant", "noise_multiplier": 1.0}))
    fed = api.build_federation(cfg)
    from fedmetamal.data.preprocess import preprocess_federation
    from fedmetamal.sim.runtime import Simulation

    fed, _ = preprocess_federation(fed, cfg.preprocess)
    sim = Simulation(cfg, fed)
    assert isinstance(sim.privacy, RoundPrivacy)
    sim.run_round()
    sim.privacy.cfg = sim.privacy.cfg.model_copy(update={"epsilon_budget": 1e-3})
    with pytest.raises(PrivacyBudgetError, match="epsilon_budget"):
        sim.run_round()
    assert sim.state.round == 1


def test_divergence_under_dp_names_the_noise() -> None:
    """With DP the usual cause of divergence is the noise, and the message says what to do."""
    from fedmetamal.errors import TrainingDivergedError

    huge = settings({"mode": "participant", "noise_multiplier": 1e30})
    with pytest.raises(TrainingDivergedError, match="DP noise"):
        api.simulate(build_config(huge), write_outputs=False)
