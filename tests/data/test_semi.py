"""Semi-supervised scenarios: the promised label budget, reproducible, and the partition intact."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest

from fedmetamal.api import build_federation
from fedmetamal.config import PartitionConfig, PreprocessConfig, SemiConfig, build_config
from fedmetamal.data.dataset import UNLABELLED, Dataset
from fedmetamal.data.federation import ClientData, Federation
from fedmetamal.data.partition import partition
from fedmetamal.data.preprocess import preprocess_federation
from fedmetamal.data.semi import apply_semi, reveal_labels
from fedmetamal.data.splits import round_half_up
from fedmetamal.errors import ConfigError

N, D = 2000, 6


def make_dataset(n: int = N, unlabelled: int = 60, seed: int = 0) -> Dataset:
    """~35 % malware, some rows unlabelled in the dataset itself, and a ``uid`` per row."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.35).astype(np.int8)
    y[rng.choice(n, unlabelled, replace=False)] = UNLABELLED
    X = rng.normal(3.0, 2.0, (n, D)).astype(np.float32) * (1 + np.arange(D, dtype=np.float32))
    meta = pd.DataFrame({"uid": np.arange(n)})
    return Dataset(X, y, [f"f{i}" for i in range(D)], metadata=meta, name="toy")


@pytest.fixture(scope="module")
def ds() -> Dataset:
    return make_dataset()


@pytest.fixture(scope="module")
def fed(ds: Dataset) -> Federation:
    return partition(ds, PartitionConfig(kind="dirichlet", alpha=1.0, clients=4), seed=3)


def semi(**kw: Any) -> SemiConfig:
    return SemiConfig(**{"scenario": "labels-at-clients", **kw})


def uids(d: Dataset) -> np.ndarray:
    return d.meta("uid").astype(np.int64)


def true_labels(ds: Dataset, part: Dataset) -> np.ndarray:
    return ds.y[uids(part)]


def hidden_rows(f: Federation) -> list[np.ndarray]:
    return [np.flatnonzero(c.hidden_labels != UNLABELLED) for c in f.clients]


# --- scenario none ---------------------------------------------------------------------------


def test_none_is_the_partition_itself(ds: Dataset, fed: Federation) -> None:
    assert apply_semi(fed, SemiConfig(), seed=3) is fed
    assert all(c.hidden_labels is None for c in fed.clients) and fed.server is None
    assert "semi" not in fed.info
    row = fed.summary()[0]
    assert {"client", "train", "test", "malware_share", "labelled", "unlabelled"} <= set(row)
    c0 = fed.clients[0].train.class_counts()
    assert row["labelled"] == c0["benign"] + c0["malware"]
    assert row["unlabelled"] == c0["unlabelled"]


# --- labels at the clients -------------------------------------------------------------------


@pytest.mark.parametrize("stratified", [True, False])
@pytest.mark.parametrize("ratio", [0.05, 0.3, 1.0])
def test_ratio_respected_per_client(
    ds: Dataset, fed: Federation, ratio: float, stratified: bool
) -> None:
    out = apply_semi(fed, semi(label_ratio=ratio, stratified=stratified), seed=3)
    for before, after in zip(fed.clients, out.clients, strict=True):
        n = int(np.sum(before.train.y != UNLABELLED))
        kept = int(np.sum(after.train.y != UNLABELLED))
        assert abs(kept - round_half_up(ratio * n)) <= 1
        assert after.n_train == before.n_train
    info = out.info["semi"]
    assert info["scenario"] == "labels-at-clients" and info["label_ratio"] == [ratio] * 4
    assert info["labelled"] == [r["labelled"] for r in out.summary()]
    json.dumps(out.info)  # JSON-ready


def test_stratified_keeps_each_clients_malware_share(fed: Federation) -> None:
    out = apply_semi(fed, semi(label_ratio=0.1), seed=3)
    for before, after in zip(fed.clients, out.clients, strict=True):
        y0 = before.train.y[before.train.y != UNLABELLED]
        y1 = after.train.y[after.train.y != UNLABELLED]
        # largest-remainder quotas: each class within one sample of its exact share
        assert abs(y1.mean() - y0.mean()) <= 1.0 / y1.size + 1e-9
    # the summary's malware share describes the partition (hidden labels included)
    assert out.summary()[0]["malware_share"] == fed.summary()[0]["malware_share"]


def test_stratified_keeps_a_rare_class() -> None:
    y = np.array([1] + [0] * 39, dtype=np.int8)
    X = np.zeros((40, 2), np.float32)
    c = ClientData(0, Dataset(X, y, ["a", "b"]), Dataset(X[:0], y[:0], ["a", "b"]))
    f = Federation([c], Dataset(X[:4], np.array([0, 1, 0, 1]), ["a", "b"]))
    out = apply_semi(f, semi(label_ratio=0.1), seed=0)  # keep 4 of 40: 0.1 malware by share
    kept = out.clients[0].train.y[out.clients[0].train.y != UNLABELLED]
    assert kept.size == 4 and kept.sum() == 1


def test_deterministic_from_the_seed(fed: Federation) -> None:
    a = apply_semi(fed, semi(label_ratio=0.2), seed=3)
    b = apply_semi(fed, semi(label_ratio=0.2), seed=3)
    c = apply_semi(fed, semi(label_ratio=0.2), seed=4)
    for x, y in zip(hidden_rows(a), hidden_rows(b), strict=True):
        np.testing.assert_array_equal(x, y)
    assert any(
        not np.array_equal(x, y) for x, y in zip(hidden_rows(a), hidden_rows(c), strict=True)
    )


def test_smaller_ratio_keeps_a_subset_of_the_labels(fed: Federation) -> None:
    small = apply_semi(fed, semi(label_ratio=0.1), seed=3)
    large = apply_semi(fed, semi(label_ratio=0.4), seed=3)
    for s, big in zip(small.clients, large.clients, strict=True):
        s_rows = np.flatnonzero(s.train.y != UNLABELLED)
        assert np.isin(s_rows, np.flatnonzero(big.train.y != UNLABELLED)).all()


def test_partition_unchanged_and_hidden_labels_exact(ds: Dataset, fed: Federation) -> None:
    out = apply_semi(fed, semi(label_ratio=0.25, stratified=False), seed=3)
    again = partition(ds, PartitionConfig(kind="dirichlet", alpha=1.0, clients=4), seed=3)
    for before, after, fresh in zip(fed.clients, out.clients, again.clients, strict=True):
        np.testing.assert_array_equal(uids(after.train), uids(before.train))
        np.testing.assert_array_equal(uids(after.train), uids(fresh.train))
        np.testing.assert_array_equal(after.train.X, before.train.X)
        np.testing.assert_array_equal(after.test.y, before.test.y)  # local test keeps labels
        truth = true_labels(ds, after.train)
        hidden = after.hidden_labels
        assert hidden is not None and hidden.shape == truth.shape
        mask = hidden != UNLABELLED
        assert mask.any()
        np.testing.assert_array_equal(hidden[mask], truth[mask])
        assert (after.train.y[mask] == UNLABELLED).all()
        # labelled rows keep their label; dataset-unlabelled rows stay -1 in both arrays
        np.testing.assert_array_equal(after.train.y[~mask], truth[~mask])
        assert (hidden[truth == UNLABELLED] == UNLABELLED).all()
    np.testing.assert_array_equal(out.test.y, fed.test.y)
    # the input federation was not modified
    assert all(c.hidden_labels is None for c in fed.clients)
    restored = reveal_labels(out)
    for c in restored.clients:
        np.testing.assert_array_equal(c.train.y, true_labels(ds, c.train))
    assert reveal_labels(fed) is fed


def test_per_client_ratio_list(fed: Federation) -> None:
    ratios = [0.1, 0.5, 1.0, 0.2]
    out = apply_semi(fed, semi(label_ratio=ratios), seed=3)
    for before, after, r in zip(fed.clients, out.clients, ratios, strict=True):
        n = int(np.sum(before.train.y != UNLABELLED))
        assert abs(int(np.sum(after.train.y != UNLABELLED)) - round_half_up(r * n)) <= 1
    assert out.info["semi"]["label_ratio"] == ratios
    # one client's ratio does not change another client's draw
    other = apply_semi(fed, semi(label_ratio=[0.1, 0.9, 1.0, 0.2]), seed=3)
    np.testing.assert_array_equal(out.clients[0].hidden_labels, other.clients[0].hidden_labels)


def test_ratio_list_of_wrong_length(fed: Federation) -> None:
    with pytest.raises(ConfigError, match="3 ratios but the federation has 4 clients") as err:
        apply_semi(fed, semi(label_ratio=[0.1, 0.2, 0.3]), seed=3)
    assert "one ratio per client" in (err.value.fix or "")


@pytest.mark.parametrize("method", ["supervised", "pseudo-label", "fixmatch", "fedmatch"])
def test_client_left_without_labels(fed: Federation, method: str) -> None:
    sizes = [int(np.sum(c.train.y != UNLABELLED)) for c in fed.clients]
    small = int(np.argmin(sizes))
    ratios = [1.0] * 4
    ratios[small] = 0.4 / sizes[small]  # rounds to 0 labels
    with pytest.raises(ConfigError) as err:
        apply_semi(fed, semi(label_ratio=ratios, method=method), seed=3)
    msg = str(err.value)
    assert f"client {small}" in msg and str(sizes[small]) in msg and method in msg
    assert f"at least 1/{sizes[small]}" in (err.value.fix or "")


def test_client_without_any_dataset_labels() -> None:
    X = np.ones((10, 2), np.float32)
    unl = Dataset(X, np.full(10, -1), ["a", "b"])
    lab = Dataset(X, np.array([0, 1] * 5), ["a", "b"])
    f = Federation([ClientData(0, lab, lab), ClientData(1, unl, lab)], lab)
    with pytest.raises(ConfigError, match="Client 1 has no labelled training samples"):
        apply_semi(f, semi(label_ratio=0.5), seed=0)


def test_semifl_needs_the_server_set(fed: Federation) -> None:
    with pytest.raises(ConfigError, match="labels-at-server"):
        apply_semi(fed, semi(label_ratio=0.5, method="semifl"), seed=3)


# --- labels at the server --------------------------------------------------------------------


def test_labels_at_server(ds: Dataset, fed: Federation) -> None:
    cfg = SemiConfig(scenario="labels-at-server", server_labels=0.1, method="semifl")
    out = apply_semi(fed, cfg, seed=3)
    server = out.server
    assert server is not None
    total = int(fed.sizes().sum())
    assert server.n_samples == round_half_up(0.1 * total)
    assert (server.y != UNLABELLED).all()
    np.testing.assert_array_equal(server.y, ds.y[uids(server)])
    # stratified over the labelled training pool
    pool = np.concatenate([c.train.y for c in fed.clients])
    pool = pool[pool != UNLABELLED]
    assert abs(server.y.mean() - pool.mean()) <= 1.0 / server.n_samples + 1e-9
    # carved out of the clients' training rows: disjoint, nothing lost, test sets untouched
    server_uids = set(uids(server).tolist())
    before = set(np.concatenate([uids(c.train) for c in fed.clients]).tolist())
    after = [set(uids(c.train).tolist()) for c in out.clients]
    assert all(not (a & server_uids) for a in after)
    assert set().union(*after) | server_uids == before
    assert sum(map(len, after)) + len(server_uids) == len(before)
    assert not server_uids & set(uids(out.test).tolist())
    np.testing.assert_array_equal(out.test.y, fed.test.y)
    for b, a in zip(fed.clients, out.clients, strict=True):
        assert (a.train.y == UNLABELLED).all()
        np.testing.assert_array_equal(a.hidden_labels, true_labels(ds, a.train))
        np.testing.assert_array_equal(a.test.y, b.test.y)
    info = out.info["semi"]
    assert info["server_size"] == server.n_samples and info["labelled"] == [0] * 4
    assert info["server_label_counts"] == [int(np.sum(server.y == 0)), int(np.sum(server.y == 1))]
    assert info["train_sizes"] == out.sizes().tolist()
    json.dumps(out.info)
    again = apply_semi(fed, cfg, seed=3)
    assert again.server is not None
    np.testing.assert_array_equal(uids(again.server), uids(server))
    pooled = out.pooled_train()
    assert pooled.n_samples == total


def test_server_set_too_small(fed: Federation) -> None:
    cfg = SemiConfig(scenario="labels-at-server", server_labels=0.0003, method="semifl")
    with pytest.raises(ConfigError, match="server set of 0 samples"):
        apply_semi(fed, cfg, seed=3)


# --- downstream ------------------------------------------------------------------------------


def test_preprocessing_carries_server_and_hidden_labels(fed: Federation) -> None:
    cfg = SemiConfig(scenario="labels-at-server", server_labels=0.1, method="fixmatch")
    out = apply_semi(fed, cfg, seed=3)
    done, pre = preprocess_federation(out, PreprocessConfig())
    _, pre_none = preprocess_federation(fed, PreprocessConfig())
    assert out.server is not None and done.server is not None
    np.testing.assert_allclose(done.server.X, pre.apply(out.server.X))
    np.testing.assert_array_equal(done.server.y, out.server.y)
    for a, b in zip(out.clients, done.clients, strict=True):
        assert b.hidden_labels is a.hidden_labels
    # the fit sees the same training rows as without the scenario
    np.testing.assert_allclose(pre.mean, pre_none.mean, rtol=1e-5)
    np.testing.assert_allclose(pre.std, pre_none.std, rtol=1e-5)
    assert done.info["semi"] == out.info["semi"]


def test_build_federation_applies_the_scenario() -> None:
    base = {
        "dataset": {"source": "synthetic", "synthetic": {"n_samples": 1500, "n_features": 32}},
        "partition": {"clients": 3},
    }
    plain = build_federation(build_config(base))
    cfg = build_config(base | {"semi": {"scenario": "labels-at-clients", "label_ratio": 0.2}})
    fed = build_federation(cfg)
    assert "semi" not in plain.info and fed.info["semi"]["label_ratio"] == [0.2] * 3
    for p, c in zip(plain.clients, fed.clients, strict=True):
        np.testing.assert_array_equal(p.train.X, c.train.X)
        n = int(np.sum(p.train.y != UNLABELLED))
        assert abs(int(np.sum(c.train.y != UNLABELLED)) - round_half_up(0.2 * n)) <= 1
    server = build_federation(
        build_config(
            base
            | {"semi": {"scenario": "labels-at-server", "server_labels": 0.05, "method": "semifl"}}
        )
    )
    assert server.server is not None and server.info["semi"]["server_size"] > 0
