"""Non-IID measures: exact on hand-made federations, near 0 for IID, larger with more skew, and
computed from per-client summaries only."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from fedmetamal.api import build_federation, load_data
from fedmetamal.config import build_config
from fedmetamal.data.dataset import Dataset
from fedmetamal.data.federation import ClientData, Federation
from fedmetamal.data.heterogeneity import (
    CLIENT_MEASURES,
    FEATURE_JS_SCALE,
    FEDERATION_MEASURES,
    INDEX_WEIGHTS,
    combined_index,
    feature_range,
    measure_federation,
    measure_summaries,
    shared_edges,
    summarise_client,
)
from fedmetamal.data.heterogeneity_stats import (
    coefficient_of_variation,
    expected_js_terms,
    expected_tv,
    gini,
    group_counts,
    js_bits,
)
from fedmetamal.data.splits import _family_keys

BASE: dict[str, Any] = {"dataset": {"synthetic": {"n_samples": 2000, "n_features": 40}}}
LABEL = ["label_emd", "label_js", "label_hellinger", "label_tv"]
FAMILY = ["family_emd", "family_js", "family_hellinger", "family_tv"]


@pytest.fixture(scope="module")
def ds() -> Dataset:
    return load_data(build_config(BASE))


def federation(ds: Dataset, kind: str = "iid", seed: int = 0, **kw: Any) -> Federation:
    cfg = build_config({**BASE, "seed": seed, "partition": {"kind": kind, "clients": 4, **kw}})
    return build_federation(cfg, ds)


def toy(labels: list[list[int]], d: int = 3, seed: int = 0) -> Federation:
    """One client per entry of ``labels`` (its labels), Gaussian features."""
    rng = np.random.default_rng(seed)
    names = [f"f{i}" for i in range(d)]

    def data(y: list[int]) -> Dataset:
        X = rng.normal(size=(len(y), d)).astype(np.float32)
        return Dataset(X, np.array(y, np.int8), names)

    clients = [ClientData(i, data(y), data([])) for i, y in enumerate(labels)]
    return Federation(clients, data([0, 1]))


# --- exact values ------------------------------------------------------------------------


def test_label_measures_match_hand_computation() -> None:
    # client 0: 30 benign, 10 malware; client 1: 10 benign, 30 malware -> pooled 50/50
    fed = toy([[0] * 30 + [1] * 10, [0] * 10 + [1] * 30])
    report = measure_federation(fed)
    p, q = np.array([0.75, 0.25]), np.array([0.5, 0.5])
    m = (p + q) / 2
    js = 0.5 * np.sum(p * np.log2(p / m)) + 0.5 * np.sum(q * np.log2(q / m))
    expected = {
        "label_emd": 0.5,
        "label_tv": 0.25,
        "label_hellinger": math.sqrt(1 - (math.sqrt(0.375) + math.sqrt(0.125))),
        "label_js": js,
    }
    for row in report.clients:
        for key, value in expected.items():
            assert row[key] == pytest.approx(value, abs=1e-12), key
    assert js == pytest.approx(0.0487947, abs=1e-6)
    for key, value in expected.items():
        assert report.federation[key] == pytest.approx(value, abs=1e-12)
    assert report.clients[0]["malware_share"] == 0.25
    assert report.label_counts.tolist() == [[30, 10], [10, 30]]


def test_federation_label_measures_are_size_weighted_means() -> None:
    # client 0 (20 labelled): all benign; client 1 (60 labelled): 20 benign, 40 malware;
    # pooled 40/40. Unlabelled samples of client 1 count towards its size, not its labels.
    fed = toy([[0] * 20, [0] * 20 + [1] * 40 + [-1] * 15])
    report = measure_federation(fed)
    tv = [0.5, abs(40 / 60 - 0.5)]
    assert [r["label_tv"] for r in report.clients] == pytest.approx(tv)
    assert [r["label_emd"] for r in report.clients] == pytest.approx([2 * t for t in tv])
    assert report.federation["label_tv"] == pytest.approx((20 * tv[0] + 60 * tv[1]) / 80)
    assert [r["size"] for r in report.clients] == [20, 75]
    assert report.label_counts.tolist() == [[20, 0], [20, 40]]


def test_client_without_labels_is_nan_and_left_out() -> None:
    fed = toy([[0] * 10 + [1] * 10, [-1] * 12, [0] * 5 + [1] * 15])
    report = measure_federation(fed)
    assert all(math.isnan(report.clients[1][k]) for k in CLIENT_MEASURES)
    assert math.isnan(report.clients[1]["malware_share"])
    assert math.isfinite(report.federation["label_tv"])
    assert math.isfinite(report.federation["index"])
    json.dumps(report.to_dict(), allow_nan=False)


def test_gini_and_cv() -> None:
    assert gini(np.array([1, 1, 1, 1])) == 0.0
    assert gini(np.array([0, 0, 0, 1])) == pytest.approx(0.75)  # (n - 1) / n
    assert gini(np.array([1, 2, 3, 4])) == pytest.approx(20 / 80)  # sum |xi - xj| / (2 n^2 mean)
    assert coefficient_of_variation(np.array([5, 5, 5])) == 0.0
    assert coefficient_of_variation(np.array([1, 3])) == pytest.approx(0.5)
    fed = toy([[0, 1] * 5, [0, 1] * 15])  # sizes 10 and 30
    report = measure_federation(fed)
    assert report.federation["quantity_gini"] == pytest.approx(2 * 20 / (2 * 4 * 20))
    assert report.federation["quantity_cv"] == pytest.approx(10 / 20)
    assert [r["size_share"] for r in report.clients] == pytest.approx([0.25, 0.75])


def test_one_client_federation_is_iid() -> None:
    report = measure_federation(toy([[0] * 20 + [1] * 30]))
    for key in ("label_tv", "label_js", "quantity_gini", "feature_shift", "feature_js", "index"):
        assert report.federation[key] == pytest.approx(0.0, abs=1e-12), key


def test_combined_index_formula() -> None:
    assert combined_index({"label": 0.0, "family": 0.0, "feature": 0.0, "quantity": 0.0}) == 0.0
    assert combined_index({"label": 1.0, "quantity": 0.0}) == 1.0
    m = {"label": 0.2, "family": float("nan"), "feature": 0.5, "quantity": 0.4}
    w = INDEX_WEIGHTS
    expected = 1 - (1 - w["label"] * 0.2) * (1 - w["feature"] * 0.5) * (1 - w["quantity"] * 0.4)
    assert combined_index(m) == pytest.approx(expected)


# --- behaviour on partitions ---------------------------------------------------------------


def test_iid_is_near_zero(ds: Dataset) -> None:
    report = measure_federation(federation(ds, "iid"))
    f = report.federation
    assert all(f[k] < 0.05 for k in ("label_js", "label_hellinger", "label_tv"))
    assert f["label_emd"] < 0.1  # EMD = 2 TV
    # 18 families / categories over ~320-sample clients: the raw (textbook) family distances
    # carry sampling noise, which is what IID clients of these sizes are expected to show
    assert f["family_tv"] < 0.1
    counts = report.family_counts.to_numpy()
    noise = np.average(expected_tv(counts.sum(1), counts.sum(0)), weights=counts.sum(1))
    assert f["family_tv"] == pytest.approx(noise, rel=0.3)
    assert f["quantity_gini"] < 0.01 and f["quantity_cv"] < 0.01
    assert f["feature_shift"] < 0.02 and f["feature_js"] < 0.02
    assert f["index"] < 0.05
    assert all(r["feature_shift"] < 0.05 and r["feature_js"] < 0.02 for r in report.clients)


def test_index_grows_as_dirichlet_alpha_shrinks(ds: Dataset) -> None:
    def mean_index(alpha: float) -> float:
        return float(
            np.mean(
                [
                    measure_federation(federation(ds, "dirichlet", seed, alpha=alpha)).federation[
                        "index"
                    ]
                    for seed in range(4)
                ]
            )
        )

    strong, medium, weak = mean_index(0.05), mean_index(1.0), mean_index(100.0)
    assert strong > medium > weak
    assert strong > 0.7 and weak < 0.1


def test_one_class_clients_reach_the_maximum(ds: Dataset) -> None:
    report = measure_federation(federation(ds, "label-quantity", k=1))
    pooled = report.label_counts.sum(0) / report.label_counts.sum()
    for row, counts in zip(report.clients, report.label_counts, strict=True):
        held = int(np.argmax(counts))
        assert counts.min() == 0
        assert row["label_tv"] == pytest.approx(1 - pooled[held])
        assert row["label_emd"] == pytest.approx(2 * (1 - pooled[held]))
    assert report.federation["label_tv"] == pytest.approx(1 - np.sum(pooled**2))
    assert report.components["label"] == pytest.approx(1.0)
    assert report.federation["index"] > 0.7


def test_feature_measures_grow_with_noise(ds: Dataset) -> None:
    iid = measure_federation(federation(ds, "iid")).federation
    noisy = [
        measure_federation(federation(ds, "feature-noise", noise=n)).federation
        for n in (0.25, 0.5, 1.0)
    ]
    values = [iid["feature_js"]] + [f["feature_js"] for f in noisy]
    assert values == sorted(values) and len(set(values)) == len(values), values
    assert noisy[-1]["feature_js"] > 0.04 > 2 * iid["feature_js"]
    # zero-mean noise (on the signed-log scale the measures use) moves no means
    assert max(f["feature_shift"] for f in noisy) < 0.02
    # conditioning on the class: feature noise leaves label skew alone
    assert noisy[-1]["label_tv"] == pytest.approx(iid["label_tv"])
    # the calibrated scale: noise 1.0 is strong skew, but the component is not yet saturated
    component = 1 - math.exp(-noisy[-1]["feature_js"] / FEATURE_JS_SCALE)
    assert 0.5 < component < 0.95
    subset = measure_federation(federation(ds, "feature-subset", subset_fraction=0.5))
    assert subset.federation["feature_js"] > 0.05
    assert subset.federation["feature_shift"] > 0.2


def test_label_skew_is_not_counted_as_feature_skew(ds: Dataset) -> None:
    f = measure_federation(federation(ds, "label-quantity", k=1)).federation
    assert f["feature_js"] < 0.02 and f["feature_shift"] < 0.05


def test_family_measures_need_metadata(ds: Dataset) -> None:
    with_meta = measure_federation(federation(ds, "family-dirichlet", alpha=0.1))
    assert all(math.isfinite(with_meta.federation[k]) for k in FAMILY)
    assert with_meta.federation["family_tv"] > 0.2
    assert math.isfinite(with_meta.components["family"])
    table = with_meta.family_counts
    assert isinstance(table, pd.DataFrame) and table.shape[0] == 4
    assert table.to_numpy().sum() == with_meta.label_counts.sum()
    assert any(str(c).startswith("benign:") for c in table.columns)
    for row in with_meta.clients:
        tops = row["top_families"]
        assert 0 < len(tops) <= 3
        assert [c for _, c in tops] == sorted((c for _, c in tops), reverse=True)
        assert all(not name.startswith("benign") for name, _ in tops)

    bare = dataclasses.replace(ds, metadata=None)
    report = measure_federation(federation(bare, "dirichlet", alpha=0.5))
    assert all(math.isnan(report.federation[k]) for k in FAMILY)
    assert all(math.isnan(r[k]) for r in report.clients for k in FAMILY)
    assert report.family_counts is None and math.isnan(report.components["family"])
    assert all(r["top_families"] == [] for r in report.clients)
    assert math.isfinite(report.federation["index"])


def test_group_counts_name_groups_like_the_partitioner(ds: Dataset) -> None:
    part = ds.subset(np.arange(500))
    part.y[:20] = -1
    keys = _family_keys(part, np.flatnonzero(part.labelled_mask), benign_categories=True)
    assert group_counts(part) == pd.Series(keys).value_counts().to_dict()


def test_report_is_json_ready(ds: Dataset) -> None:
    for fed in (federation(ds, "family-dirichlet", alpha=0.5), toy([[0] * 5, [1] * 5, [-1] * 5])):
        report = measure_federation(fed)
        assert list(report.federation) == list(FEDERATION_MEASURES)
        for row in report.clients:
            assert {"client", "size", "malware_share", "top_families"} | set(
                CLIENT_MEASURES
            ) <= set(row)
        text = json.dumps(report.to_dict(), allow_nan=False)
        back = json.loads(text)
        assert set(back["federation"]) == set(FEDERATION_MEASURES)
        assert len(back["clients"]) == fed.n_clients


# --- summaries -------------------------------------------------------------------------------


def test_summary_holds_no_rows_and_server_needs_nothing_else(ds: Dataset) -> None:
    fed = federation(ds, "dirichlet", alpha=0.5)
    client = fed.clients[0].train
    lo, hi = feature_range(client)
    edges = shared_edges(lo, hi, 16)
    summary = summarise_client(client, edges)
    doubled = Dataset(
        np.concatenate([client.X, client.X]),
        np.concatenate([client.y, client.y]),
        client.feature_names,
        metadata=pd.concat([client.metadata, client.metadata]),
    )
    summary2 = summarise_client(doubled, edges)
    d = client.n_features
    for field in dataclasses.fields(summary):
        value = getattr(summary, field.name)
        if isinstance(value, np.ndarray):
            # shapes depend on features and bins only, never on the number of rows
            assert value.shape == getattr(summary2, field.name).shape
            assert client.n_samples not in value.shape
    assert summary.histogram.shape == (2, d, 16)
    assert summary.histogram.sum(axis=(1, 2)).tolist() == [c * d for c in summary.label_counts]
    assert summary2.label_counts.tolist() == (2 * summary.label_counts).tolist()
    assert summary2.family_counts == {k: 2 * v for k, v in summary.family_counts.items()}
    assert summary.n == client.n_samples

    # the server's side from the clients' summaries reproduces measure_federation exactly
    ranges = [feature_range(c.train) for c in fed.clients]
    edges = shared_edges([r[0] for r in ranges], [r[1] for r in ranges], 16)
    summaries = [summarise_client(c.train, edges) for c in fed.clients]
    assert measure_summaries(summaries).to_dict() == measure_federation(fed).to_dict()


def test_shared_edges_cover_every_client() -> None:
    mins = np.array([[0.0, 1.0, 2.0], [-1.0, np.inf, 2.0]])
    maxs = np.array([[3.0, 2.0, 2.0], [1.0, -np.inf, 2.0]])
    edges = shared_edges(mins, maxs, 4)
    assert edges.shape == (3, 5)
    assert edges[0].tolist() == [-1.0, 0.0, 1.0, 2.0, 3.0]
    assert edges[1].tolist() == [1.0, 1.25, 1.5, 1.75, 2.0]  # the empty client is ignored
    assert edges[2].tolist() == [2.0] * 5  # constant feature: one bin takes everything
    X = np.array([[0.0], [np.e - 1], [-(np.e - 1)]], dtype=np.float32)
    lo, hi = feature_range(Dataset(X, np.zeros(3, np.int8), ["x"]))
    assert lo.tolist() == pytest.approx([-1.0]) and hi.tolist() == pytest.approx([1.0])


def test_sampling_noise_corrections_match_simulation() -> None:
    rng = np.random.default_rng(0)
    q = np.array([0.6, 0.2, 0.1, 0.05, 0.03, 0.02])
    for n in (8, 40, 400):
        draws = rng.multinomial(n, q, size=3000) / n
        simulated = js_bits(draws, q).mean()
        assert expected_js_terms(q, np.array(float(n))) == pytest.approx(simulated, rel=0.1)
        # expected_tv: a client of n among a very large pool drawn from q
        pooled = q * 1e7
        tv = 0.5 * np.abs(draws - q).sum(1).mean()
        assert expected_tv(np.array([n]), pooled)[0] == pytest.approx(tv, rel=0.1)
