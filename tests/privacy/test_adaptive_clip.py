"""Adaptive quantile clipping (Andrew et al. 2021): the clip update, the noise split, the hook."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from dp_settings import settings

from fedmetamal import api
from fedmetamal.config import build_config
from fedmetamal.errors import ConfigError
from fedmetamal.privacy import PrivacyAccountant, adjusted_noise_multiplier, update_clip

# ---- pure functions -------------------------------------------------------------------------


def test_adjusted_noise_multiplier_formula() -> None:
    z, sigma_b = 1.0, 2.0
    expected = (z**-2 - (2 * sigma_b) ** -2) ** -0.5
    assert adjusted_noise_multiplier(z, sigma_b) == pytest.approx(expected)
    assert adjusted_noise_multiplier(z, sigma_b) > z  # the count takes a share of the privacy
    assert adjusted_noise_multiplier(0.5, 0.0) == 0.5
    assert adjusted_noise_multiplier(0.0, 1.0) == 0.0
    # large sigma_b: the count costs almost nothing
    assert adjusted_noise_multiplier(z, 1e6) == pytest.approx(z, rel=1e-9)


@pytest.mark.parametrize("sigma_b", [0.5, 0.4, 0.1])
def test_count_noise_too_small_is_refused(sigma_b: float) -> None:
    with pytest.raises(ConfigError, match=r"clip_count_stddev .* too small"):
        adjusted_noise_multiplier(1.0, sigma_b)


def test_all_unclipped_shrinks_and_all_clipped_grows_exactly() -> None:
    eta, gamma, clip = 0.2, 0.3, 1.5
    low = torch.full((8,), 0.5)
    high = torch.full((8,), 3.0)
    down, frac = update_clip(clip, low, gamma, eta, 0.0)
    assert frac == 1.0
    assert down == pytest.approx(clip * math.exp(-eta * (1 - gamma)), rel=1e-12)
    up, frac = update_clip(clip, high, gamma, eta, 0.0)
    assert frac == 0.0
    assert up == pytest.approx(clip * math.exp(eta * gamma), rel=1e-12)


def test_clip_converges_to_the_target_quantile() -> None:
    g = torch.Generator().manual_seed(0)
    clip = 0.1
    for _ in range(200):
        norms = torch.rand(100, generator=g) * 2.0  # U(0, 2): median 1
        clip, _ = update_clip(clip, norms, 0.5, 0.2, 0.0)
    assert clip == pytest.approx(1.0, rel=0.1)
    clip = 5.0
    for _ in range(200):
        norms = torch.rand(100, generator=g) * 2.0  # 0.8 quantile: 1.6
        clip, _ = update_clip(clip, norms, 0.8, 0.2, 0.0)
    assert clip == pytest.approx(1.6, rel=0.1)


def test_count_noise_is_deterministic_per_generator() -> None:
    norms = torch.linspace(0.0, 2.0, 10)

    def step(seed: int) -> tuple[float, float]:
        return update_clip(1.0, norms, 0.5, 0.2, 0.5, torch.Generator().manual_seed(seed))

    assert step(1) == step(1)
    assert step(1) != step(2)
    assert update_clip(1.0, torch.empty(0), 0.5, 0.2, 0.5)[0] == 1.0


# ---- runtime ------------------------------------------------------------------------------


ADAPTIVE = {"mode": "participant", "noise_multiplier": 0.5, "adaptive_clip": True}


def test_adaptive_clip_runs_and_records_a_moving_clip() -> None:
    data = settings(ADAPTIVE, training={"rounds": 4, "client_lr": 0.3})
    result = api.simulate(data, write_outputs=False)
    clips = [rec.metrics["clip"] for rec in result.history if rec.metrics is not None]
    assert len(clips) == 4 and clips[0] == 1.0
    assert len(set(clips)) == 4  # it moves every round
    priv = result.simulation.privacy
    assert priv is not None
    assert priv.count_stddev == pytest.approx(10 / 20)  # m / 20, all 10 clients per round
    assert priv.sum_multiplier == pytest.approx(adjusted_noise_multiplier(0.5, 0.5))
    assert priv.aggregator.noise_multiplier == priv.sum_multiplier
    acc = PrivacyAccountant("rdp")
    acc.step(0.5, 1.0, steps=4)  # accounted at z, not z_delta
    assert result.history[-1].epsilon == pytest.approx(acc.epsilon(1e-5))
    again = api.simulate(data, write_outputs=False)
    assert torch.equal(again.params, result.params)
    assert [r.metrics["clip"] for r in again.history if r.metrics] == clips
    meta = priv.metadata()["adaptive_clip"]
    assert meta["clip"] == priv.aggregator.clip and meta["target_quantile"] == 0.5


def test_adaptive_off_is_bit_identical_to_config_without_the_fields() -> None:
    base = {"mode": "participant", "noise_multiplier": 0.5}
    off = {**base, "adaptive_clip": False, "target_quantile": 0.2, "clip_lr": 0.9}
    a = api.simulate(settings(base), write_outputs=False)
    b = api.simulate(settings(off), write_outputs=False)
    assert torch.equal(a.params, b.params)
    assert all(r.metrics is not None and "clip" not in r.metrics for r in b.history)
    assert "adaptive_clip" not in b.simulation.privacy.metadata()  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "extra", [{"noise_multiplier": 2.0}, {"noise_multiplier": 0.5, "clip_count_stddev": 0.2}]
)
def test_too_little_count_noise_refuses_to_start(extra: dict[str, Any]) -> None:
    stages: list[str] = []
    data = settings({**ADAPTIVE, **extra})
    with pytest.raises(ConfigError, match="clip_count_stddev"):
        api.simulate(data, write_outputs=False, on_stage=stages.append)
    assert "training" not in stages


@pytest.mark.parametrize(
    "bad", [{"target_quantile": 0.0}, {"target_quantile": 1.0}, {"clip_lr": 0.0}]
)
def test_bad_adaptive_settings_are_rejected(bad: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        build_config(settings({**ADAPTIVE, **bad}))
