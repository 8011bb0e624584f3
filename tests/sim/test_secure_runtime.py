"""Secure aggregation in the simulation runtime, and distributed DP noise.

Secure aggregation must give the plain weighted mean up to its quantisation bound, survive
dropouts above the threshold, skip (not crash) rounds below it, and refuse settings it cannot
run before any training. Distributed noise must carry the same total noise as central noise.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from scipy import stats

from fedmetamal import api
from fedmetamal.config import SecAggConfig, build_config
from fedmetamal.errors import ConfigError
from fedmetamal.fl.aggregate import weighted_mean
from fedmetamal.privacy.dp import DPAggregator, dp_mean
from fedmetamal.sim.secure_round import (
    RoundSkipped,
    SecureAggregator,
    default_threshold,
    dropout_plan,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "privacy"))
from dp_settings import settings


def secagg(**kw: Any) -> dict[str, Any]:
    return {"enabled": True, **kw}


def one_round(data: dict[str, Any]) -> api.SimulationResult:
    data = {**data, "training": {**data["training"], "rounds": 1}}
    return api.simulate(data, write_outputs=False)


# ---- same model as plain aggregation ----------------------------------------------------------


def test_secagg_gives_the_plain_weighted_mean_within_the_quantisation_bound() -> None:
    plain = one_round(settings())
    sec = one_round(settings(secagg=secagg()))
    rec = sec.history[0].secagg
    assert rec is not None and rec["survivors"] == rec["cohort"] == 10
    assert rec["dropped"] == [] and rec["excluded"] == {} and rec["clipped_coordinates"] == 0
    assert rec["bytes_up"] > 0 and rec["bytes_down"] > 0 and rec["seconds"] > 0
    # fedavg with server lr 1: the params moved by the aggregate, so compare the aggregates.
    # Numerator and denominator (the weight column) each carry at most e = n * range / (2^b - 1)
    sim = sec.simulation
    rng, bits, n = rec["range"], rec["bits"], 10
    e = n * rng / (2**bits - 1)
    w = sim.store.sizes.astype(float)
    d = w.sum() / w.max()  # the weight column's true sum / range
    plain_update = (plain.params - sim.network.init(torch.Generator().manual_seed(5))).abs()
    bound = (e + float(plain_update.max()) * e / rng) / (d - e / rng)
    diff = float((sec.params - plain.params).abs().max())
    assert 0 < diff <= bound
    assert len(sec.history[0].clients) == 10


def test_secagg_training_tracks_plain_training_over_rounds() -> None:
    plain = api.simulate(settings(), write_outputs=False)
    sec = api.simulate(settings(secagg=secagg(neighbours=4)), write_outputs=False)
    assert all(r.secagg is not None and r.secagg["neighbours"] == 4 for r in sec.history)
    torch.testing.assert_close(sec.params, plain.params, atol=1e-3, rtol=0)


def test_secagg_with_participant_dp_matches_dp_within_the_bound() -> None:
    dp = {"mode": "participant", "noise_multiplier": 0.5, "clip": 0.5}
    plain = one_round(settings(dp))
    sec = one_round(settings(dp, secagg=secagg()))
    rec = sec.history[0].secagg
    assert rec["range"] == 0.5  # privacy.clip: L2 clipping bounds every coordinate
    # the same central noise draw; the sum is off by at most n * range / (2^16 - 1), over m
    bound = 10 * 0.5 / (2**16 - 1) / 10
    assert float((sec.params - plain.params).abs().max()) <= bound * 1.01
    assert sec.history[0].epsilon == pytest.approx(plain.history[0].epsilon)


# ---- dropouts, aborts -------------------------------------------------------------------------


@pytest.mark.parametrize("stage", ["advertise", "share_keys", "masked_input", "unmasking"])
def test_secure_aggregator_drops_and_averages_the_survivors(stage: str) -> None:
    gen = torch.Generator().manual_seed(0)
    deltas = (torch.rand(12, 40, generator=gen) - 0.5) * 0.2
    weights = torch.randint(5, 50, (12,), generator=gen).float()
    cfg = SecAggConfig(enabled=True, dropout=0.25, dropout_stage=stage)
    agg = SecureAggregator(cfg, w_max=50.0, seed=3, round_index=lambda: 4)
    agg.clients = np.arange(100, 112)
    update = agg(deltas, weights)
    rec = agg.last
    assert rec is not None
    # a client silent only at unmasking already sent its masked input: it is in the sum
    late = stage == "unmasking"
    assert rec["survivors"] == (12 if late else 9)
    assert len(rec["dropped"]) == (0 if late else 3)
    assert len(rec["silent_at_unmasking"]) == (3 if late else 0)
    dropped_rows = sorted(c - 100 for c in rec["dropped"] + rec["silent_at_unmasking"])
    assert dropped_rows == sorted(r for rows in dropout_plan(cfg, 12, 3, 4).values() for r in rows)
    keep = [i for i in range(12) if stage == "unmasking" or i not in dropped_rows]
    expected = weighted_mean(deltas[keep], weights[keep])
    torch.testing.assert_close(update, expected, atol=2e-5, rtol=0)


def test_random_dropout_stages_are_seeded_per_round() -> None:
    cfg = SecAggConfig(enabled=True, dropout=0.3, dropout_stage="random")
    a, b = dropout_plan(cfg, 20, 1, 0), dropout_plan(cfg, 20, 1, 0)
    assert a == b and sum(len(v) for v in a.values()) == 6
    assert dropout_plan(cfg, 20, 1, 1) != a


def test_dropout_round_completes_and_records_the_dropped() -> None:
    res = api.simulate(settings(secagg=secagg(dropout=0.2)), write_outputs=False)
    for rec in res.history:
        assert rec.skipped is None and rec.secagg is not None
        assert len(rec.secagg["dropped"]) == 2 and rec.secagg["survivors"] == 8
        assert set(rec.secagg["dropped"]) <= set(rec.clients)
    assert bool(torch.isfinite(res.params).all())


def test_round_rows_in_metrics_jsonl_carry_the_secagg_facts(tmp_path: Path) -> None:
    import json

    data = settings(secagg=secagg(dropout=0.2))
    data["output"] = {**data["output"], "dir": str(tmp_path)}
    res = api.simulate(data)
    assert res.run_dir is not None
    rows = [json.loads(x) for x in (res.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == len(res.history)
    for row, rec in zip(rows, res.history, strict=True):
        assert rec.secagg is not None
        assert row["secagg_survivors"] == rec.secagg["survivors"] == 8
        assert row["secagg_dropped"] == 2 and row["secagg_excluded"] == 0
        assert row["secagg_bytes_up"] == rec.secagg["bytes_up"] > 0
    assert "secagg_survivors" in (res.run_dir / "metrics.csv").read_text().splitlines()[0]


def test_too_few_survivors_skip_the_round_and_keep_the_model() -> None:
    # 1 of 10 drops and 1 malformed upload is excluded at masked input: 8 < threshold 9
    data = settings(
        secagg=secagg(threshold=9, dropout=0.1),
        attack={"kind": "malformed", "fraction": 0.1},
    )
    res = api.simulate(data, write_outputs=False)
    init = res.simulation.network.init(torch.Generator().manual_seed(5))
    for rec in res.history:
        assert rec.skipped is not None and "aborted" in rec.skipped
        assert rec.secagg is not None and "masked_input" in rec.secagg["aborted"]
        assert rec.secagg["threshold"] == 9
    assert torch.equal(res.params, init)  # every round skipped: the model never moved
    assert np.isfinite(res.final_metrics["loss"])


def test_too_few_rows_for_the_threshold_skip_before_the_protocol() -> None:
    agg = SecureAggregator(SecAggConfig(enabled=True, threshold=5), 1.0, 0, lambda: 0)
    with pytest.raises(RoundSkipped, match="fewer than threshold 5"):
        agg(torch.zeros(4, 3), torch.ones(4))


def test_default_threshold_is_a_majority() -> None:
    assert default_threshold(10, None) == 6
    assert default_threshold(100, 20) == 11  # of a client and its 20 neighbours
    assert default_threshold(5, 20) == 3


# ---- refused before training ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        ({"aggregation": {"kind": "median"}}, "needs every individual update"),
        ({"aggregation": {"kind": "norm-bound"}}, "aggregation.kind 'norm-bound'"),
        ({"algorithm": {"name": "scaffold"}}, "extra client state"),
        ({"algorithm": {"name": "fednova"}}, "rescales client updates"),
        ({"algorithm": {"name": "centralised"}}, "pools all data"),
        ({"secagg": secagg(threshold=11)}, "threshold"),
        ({"secagg": secagg(bits=30)}, "2\\^32|wrap|bits"),
        ({"secagg": secagg(dropout=0.5)}, "every round would abort"),
    ],
)
def test_bad_settings_are_refused_before_training(extra: dict[str, Any], match: str) -> None:
    data = settings(**extra)
    data.setdefault("secagg", secagg())
    stages: list[str] = []
    with pytest.raises(ConfigError, match=match):
        api.simulate(data, write_outputs=False, on_stage=stages.append)
    assert "training" not in stages


def test_distributed_noise_needs_participant_dp() -> None:
    with pytest.raises(ConfigError, match="noise_placement"):
        build_config(settings({"mode": "none", "noise_placement": "distributed"}))


# ---- distributed noise ------------------------------------------------------------------------


def test_distributed_noise_has_the_central_total_variance() -> None:
    m, p, clip, z = 8, 200_000, 0.5, 1.3
    zero = torch.zeros(m, p)
    gen = torch.Generator().manual_seed(0)
    dist = dp_mean(zero, clip, z, gen, "distributed") * m
    cent = dp_mean(zero, clip, z, torch.Generator().manual_seed(1), "central") * m
    target = (z * clip) ** 2
    for sample in (dist, cent):
        assert float(sample.var()) == pytest.approx(target, rel=0.02)
        assert abs(float(sample.mean())) < 4 * (target / p) ** 0.5
    # the same distribution: a two-sample Kolmogorov-Smirnov test does not tell them apart
    assert stats.ks_2samp(dist[:20_000].numpy(), cent[:20_000].numpy()).pvalue > 0.001
    # and the noise really is split over the clients: each row carries 1/m of the variance
    rows = DPAggregator(clip, z, placement="distributed")
    assert rows.placement == "distributed"


def test_distributed_noise_through_secure_aggregation_has_the_total_variance() -> None:
    m, p, clip, z = 10, 20_000, 1.0, 1.0
    dp = DPAggregator(clip, z, lambda: torch.Generator().manual_seed(7), placement="distributed")
    agg = SecureAggregator(SecAggConfig(enabled=True), 1.0, 0, lambda: 0, dp)
    out = agg(torch.zeros(m, p), torch.ones(m)) * m  # the decoded sum: noise alone
    assert agg.last is not None and agg.last["clipped_coordinates"] == 0
    assert agg.last["range"] > clip  # room for the noise shares
    assert float(out.var()) == pytest.approx((z * clip) ** 2, rel=0.04)


def test_distributed_noise_run_trains_and_accounts_like_central() -> None:
    dp = {"mode": "participant", "noise_multiplier": 0.3, "clip": 0.5}
    central = api.simulate(settings(dp), write_outputs=False)
    dist = api.simulate(
        settings({**dp, "noise_placement": "distributed"}, secagg=secagg()), write_outputs=False
    )
    assert dist.history[-1].epsilon == pytest.approx(central.history[-1].epsilon)
    assert bool(torch.isfinite(dist.params).all())
    assert not torch.equal(dist.params, central.params)  # other noise draws
    assert dist.simulation.privacy.metadata()["noise_placement"] == "distributed"
