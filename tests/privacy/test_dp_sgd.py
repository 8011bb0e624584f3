"""Sample-level DP (DP-SGD at each participant): per-sample clipping, noise, Poisson batches,
per-participant accounting and the runtime hook."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from dp_settings import settings

from fedmetamal import api
from fedmetamal.config import build_config
from fedmetamal.errors import ConfigError
from fedmetamal.models.networks import Network
from fedmetamal.privacy import PrivacyAccountant
from fedmetamal.privacy.dp_sgd import (
    SampleDP,
    clipped_sum_mlp,
    clipped_sum_vmap,
    per_sample_grads,
    poisson_plan,
    private_gradient,
)
from fedmetamal.sim.sample_privacy import pareto_front

NETWORKS = [
    Network(12, (16, 8)),
    Network(12, (16, 8), "gelu", "layer"),
    Network(12, ()),
    Network(12, (6,), "tanh"),
]


Batch = tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor, torch.Tensor]


def _batch(net: Network, c: int = 3, b: int = 9, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    p = net.init(g).unsqueeze(0).repeat(c, 1) + 0.2 * torch.randn(c, net.num_params, generator=g)
    x = 2 * torch.randn(c, b, net.n_features, generator=g)
    y = (torch.rand(c, b, generator=g) > 0.4).float()
    mask = (torch.rand(c, b, generator=g) > 0.25).float()
    return net.spec.unflatten(p), x, y, mask


@pytest.mark.parametrize("net", NETWORKS, ids=lambda n: f"{n.hidden}-{n.norm}-{n.activation}")
def test_per_sample_grads_match_one_sample_at_a_time(net: Network) -> None:
    named, x, y, _ = _batch(net)
    grads = per_sample_grads(net, named, x, y)
    for c in (0, 2):
        for i in (0, 5):
            leaves = {k: v[c : c + 1].detach().clone().requires_grad_() for k, v in named.items()}
            logit = net.forward_named(leaves, x[c : c + 1, i : i + 1]).reshape(())
            loss = F.binary_cross_entropy_with_logits(logit, y[c, i])
            ref = torch.autograd.grad(loss, list(leaves.values()))
            for (k, _), r in zip(leaves.items(), ref, strict=True):
                torch.testing.assert_close(grads[k][c, i], r[0], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("net", NETWORKS, ids=lambda n: f"{n.hidden}-{n.norm}-{n.activation}")
@pytest.mark.parametrize("clip", [0.05, 1e6])
def test_norm_shortcut_equals_torch_func_clipped_sum(net: Network, clip: float) -> None:
    named, x, y, mask = _batch(net, seed=3)
    fast = clipped_sum_mlp(net, named, x, y, mask, clip)
    ref = clipped_sum_vmap(net, named, x, y, mask, clip)
    assert set(fast) == set(ref) == set(net.spec.names)
    for k in ref:
        torch.testing.assert_close(fast[k], ref[k], atol=1e-5, rtol=1e-4)


def test_each_sample_contributes_at_most_clip_and_unclipped_sum_is_the_gradient() -> None:
    net = NETWORKS[0]
    named, x, y, mask = _batch(net, seed=4)
    clip = 0.01
    grads = per_sample_grads(net, named, x, y)
    sq = sum(g.flatten(2).pow(2).sum(-1) for g in grads.values())
    assert isinstance(sq, torch.Tensor) and bool((sq.sqrt() > clip).all())  # all get clipped
    total = clipped_sum_mlp(net, named, x, y, mask, clip)
    norm = torch.sqrt(sum(v.flatten(1).pow(2).sum(1) for v in total.values()))
    assert bool((norm <= clip * mask.sum(1) * (1 + 1e-5)).all())
    # without clipping: the gradient of the summed loss of the real samples
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in named.items()}
    logits = net.forward_named(leaves, x)
    loss = (F.binary_cross_entropy_with_logits(logits, y, reduction="none") * mask).sum()
    ref = dict(zip(leaves, torch.autograd.grad(loss, list(leaves.values())), strict=True))
    big = clipped_sum_mlp(net, named, x, y, mask, 1e9)
    for k in ref:
        torch.testing.assert_close(big[k], ref[k], atol=1e-5, rtol=1e-4)


def test_noise_has_std_z_clip_over_batch_and_is_per_client_deterministic() -> None:
    net = Network(200, (500,))
    c, b = 2, 4
    named, x, y, _ = _batch(net, c, b)
    mask = torch.zeros(c, b)  # no real samples: the gradient is the noise alone
    z, clip, batch = 1.7, 0.4, 32.0

    def dp(seeds: list[int]) -> SampleDP:
        return SampleDP(clip, z, batch, [torch.Generator().manual_seed(s) for s in seeds])

    out = torch.empty(c, net.num_params)
    private_gradient(net, named, x, y, mask, dp([1, 2]), out)
    assert float(out.std()) == pytest.approx(z * clip / batch, rel=0.02)
    again = torch.empty(1, net.num_params)
    one = {k: v[1:] for k, v in named.items()}
    private_gradient(net, one, x[1:], y[1:], mask[1:], dp([2]), again)
    torch.testing.assert_close(again[0], out[1])  # client 1's noise, whatever its group


def test_poisson_plan_includes_each_row_at_rate_q() -> None:
    plan = poisson_plan(1000, 50, 400, torch.Generator().manual_seed(0))
    sizes = np.array([len(r) for r in plan])
    assert sizes.mean() == pytest.approx(50, rel=0.03)
    assert sizes.std() == pytest.approx((1000 * 0.05 * 0.95) ** 0.5, rel=0.15)
    counts = np.bincount(np.concatenate(plan), minlength=1000)
    assert counts.mean() == pytest.approx(20, rel=0.03)
    assert all(len(set(r)) == len(r) for r in plan)
    assert [len(r) for r in poisson_plan(10, 50, 3, torch.Generator())] == [10, 10, 10]


def test_pareto_front_keeps_only_undominated_points() -> None:
    pts = [(0.1, 5), (0.2, 5), (0.05, 50), (0.2, 3), (0.05, 10), (0.1, 40)]
    assert pareto_front(pts) == [(0.2, 5), (0.1, 40), (0.05, 50)]


# ---- runtime --------------------------------------------------------------------------------


def _run(privacy: dict, **extra: Any) -> api.SimulationResult:
    return api.simulate(build_config(settings(privacy, **extra)), write_outputs=False)


def test_sample_dp_run_reports_each_participants_reference_epsilon() -> None:
    res = _run({"mode": "sample", "noise_multiplier": 1.1, "clip": 1.0})
    sim = res.simulation
    assert sim.sample_dp is not None and sim.privacy is None
    sizes = sim.store.sizes
    t = res.config.training
    worst = 0.0
    for n in sizes:  # every client trains every round: (z, q = B / n, rounds * local steps)
        steps = t.rounds * int(np.ceil(t.local_epochs * np.ceil(n / t.batch_size)))
        acc = PrivacyAccountant.from_history([[1.1, min(1.0, t.batch_size / n), steps]])
        worst = max(worst, acc.epsilon(1e-5))
    assert res.history[-1].epsilon == pytest.approx(worst, rel=1e-9)
    assert res.final_metrics["epsilon"] == pytest.approx(worst, rel=1e-9)
    eps = [r.epsilon for r in res.history]
    assert eps == sorted(eps) and eps[0] > 0
    meta = sim.sample_dp.metadata()
    assert meta["sampling"] == "poisson" and len(meta["participants"]) == len(sizes)
    assert np.isfinite(res.final_metrics["roc_auc"])


def test_target_epsilon_is_met_and_grouping_does_not_change_the_model() -> None:
    privacy = {"mode": "sample", "target_epsilon": 3.0, "clip": 0.5}
    a = _run(privacy, runtime={"threads": 1, "strategy": "batched"})
    b = _run(privacy, runtime={"threads": 1, "strategy": "loop"})
    assert a.history[-1].epsilon == pytest.approx(3.0, abs=0.02)
    assert a.history[-1].epsilon <= 3.0 + 1e-9
    torch.testing.assert_close(a.params, b.params, atol=1e-5, rtol=1e-4)


def test_noise_changes_the_model_and_no_noise_means_no_guarantee() -> None:
    quiet = _run({"mode": "sample", "noise_multiplier": 0.0, "clip": 1e9})
    noisy = _run({"mode": "sample", "noise_multiplier": 2.0, "clip": 1e9})
    assert not torch.allclose(quiet.params, noisy.params)
    assert quiet.history[-1].epsilon == float("inf")


@pytest.mark.parametrize(
    ("privacy", "extra", "needle"),
    [
        ({"mode": "sample", "noise_multiplier": 0.3, "epsilon_budget": 1.0}, {}, "epsilon_budget"),
        ({"mode": "sample", "target_epsilon": 1e-4}, {}, "target_epsilon"),
        ({"mode": "sample", "noise_multiplier": 1.0}, {"model": {"dropout": 0.2}}, "dropout"),
        (
            {"mode": "sample", "noise_multiplier": 1.0},
            {"semi": {"scenario": "labels-at-clients", "method": "pseudo-label"}},
            "semi.method",
        ),
    ],
)
def test_bad_settings_are_refused_before_training(privacy: dict, extra: dict, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        _run(privacy, **extra)


def test_config_rejects_sample_mode_without_noise_or_with_adaptive_clip() -> None:
    with pytest.raises(Exception, match="exactly one"):
        build_config(settings({"mode": "sample"}))
    with pytest.raises(Exception, match="adaptive_clip"):
        build_config(settings({"mode": "sample", "noise_multiplier": 1.0, "adaptive_clip": True}))
