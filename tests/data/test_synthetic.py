"""The synthetic generator: deterministic, EMBER-shaped, with families, noise and drift."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

from fedmetamal.config import PreprocessConfig, SyntheticConfig
from fedmetamal.data.preprocess import FeatureSums, Preprocessor, signed_log1p
from fedmetamal.data.synthetic import (
    DEFAULT_WIDTH,
    LATE_START,
    TIMELINE_DAYS,
    TIMELINE_START,
    generate,
    group_sizes,
)
from fedmetamal.errors import DataError

SMALL = SyntheticConfig(n_samples=1500, n_features=300)


@pytest.fixture(scope="module")
def default():
    return generate(SyntheticConfig(), seed=0)


def _columns(ds, prefix: str) -> np.ndarray:
    return np.array([i for i, n in enumerate(ds.feature_names) if n.startswith(prefix)])


def _true_malware(ds) -> np.ndarray:
    return pd.notna(ds.meta("family")).astype(np.int8)


def test_same_seed_gives_identical_bytes():
    a, b = generate(SMALL, 7), generate(SMALL, 7)
    assert a.X.tobytes() == b.X.tobytes()
    assert a.y.tobytes() == b.y.tobytes()
    assert a.feature_names == b.feature_names
    pd.testing.assert_frame_equal(a.metadata, b.metadata)
    assert a.info == b.info


def test_different_seed_gives_different_data():
    a, b = generate(SMALL, 1), generate(SMALL, 2)
    assert a.X.shape == b.X.shape
    assert not np.array_equal(a.X, b.X)
    assert not np.array_equal(a.meta("sha256"), b.meta("sha256"))


def test_default_shape_types_and_names(default):
    ds = default
    assert ds.X.shape == (12000, 2568) == (12000, DEFAULT_WIDTH)
    assert ds.X.dtype == np.float32 and ds.y.dtype == np.int8
    assert set(np.unique(ds.y)) == {0, 1}
    assert len(set(ds.feature_names)) == ds.n_features
    for name in ("general.size", "byteentropy.37", "strings.n", "imports.hash_123"):
        assert name in ds.feature_names
    assert "section.entropy_max" in ds.feature_names
    assert np.isfinite(ds.X).all() and (ds.X >= 0).all()
    assert list(ds.metadata.columns) == ["family", "category", "first_seen", "sha256"]
    sha = ds.meta("sha256")
    assert all(len(s) == 64 for s in sha) and len(set(sha)) == ds.n_samples
    assert int(sha[0], 16) >= 0  # hexadecimal


def test_feature_kinds_look_like_pe_features(default):
    X = default.X
    for block in ("byteentropy.", "histogram.", "strings.printabledist_"):
        sums = X[:, _columns(default, block)].sum(axis=1)
        np.testing.assert_allclose(sums, 1.0, atol=1e-4)
    entropy = X[:, _columns(default, "section.entropy")]
    assert entropy.max() <= 8.0 and entropy.min() >= 0.0
    code_ratio = X[:, default.feature_names.index("general.code_ratio")]
    assert code_ratio.min() >= 0.0 and code_ratio.max() <= 1.0
    imports = X[:, _columns(default, "imports.")]
    assert set(np.unique(imports)) == {0.0, 1.0}
    assert imports.mean() < 0.15  # sparse indicators
    size = X[:, default.feature_names.index("general.size")]
    assert size.min() > 0  # every file has a size
    assert size.max() > 5 * np.median(size)  # heavy tail
    assert size.max() > 100  # so preprocessing takes its log


def test_class_share_and_label_noise(default):
    cfg = SyntheticConfig()
    truth = _true_malware(default)
    assert truth.sum() == round(cfg.n_samples * cfg.malware_fraction)
    assert abs(default.y.mean() - cfg.malware_fraction) < 0.02
    flipped = np.mean(truth != default.y)
    assert flipped == pytest.approx(cfg.label_noise, abs=0.002)
    clean = generate(SMALL.model_copy(update={"label_noise": 0.0}), 0)
    assert np.array_equal(clean.y, _true_malware(clean))
    noisy = generate(SMALL.model_copy(update={"label_noise": 0.2}), 0)
    assert np.mean(noisy.y != _true_malware(noisy)) == pytest.approx(0.2, abs=0.01)


def test_families_and_categories(default):
    family = default.metadata["family"]
    category = default.metadata["category"]
    assert (family.isna() == category.notna()).all()  # exactly one of the two per row
    counts = family.value_counts()
    assert len(counts) == 12 and all(n.startswith("family_") for n in counts.index)
    assert counts.min() >= 10
    assert counts.max() >= 5 * counts.min()  # Zipf-like, as real families
    assert category.nunique() == 6
    assert family.dropna().map(type).eq(str).all()


def test_late_families_appear_only_late(default):
    first_seen = default.metadata["first_seen"]
    assert isinstance(first_seen.dtype, pd.DatetimeTZDtype) and str(first_seen.dt.tz) == "UTC"
    assert first_seen.min() >= TIMELINE_START
    assert first_seen.max() <= TIMELINE_START + pd.Timedelta(days=TIMELINE_DAYS)
    late = default.info["late_families"]
    assert 1 <= len(late) < 12
    cutoff = TIMELINE_START + pd.Timedelta(days=LATE_START * TIMELINE_DAYS)
    family = default.metadata["family"]
    for name in late:
        assert first_seen[family == name].min() >= cutoff
    early = family.notna() & ~family.isin(late)
    halfway = TIMELINE_START + pd.Timedelta(days=TIMELINE_DAYS / 2)
    assert set(family[early & (first_seen < halfway)]) == set(family[early])
    # a temporal split meets families it never saw
    before = set(family[(first_seen < cutoff) & family.notna()])
    assert set(late).isdisjoint(before)
    static = generate(SMALL.model_copy(update={"drift": 0.0}), 0)
    assert static.info["late_families"] == []


def _drifting_features(ds) -> int:
    """Features whose mean moves by > 0.4 std between the first and last third of a family."""
    Z = signed_log1p(ds.X.astype(np.float64))
    Z = (Z - Z.mean(0)) / (Z.std(0) + 1e-9)
    family = ds.meta("family")
    early = [f for f in pd.unique(family) if f is not None and f not in ds.info["late_families"]]
    top = max(early, key=lambda f: int(np.sum(family == f)))
    rows = np.flatnonzero(family == top)
    rows = rows[np.argsort(ds.meta("first_seen")[rows], kind="stable")]
    k = rows.size // 3
    shift = np.abs(Z[rows[:k]].mean(0) - Z[rows[-k:]].mean(0))
    return int(np.sum(shift > 0.4))


def test_drift_moves_family_features():
    cfg = SyntheticConfig(n_samples=3000, n_features=1024)
    still = _drifting_features(generate(cfg.model_copy(update={"drift": 0.0}), 0))
    moving = _drifting_features(generate(cfg, 0))
    assert still <= 3
    assert moving >= 20


@pytest.mark.parametrize("width", [16, 17, 40, 333, 4000])
def test_any_width_works(width):
    ds = generate(SyntheticConfig(n_samples=400, n_features=width), 0)
    assert ds.X.shape == (400, width)
    assert len(set(ds.feature_names)) == width
    assert np.isfinite(ds.X).all()
    assert sum(group_sizes(width)) == width and min(group_sizes(width)) >= 1


def test_small_config_edge_cases():
    one = generate(
        SyntheticConfig(n_samples=200, n_features=16, n_families=1, n_benign_categories=1), 0
    )
    assert one.metadata["family"].nunique() == 1 and one.info["late_families"] == []
    one.check_trainable()


def test_too_few_samples_is_a_clear_error():
    with pytest.raises(DataError, match="n_samples"):
        generate(SyntheticConfig(n_samples=300, n_families=40), 0)
    with pytest.raises(DataError, match="benign categories"):
        generate(SyntheticConfig(n_samples=300, n_benign_categories=20, malware_fraction=0.9), 0)


def _logreg_auc(ds, seed: int = 0) -> float:
    Xtr, Xte, ytr, yte = train_test_split(
        ds.X, ds.y, test_size=0.25, stratify=ds.y, random_state=seed
    )
    pre = Preprocessor.fit([FeatureSums.of(Xtr)], PreprocessConfig())
    model = LogisticRegression(C=0.01, max_iter=500).fit(pre.apply(Xtr), ytr)
    return float(roc_auc_score(yte, model.decision_function(pre.apply(Xte))))


def test_learnable_and_signal_scales_difficulty():
    cfg = SyntheticConfig(n_samples=2000, n_features=256)
    weak = _logreg_auc(generate(cfg.model_copy(update={"signal": 0.3}), 0))
    normal = _logreg_auc(generate(cfg, 0))
    assert 0.7 < normal < 0.99
    assert weak < normal - 0.05


@pytest.mark.slow
def test_centralised_mlp_lands_in_the_target_auc(default):
    """The default dataset is learnable but not trivial: 2568-256-64-1 MLP, Adam, 10 epochs."""
    ds = default
    Xtr, Xte, ytr, yte = train_test_split(ds.X, ds.y, test_size=0.2, stratify=ds.y, random_state=0)
    pre = Preprocessor.fit([FeatureSums.of(Xtr)], PreprocessConfig())
    Ztr, Zte = torch.from_numpy(pre.apply(Xtr)), torch.from_numpy(pre.apply(Xte))
    target = torch.from_numpy(ytr.astype(np.float32))
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(ds.n_features, 256),
        torch.nn.ReLU(),
        torch.nn.Linear(256, 64),
        torch.nn.ReLU(),
        torch.nn.Linear(64, 1),
    )
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    order = torch.Generator().manual_seed(0)
    for _ in range(10):
        perm = torch.randperm(len(Ztr), generator=order)
        for start in range(0, len(perm), 128):
            batch = perm[start : start + 128]
            logits = net(Ztr[batch]).squeeze(1)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, target[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        scores = net(Zte).squeeze(1).numpy()
    auc = roc_auc_score(yte, scores)
    assert 0.93 <= auc <= 0.99
