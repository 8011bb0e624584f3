"""Partitioners: no sample lost or duplicated, reproducible from the seed, and the promised skew."""

from __future__ import annotations

import itertools
import json
from typing import Any

import numpy as np
import pandas as pd
import pytest

from fedmetamal.config import PartitionConfig
from fedmetamal.data.dataset import Dataset
from fedmetamal.data.federation import Federation
from fedmetamal.data.partition import client_label_counts, feature_masks, partition
from fedmetamal.data.preprocess import signed_log1p
from fedmetamal.data.splits import (
    class_mix,
    dirichlet_proportions,
    largest_remainder,
    mix_quotas,
    stratified_sample,
)
from fedmetamal.errors import PartitionError

N, D = 2000, 8
FAMILIES = ["alpha", "beta", "gamma", "delta", "epsilon"]
SOURCES = ["honeypot", "partner-a", "partner-b", "vt"]


def make_dataset(n: int = N, unlabelled: int = 0, metadata: bool = True, seed: int = 0) -> Dataset:
    """~60 % malware in five families of unequal size, three benign categories, two years of
    first_seen dates, four sources, and a ``uid`` equal to the row number."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.6).astype(np.int8)
    if unlabelled:
        y[rng.choice(n, unlabelled, replace=False)] = -1
    # Never zero, and on different scales, so hidden (zeroed) and noisy features are visible.
    X = (rng.normal(5.0, 1.0, (n, D)) * (1 + np.arange(D))).astype(np.float32)
    meta = None
    if metadata:
        family = rng.choice(FAMILIES, p=[0.4, 0.25, 0.15, 0.12, 0.08], size=n).astype(object)
        family[y != 1] = None
        category = rng.choice(["browser", "office", "game"], size=n).astype(object)
        category[y == 1] = None
        seconds = rng.integers(0, 730 * 86400, size=n)
        meta = pd.DataFrame(
            {
                "uid": np.arange(n),
                "family": family,
                "category": category,
                "first_seen": pd.Timestamp("2020-01-01", tz="UTC")
                + pd.to_timedelta(seconds, unit="s"),
                "source": rng.choice(SOURCES, size=n),
            }
        )
    return Dataset(X, y, [f"f{i}" for i in range(D)], metadata=meta, name="toy")


@pytest.fixture(scope="module")
def ds() -> Dataset:
    return make_dataset()


def cfg(kind: str = "iid", **kw: Any) -> PartitionConfig:
    return PartitionConfig(kind=kind, **{"clients": 4, **kw})


def uids(d: Dataset) -> np.ndarray:
    return d.meta("uid").astype(np.int64)


def client_uids(fed: Federation) -> list[np.ndarray]:
    return [np.sort(np.concatenate([uids(c.train), uids(c.test)])) for c in fed.clients]


def malware_share(fed: Federation) -> np.ndarray:
    counts = client_label_counts(fed)
    return counts[:, 1] / counts.sum(axis=1)


def gini(x: np.ndarray) -> float:
    x = np.sort(np.asarray(x, dtype=np.float64))
    n = x.size
    return float((2 * np.arange(1, n + 1) - n - 1) @ x / (n * x.sum()))


# One setting per kind that keeps every sample (label-quantity: both labels have an owner).
EVERY_KIND = {
    "iid": cfg("iid"),
    "dirichlet": cfg("dirichlet", alpha=0.5),
    "label-quantity": cfg("label-quantity", k=1),
    "label-quantity-family": cfg("label-quantity", k=2, by="family", clients=6),
    "family-dirichlet": cfg("family-dirichlet", alpha=0.5),
    "quantity": cfg("quantity", alpha=0.5),
    "quantity-lognormal": cfg("quantity", quantity="lognormal", sigma=1.0),
    "feature-noise": cfg("feature-noise"),
    "feature-subset": cfg("feature-subset"),
    "temporal": cfg("temporal"),
    "natural": cfg("natural", column="source"),
}


@pytest.mark.parametrize("name", sorted(EVERY_KIND))
def test_every_sample_lands_exactly_once(ds: Dataset, name: str) -> None:
    fed = partition(ds, EVERY_KIND[name], seed=1)
    pieces = [uids(fed.test)] + [u for c in fed.clients for u in (uids(c.train), uids(c.test))]
    everything = np.concatenate(pieces)
    assert everything.size == N
    assert np.array_equal(np.sort(everything), np.arange(N))
    assert fed.n_clients == EVERY_KIND[name].clients
    assert sum(fed.info["sizes"]) + sum(fed.info["test_sizes"]) + fed.test.n_samples == N
    assert all(c.n_train >= EVERY_KIND[name].min_client_size for c in fed.clients)
    # the rows travel with their labels
    for c in fed.clients:
        assert np.array_equal(c.train.y, ds.y[uids(c.train)])


@pytest.mark.parametrize("name", sorted(EVERY_KIND))
def test_same_seed_same_federation_other_seed_other(ds: Dataset, name: str) -> None:
    a, b, other = (partition(ds, EVERY_KIND[name], seed=s) for s in (7, 7, 8))
    assert all(np.array_equal(u, v) for u, v in zip(client_uids(a), client_uids(b), strict=True))
    assert all(
        np.array_equal(c.train.X, e.train.X) for c, e in zip(a.clients, b.clients, strict=True)
    )
    assert not np.array_equal(uids(a.test), uids(other.test))
    assert a.info == b.info


@pytest.mark.parametrize("name", sorted(EVERY_KIND))
def test_info_is_plain_and_consistent(ds: Dataset, name: str) -> None:
    setting = EVERY_KIND[name]
    fed = partition(ds, setting, seed=3)
    json.dumps(fed.info)  # plain values only, ready for a run record
    assert fed.info["kind"] == setting.kind
    assert fed.info["seed"] == 3
    assert fed.info["params"]["clients"] == setting.clients
    assert fed.info["sizes"] == fed.sizes().tolist()
    assert fed.info["label_counts"] == client_label_counts(fed).tolist()


def test_global_test_set_is_stratified_and_disjoint(ds: Dataset) -> None:
    fed = partition(ds, cfg("dirichlet", alpha=0.1, min_client_size=1), seed=0)
    assert fed.test.n_samples == round(0.2 * N)
    overall = np.mean(ds.y == 1)
    assert abs(np.mean(fed.test.y == 1) - overall) < 1.5 / fed.test.n_samples
    train_side = np.concatenate(client_uids(fed))
    assert np.intersect1d(train_side, uids(fed.test)).size == 0


def test_unlabelled_samples_stay_out_of_every_test_set() -> None:
    data = make_dataset(unlabelled=300)
    for setting in (cfg("iid"), cfg("dirichlet", alpha=0.3), cfg("label-quantity", k=1)):
        fed = partition(data, setting, seed=0)
        assert np.all(fed.test.y != -1)
        assert fed.test.n_samples == round(0.2 * (N - 300))
        assert all(np.all(c.test.y != -1) for c in fed.clients)
        in_clients = sum(int(np.sum(c.train.y == -1)) for c in fed.clients)
        assert in_clients == 300
        # spread over all clients, not parked on one
        assert all(np.sum(c.train.y == -1) > 30 for c in fed.clients)


def test_iid_gives_equal_sizes_and_similar_label_mix(ds: Dataset) -> None:
    fed = partition(ds, cfg("iid", clients=7, client_test_fraction=0.0), seed=0)
    assert fed.sizes().max() - fed.sizes().min() <= 1
    assert np.std(malware_share(fed)) < 0.06


def test_dirichlet_skew_follows_alpha(ds: Dataset) -> None:
    def spread(setting: PartitionConfig) -> float:
        return float(np.std(malware_share(partition(ds, setting, seed=0))))

    iid = spread(cfg("iid", clients=5))
    skewed = spread(cfg("dirichlet", clients=5, alpha=0.05, min_client_size=1))
    near_iid = spread(cfg("dirichlet", clients=5, alpha=100.0))
    assert skewed > 0.25 > 0.06 > max(iid, near_iid)


def test_dirichlet_redraws_until_every_client_is_big_enough(ds: Dataset) -> None:
    setting = cfg("dirichlet", clients=6, alpha=0.3, min_client_size=60)
    feds = [partition(ds, setting, seed=s) for s in range(5)]
    assert all(f.sizes().min() >= 60 for f in feds)
    draws = [f.info["draws"] for f in feds]
    assert max(draws) > 1 and all(1 <= d <= 100 for d in draws)


def test_label_quantity_k1_gives_single_class_clients(ds: Dataset) -> None:
    fed = partition(ds, cfg("label-quantity", clients=6, k=1), seed=0)
    for c, held in zip(fed.clients, fed.info["client_classes"], strict=True):
        labels = np.unique(np.concatenate([c.train.y, c.test.y]))
        assert labels.size == 1
        assert held == ["malware" if labels[0] == 1 else "benign"]
    # both labels have owners (round-robin first), each shared evenly among its owners
    assert fed.info["unowned_classes"] == []
    malware_clients = [c.n_train + c.test.n_samples for c in fed.clients if c.train.y[0] == 1]
    assert max(malware_clients) - min(malware_clients) <= 1


def test_label_quantity_k2_by_label_is_iid_in_labels(ds: Dataset) -> None:
    fed = partition(ds, cfg("label-quantity", k=2), seed=0)
    assert np.all(client_label_counts(fed) > 0)


def test_label_quantity_by_family(ds: Dataset) -> None:
    fed = partition(ds, cfg("label-quantity", by="family", k=1, clients=6), seed=0)
    held = fed.info["client_classes"]
    # six classes (five families + benign), six clients: every class owned exactly once
    assert sorted(h[0] for h in held) == sorted([*FAMILIES, "benign"])
    for c, (cls,) in zip(fed.clients, held, strict=True):
        fam = c.train.meta("family")
        if cls == "benign":
            assert np.all(c.train.y == 0)
        else:
            assert np.all(c.train.y == 1)
            assert set(fam) == {cls}


def test_family_classes_follow_metadata_over_noisy_labels() -> None:
    data = make_dataset()
    to_malware, to_benign = np.flatnonzero(data.y == 0)[:20], np.flatnonzero(data.y == 1)[:20]
    data.y[to_malware], data.y[to_benign] = 1, 0  # label noise: metadata keeps the true group
    fed = partition(data, cfg("label-quantity", by="family", k=1, clients=6), seed=0)
    for c, (cls,) in zip(fed.clients, fed.info["client_classes"], strict=True):
        family = np.concatenate([c.train.meta("family"), c.test.meta("family")])
        if cls == "benign":
            assert pd.isna(family).all()
        else:
            assert set(family) == {cls}
    assert sum(int(np.sum(c.train.y == 0)) for c in fed.clients if c.train.y.mean() > 0.5) > 0


def test_label_quantity_with_fewer_slots_than_classes_reports_dropped(ds: Dataset) -> None:
    fed = partition(ds, cfg("label-quantity", by="family", k=1, clients=3), seed=0)
    assert len(fed.info["unowned_classes"]) == 3
    kept = sum(c.n_train + c.test.n_samples for c in fed.clients)
    assert kept + fed.info["dropped_samples"] + fed.test.n_samples == N


def test_label_quantity_k_larger_than_classes_is_refused(ds: Dataset) -> None:
    with pytest.raises(PartitionError) as err:
        partition(ds, cfg("label-quantity", k=3), seed=0)
    msg = str(err.value)
    assert "k=3" in msg and "only 2 label classes" in msg and "by: family" in msg
    with pytest.raises(PartitionError, match=r"k=7 .* only 6 family classes"):
        partition(ds, cfg("label-quantity", by="family", k=7), seed=0)


def test_family_dirichlet_concentrates_families(ds: Dataset) -> None:
    def top_share(fed: Federation) -> float:
        """Mean over families of the largest share one client holds of that family."""
        fams = [c.train.meta("family") for c in fed.clients]
        shares = []
        for f in FAMILIES:
            per_client = np.array([np.sum(x == f) for x in fams])
            shares.append(per_client.max() / per_client.sum())
        return float(np.mean(shares))

    skewed = partition(ds, cfg("family-dirichlet", alpha=0.05, min_client_size=1), seed=0)
    iid = partition(ds, cfg("iid"), seed=0)
    assert top_share(skewed) > 0.75
    assert top_share(iid) < 0.35
    classes = skewed.info["classes"]
    assert {"benign:browser", "benign:office", "benign:game", *FAMILIES} == set(classes)


def test_quantity_skew_gives_unequal_sizes(ds: Dataset) -> None:
    dirichlet = partition(ds, cfg("quantity", clients=8, alpha=0.5), seed=0)
    lognormal = partition(ds, cfg("quantity", clients=8, quantity="lognormal", sigma=1.5), seed=0)
    iid = partition(ds, cfg("iid", clients=8), seed=0)
    assert gini(dirichlet.sizes()) > 0.25
    assert gini(lognormal.sizes()) > 0.25
    assert gini(iid.sizes()) < 0.01
    # the content stays IID: the malware share barely moves between the larger clients
    big = dirichlet.sizes() > 100
    assert np.std(malware_share(dirichlet)[big]) < 0.08
    assert "sigma" not in dirichlet.info["params"] and "alpha" not in lognormal.info["params"]


def test_feature_noise_grows_with_client_index(ds: Dataset) -> None:
    before = ds.X.copy()
    fed = partition(ds, cfg("feature-noise", clients=5, noise=1.0), seed=0)
    assert np.array_equal(ds.X, before)  # the source dataset is untouched
    assert np.array_equal(fed.test.X, ds.X[uids(fed.test)])  # and so is the global test set
    # The noise lives on the signed-log scale, in units of each feature's std there.
    std = signed_log1p(ds.X.astype(np.float64)).std(axis=0)
    measured = []
    for c in fed.clients:
        for part in (c.train, c.test):
            shift = signed_log1p(part.X.astype(np.float64)) - signed_log1p(
                ds.X[uids(part)].astype(np.float64)
            )
            measured.append((shift / std).std())
    train_noise, test_noise = measured[0::2], measured[1::2]
    assert train_noise[0] == 0.0 and test_noise[0] == 0.0
    assert np.all(np.diff(train_noise) > 0) and np.all(np.diff(test_noise) > 0)
    assert train_noise[-1] == pytest.approx(1.0, rel=0.1)
    assert fed.info["noise_scale"] == [0.0, 0.25, 0.5, 0.75, 1.0]


def test_feature_subset_zeroes_hidden_columns(ds: Dataset) -> None:
    fed = partition(ds, cfg("feature-subset", subset_fraction=0.5), seed=0)
    masks = feature_masks(fed)
    assert masks.shape == (4, D)
    assert np.all(masks.sum(axis=1) == 4)
    assert len({tuple(m) for m in masks}) > 1  # clients see different features
    for c, mask in zip(fed.clients, masks, strict=True):
        for part in (c.train, c.test):
            assert np.all(part.X[:, ~mask] == 0.0)
            assert np.array_equal(part.X[:, mask], ds.X[uids(part)][:, mask])
    assert np.all(fed.test.X != 0.0)
    assert feature_masks(partition(ds, cfg("iid"), seed=0)).all()


def test_temporal_windows_are_ordered_and_equal(ds: Dataset) -> None:
    fed = partition(ds, cfg("temporal", clients=5, client_test_fraction=0.0), seed=0)
    assert fed.sizes().max() - fed.sizes().min() <= 1
    times = [c.train.meta("first_seen") for c in fed.clients]
    for older, newer in itertools.pairwise(times):
        assert older.max() <= newer.min()
    assert len(fed.info["windows"]) == 5


def test_temporal_accepts_numeric_and_string_times() -> None:
    data = make_dataset()
    assert data.metadata is not None
    stamps = data.metadata["first_seen"]
    data.metadata["first_seen"] = stamps.astype("int64") // 10**9  # Unix seconds
    numeric = partition(data, cfg("temporal"), seed=0)
    data.metadata["first_seen"] = stamps.map(lambda t: t.isoformat())
    text = partition(data, cfg("temporal"), seed=0)
    pairs = zip(client_uids(numeric), client_uids(text), strict=True)
    assert all(np.array_equal(a, b) for a, b in pairs)


def test_temporal_refuses_missing_or_unreadable_dates() -> None:
    data = make_dataset()
    assert data.metadata is not None
    data.metadata["first_seen"] = data.metadata["first_seen"].astype(object)
    data.metadata.loc[5:9, "first_seen"] = None
    with pytest.raises(PartitionError, match=r"without a first_seen value.*Drop those samples"):
        partition(data, cfg("temporal", test_fraction=0.01), seed=0)
    data.metadata["first_seen"] = "someday"
    with pytest.raises(PartitionError, match="cannot read first_seen values as dates"):
        partition(data, cfg("temporal"), seed=0)


def test_natural_gives_one_client_per_source(ds: Dataset) -> None:
    fed = partition(ds, cfg("natural", column="source"), seed=0)
    assert fed.info["client_names"] == SOURCES
    for c, name in zip(fed.clients, SOURCES, strict=True):
        assert set(c.train.meta("source")) == {name}
        assert set(c.test.meta("source")) == {name}


def test_natural_needs_matching_client_count(ds: Dataset) -> None:
    with pytest.raises(PartitionError) as err:
        partition(ds, cfg("natural", clients=10), seed=0)
    assert "4 clients" in str(err.value) and "Set clients: 4." in str(err.value)


def test_natural_small_group_trips_the_size_guard() -> None:
    data = make_dataset()
    assert data.metadata is not None
    data.metadata.loc[:5, "source"] = "tiny"
    with pytest.raises(PartitionError) as err:
        partition(data, cfg("natural", clients=5, min_client_size=10), seed=0)
    msg = str(err.value)
    assert (
        "client 3 ('tiny')" in msg
    )  # clients follow the sorted values and "min_client_size=10" in msg and "Merge" in msg


@pytest.mark.parametrize(
    ("setting", "column"),
    [
        (cfg("temporal"), "first_seen"),
        (cfg("natural", column="lab"), "lab"),
        (cfg("family-dirichlet"), "family"),
        (cfg("label-quantity", by="family"), "family"),
    ],
)
def test_missing_metadata_is_a_clear_error(setting: PartitionConfig, column: str) -> None:
    with pytest.raises(PartitionError) as err:
        partition(make_dataset(metadata=False), setting, seed=0)
    msg = str(err.value)
    assert f"needs the metadata column '{column}'" in msg and "no metadata" in msg
    assert err.value.fix is not None and "choose another partition" in err.value.fix


def test_missing_metadata_names_the_columns_there_are(ds: Dataset) -> None:
    with pytest.raises(PartitionError, match=r"has columns \['uid', 'family'"):
        partition(ds, cfg("natural", column="lab"), seed=0)


def test_too_many_clients_for_the_data_is_refused_up_front() -> None:
    small = make_dataset(n=100)
    with pytest.raises(PartitionError) as err:
        partition(small, cfg("iid", clients=50), seed=0)
    msg = str(err.value)
    assert "80 training samples" in msg and "50 clients" in msg
    assert "Use at most 8 clients" in msg


def test_deterministic_partition_under_the_minimum_fails_at_once(ds: Dataset) -> None:
    with pytest.raises(PartitionError) as err:
        partition(
            ds, cfg("label-quantity", by="family", k=1, clients=30, min_client_size=20), seed=0
        )
    assert "gives client" in str(err.value) and "a larger k" in str(err.value)


def test_random_partition_gives_up_after_many_draws(ds: Dataset) -> None:
    with pytest.raises(PartitionError) as err:
        partition(ds, cfg("dirichlet", clients=20, alpha=0.01, min_client_size=20), seed=0)
    msg = str(err.value)
    assert "20 clients and alpha=0.01" in msg and "100 draws" in msg
    assert "min_client_size=20" in msg and "larger alpha" in msg and "fewer clients" in msg
    # quantity skew reserves the minimum per client first, so even extreme skew fits the guard
    fed = partition(
        ds, cfg("quantity", clients=20, quantity="lognormal", sigma=8.0, min_client_size=20), 0
    )
    assert fed.sizes().min() >= 20 and fed.info["draws"] == 1


def test_client_test_split_is_stratified_and_optional(ds: Dataset) -> None:
    fed = partition(ds, cfg("iid", client_test_fraction=0.25), seed=0)
    for c in fed.clients:
        total = c.n_train + c.test.n_samples
        assert c.test.n_samples == round(0.25 * total)
        assert abs(np.mean(c.test.y == 1) - np.mean(np.r_[c.train.y, c.test.y] == 1)) < 0.02
    none = partition(ds, cfg("iid", client_test_fraction=0.0), seed=0)
    for c in none.clients:
        assert c.test.X.shape == (0, D) and c.test.y.shape == (0,)


def test_small_client_keeps_its_minimum_for_training() -> None:
    small = make_dataset(n=100)
    fed = partition(
        small, cfg("iid", clients=4, min_client_size=18, client_test_fraction=0.5), seed=0
    )
    assert all(c.n_train >= 18 for c in fed.clients)
    assert all(c.test.n_samples == 2 for c in fed.clients)  # 20 each, 18 kept for training


def test_client_label_counts_shape(ds: Dataset) -> None:
    fed = partition(ds, cfg("dirichlet", clients=6), seed=0)
    counts = client_label_counts(fed)
    assert counts.shape == (6, 2) and counts.dtype == np.int64
    assert counts.sum() == fed.sizes().sum()


def test_largest_remainder_adds_up_exactly() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        w = rng.random(rng.integers(1, 20))
        total = int(rng.integers(0, 1000))
        counts = largest_remainder(w, total)
        assert counts.sum() == total and np.all(counts >= 0)
        assert np.all(np.abs(counts - w / w.sum() * total) < 1.0)


def test_stratified_sample_keeps_shares() -> None:
    labels = np.r_[np.zeros(700), np.ones(300)]
    picked = stratified_sample(np.arange(1000), labels, 100, np.random.default_rng(0))
    assert picked.size == 100 and np.unique(picked).size == 100
    assert np.sum(labels[picked] == 1) == 30


def test_degenerate_dirichlet_draw_becomes_one_hot() -> None:
    p = dirichlet_proportions(1e-9, 6, np.random.default_rng(0))
    assert p.sum() == pytest.approx(1.0) and np.all(np.isfinite(p))


def test_feature_skew_mixes_with_label_skew(ds: Dataset) -> None:
    plain = partition(ds, cfg("dirichlet", clients=5, alpha=0.3), seed=0)
    mixed = partition(ds, cfg("dirichlet", clients=5, alpha=0.3, feature_skew="noise"), seed=0)
    # The same samples go to the same clients: the label skew is unchanged ...
    for a, b in zip(plain.clients, mixed.clients, strict=True):
        assert np.array_equal(uids(a.train), uids(b.train))
    # ... and the clients' features carry the noise, growing with the client index.
    assert mixed.info["noise_scale"] == [0.0, 0.125, 0.25, 0.375, 0.5]
    assert mixed.info["params"]["feature_skew"] == "noise"
    assert np.array_equal(mixed.clients[0].train.X, plain.clients[0].train.X)
    assert not np.array_equal(mixed.clients[4].train.X, plain.clients[4].train.X)
    hidden = partition(ds, cfg("dirichlet", alpha=0.3, feature_skew="subset"), seed=0)
    assert not feature_masks(hidden).all()


# --- client-wise Dirichlet (dirichlet_over: clients, Hsu et al. 2019) -------------------------

CLIENT_WISE = {
    "dirichlet": cfg("dirichlet", dirichlet_over="clients", alpha=0.3, clients=7),
    "family-dirichlet": cfg("family-dirichlet", dirichlet_over="clients", alpha=0.3, clients=7),
}


def client_totals(fed: Federation) -> np.ndarray:
    """Samples each client was given (local train plus local test)."""
    return np.array([c.n_train + c.test.n_samples for c in fed.clients])


def client_groups(c: Any) -> np.ndarray:
    """A client's samples (train plus local test) as ``family-dirichlet`` classes."""
    fam = np.concatenate([c.train.meta("family"), c.test.meta("family")]).astype(object)
    cat = np.concatenate([c.train.meta("category"), c.test.meta("category")]).astype(object)
    return np.where(pd.isna(fam), "benign:" + cat.astype(str), fam)


@pytest.mark.parametrize("kind", sorted(CLIENT_WISE))
def test_client_wise_dirichlet_keeps_every_sample_in_equal_clients(kind: str) -> None:
    data = make_dataset(unlabelled=301)
    setting = CLIENT_WISE[kind]
    fed = partition(data, setting, seed=1)
    pieces = [uids(fed.test)] + [u for c in fed.clients for u in (uids(c.train), uids(c.test))]
    assert np.array_equal(np.sort(np.concatenate(pieces)), np.arange(N))
    totals = client_totals(fed)
    assert totals.sum() == N - fed.test.n_samples
    assert totals.max() - totals.min() <= 1
    # unlabelled samples are dealt out uniformly, as for the class-wise variant
    unlabelled = [int(np.sum(c.train.y == -1)) for c in fed.clients]
    assert sum(unlabelled) == 301 and max(unlabelled) - min(unlabelled) <= 1
    for c in fed.clients:
        assert np.array_equal(c.train.y, data.y[uids(c.train)])
    assert fed.info["params"]["dirichlet_over"] == "clients"
    assert fed.info["params"]["alpha"] == 0.3
    assert fed.info["draws"] == 1  # equal sizes always pass the size guard
    json.dumps(fed.info)


@pytest.mark.parametrize("kind", sorted(CLIENT_WISE))
def test_client_wise_dirichlet_is_reproducible(ds: Dataset, kind: str) -> None:
    a, b, other = (partition(ds, CLIENT_WISE[kind], seed=s) for s in (7, 7, 8))
    assert all(np.array_equal(u, v) for u, v in zip(client_uids(a), client_uids(b), strict=True))
    assert a.info == b.info
    assert not all(
        np.array_equal(u, v) for u, v in zip(client_uids(a), client_uids(other), strict=True)
    )


def test_client_wise_dirichlet_skew_follows_alpha(ds: Dataset) -> None:
    def fed(alpha: float) -> Federation:
        setting = cfg(
            "dirichlet", dirichlet_over="clients", alpha=alpha, clients=10, client_test_fraction=0
        )
        return partition(ds, setting, seed=0)

    counts = client_label_counts(fed(0.01))
    assert np.mean(counts.max(axis=1) / counts.sum(axis=1)) > 0.9  # (nearly) one-class clients
    # q ~ Dir(alpha * p) has std sqrt(p(1 - p) / (alpha + 1)) around the pooled share p: about
    # 0.05 at alpha 100 and 0.015 at alpha 1000 (plus whatever the last client is left with).
    pooled = np.mean(ds.y == 1)
    for alpha, bound in ((100.0, 0.12), (1000.0, 0.05)):
        shares = malware_share(fed(alpha))
        assert np.std(shares) < bound
        assert abs(np.mean(shares) - pooled) < 0.02


def test_client_wise_dirichlet_fits_binary_labels_with_tiny_alpha(ds: Dataset) -> None:
    classwise = cfg("dirichlet", alpha=0.05, clients=10)
    with pytest.raises(PartitionError, match="in all 100 draws"):
        partition(ds, classwise, seed=0)
    fed = partition(ds, classwise.model_copy(update={"dirichlet_over": "clients"}), seed=0)
    assert client_totals(fed).max() - client_totals(fed).min() <= 1
    assert fed.sizes().min() >= 10
    counts = client_label_counts(fed)
    assert np.mean(counts.max(axis=1) / counts.sum(axis=1)) > 0.85  # and the labels are skewed


@pytest.mark.parametrize("kind", sorted(CLIENT_WISE))
def test_client_wise_dirichlet_preserves_the_pooled_class_distribution(
    ds: Dataset, kind: str
) -> None:
    fed = partition(ds, CLIENT_WISE[kind].model_copy(update={"alpha": 0.05}), seed=2)
    pool = np.setdiff1d(np.arange(N), uids(fed.test))  # the training side, before assignment
    # together the (skewed) clients hold exactly the pooled labels and families
    labels = np.concatenate([np.r_[c.train.y, c.test.y] for c in fed.clients])
    assert np.bincount(labels).tolist() == np.bincount(ds.y[pool]).tolist()
    groups = pd.Series(np.concatenate([client_groups(c) for c in fed.clients])).value_counts()
    fam = ds.meta("family")[pool].astype(object)
    cat = ds.meta("category")[pool].astype(object)
    expected = pd.Series(np.where(pd.isna(fam), "benign:" + cat.astype(str), fam)).value_counts()
    assert groups.sort_index().to_dict() == expected.sort_index().to_dict()


def test_family_dirichlet_over_clients_concentrates_families(ds: Dataset) -> None:
    setting = cfg("family-dirichlet", dirichlet_over="clients", alpha=0.01, clients=20)
    fed = partition(ds, setting, seed=0)
    assert set(fed.info["classes"]) == {"benign:browser", "benign:office", "benign:game", *FAMILIES}
    totals = client_totals(fed)
    assert totals.max() - totals.min() <= 1

    # one class (a family or a benign category) dominates most clients; a client whose class
    # runs out (the small families hold fewer samples than one client) takes others instead
    def top_share(f: Federation) -> float:
        groups = [pd.Series(client_groups(c)).value_counts() for c in f.clients]
        return float(np.mean([g.iloc[0] / g.sum() for g in groups]))

    assert top_share(fed) > 0.7
    assert top_share(partition(ds, cfg("iid", clients=20), seed=0)) < 0.3
    # the class-wise default is unchanged by the new option
    default = partition(ds, cfg("family-dirichlet", alpha=0.5, min_client_size=1), seed=0)
    assert default.info["params"]["dirichlet_over"] == "classes"


def test_mix_quotas_passes_an_exhausted_class_on_in_proportion() -> None:
    # 50/30/20 of 100, but class 0 has only 10: its 40 missing go to 1 and 2 as 30:20
    quotas = mix_quotas(np.array([0.5, 0.3, 0.2]), np.array([10, 100, 100]), 100)
    assert quotas.tolist() == [10, 54, 36]
    # a mix with no weight on what is left falls back to what is left
    assert mix_quotas(np.array([1.0, 0.0, 0.0]), np.array([5, 30, 10]), 25).tolist() == [5, 15, 5]
    assert mix_quotas(np.array([0.2, 0.8]), np.array([50, 50]), 0).tolist() == [0, 0]


def test_tiny_alpha_class_mix_is_one_hot_by_the_prior() -> None:
    rng = np.random.default_rng(0)
    mixes = np.array([class_mix(1e-12, np.array([0.9, 0.1]), rng) for _ in range(200)])
    assert np.all(np.isfinite(mixes)) and np.allclose(mixes.sum(axis=1), 1.0)
    assert np.allclose(mixes.max(axis=1), 1.0)  # the limit of Dir(alpha * p) as alpha -> 0
    assert 150 < int(np.sum(mixes[:, 0] == mixes.max(axis=1))) < 200  # class k with prob p_k
