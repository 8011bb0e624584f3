"""A participant's own data: loaded once, split into training rows and a local test split, and
summarised into what it may share (counts and feature sums; never a row).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fedmetamal.config import DatasetConfig
from fedmetamal.data.dataset import Dataset
from fedmetamal.data.heterogeneity_stats import feature_range, group_counts
from fedmetamal.data.preprocess import FeatureSums
from fedmetamal.data.splits import stratified_sample
from fedmetamal.errors import DataError
from fedmetamal.net.payload import inline_tensor
from fedmetamal.service.run_state import RANGE_KEYS, SUM_KEYS
from fedmetamal.v1 import common_pb2

#: Share of a participant's labelled rows kept for local evaluation when no --test-data is given.
DEFAULT_HOLDOUT = 0.2


@dataclass
class LocalData:
    name: str
    train: Dataset  # labelled training rows, with their metadata (family, first_seen)
    X: np.ndarray  # labelled training rows (raw features)
    y: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    feature_names: list[str]
    feature_schema: str
    n_unlabelled: int
    families: dict[str, int]  # labelled rows per malware family / benign category
    first_seen: tuple[float, float] | None

    @property
    def n_features(self) -> int:
        return int(self.X.shape[1])


def _load(path: Path) -> Dataset:
    from fedmetamal.data.sources import load_dataset

    return load_dataset(DatasetConfig(source=str(path)), seed=0)


def load_local_data(
    data: Path, test_data: Path | None = None, holdout: float = DEFAULT_HOLDOUT, seed: int = 0
) -> LocalData:
    """The participant's data. Without ``test_data``, a stratified ``holdout`` share of the
    labelled rows becomes the local test split (0: none). Unlabelled rows are counted but not
    trained on (the network runtime trains supervised)."""
    if not 0.0 <= holdout < 1.0:
        raise DataError(f"--holdout must lie in [0, 1), got {holdout}.")
    ds = _load(data)
    labelled = np.flatnonzero(ds.y >= 0)
    if labelled.size == 0:
        raise DataError(
            f"'{data}' holds no labelled rows to train on.", "Add labels (1 malware, 0 benign)."
        )
    train_idx, test_idx = labelled, np.empty(0, dtype=np.int64)
    X_test = np.zeros((0, ds.n_features), np.float32)
    y_test = np.zeros(0, np.int8)
    if test_data is not None:
        test = _load(test_data)
        if test.feature_names != ds.feature_names:
            raise DataError(
                f"'{test_data}' has other feature columns than '{data}'.",
                "Extract both with the same schema.",
            )
        keep = test.y >= 0
        X_test, y_test = np.asarray(test.X)[keep], test.y[keep]
    elif holdout > 0:
        rng = np.random.default_rng(seed)
        n_test = round(holdout * labelled.size)
        if 0 < n_test < labelled.size:
            test_idx = stratified_sample(labelled, ds.y[labelled], n_test, rng)
            train_idx = np.setdiff1d(labelled, test_idx, assume_unique=True)
            X_test, y_test = np.asarray(ds.X)[test_idx], ds.y[test_idx]
    train = ds.subset(train_idx)
    first_seen = None
    if ds.has_metadata("first_seen"):
        import pandas as pd

        t = pd.to_datetime(ds.meta("first_seen")[train_idx], errors="coerce", utc=True)
        t = t[~pd.isna(t)]
        if len(t):
            first_seen = (float(t.min().timestamp()), float(t.max().timestamp()))
    schema = ds.info.get("schema") or ""
    stamp = ds.info.get("feature_schema")
    if isinstance(stamp, dict) and stamp.get("name"):
        schema = str(stamp["name"])
    return LocalData(
        name=ds.name,
        train=train,
        X=np.ascontiguousarray(np.asarray(ds.X)[train_idx], dtype=np.float32),
        y=ds.y[train_idx],
        X_test=np.ascontiguousarray(X_test, dtype=np.float32),
        y_test=y_test,
        feature_names=list(ds.feature_names),
        feature_schema=str(schema),
        n_unlabelled=int((ds.y < 0).sum()),
        families=group_counts(train),
        first_seen=first_seen,
    )


def schema_digest(names: list[str]) -> str:
    return hashlib.sha256("\n".join(names).encode()).hexdigest()


def dataset_summary(data: LocalData) -> common_pb2.DatasetSummary:
    """What the participant reports: sizes, label and family counts, feature sums."""
    sums = FeatureSums.of(data.X)
    msg = common_pb2.DatasetSummary(
        dataset_name=data.name[:200],
        n_train=len(data.y),
        n_unlabelled=data.n_unlabelled,
        n_test=len(data.y_test),
        n_features=data.n_features,
        feature_schema=data.feature_schema,
        schema_digest=schema_digest(data.feature_names),
        feature_names=data.feature_names,
    )
    msg.label_counts["malware"] = int((data.y == 1).sum())
    msg.label_counts["benign"] = int((data.y == 0).sum())
    msg.family_counts.update(data.families)
    if data.first_seen:
        msg.first_seen_min, msg.first_seen_max = data.first_seen
    msg.feature_sums.extend(inline_tensor(k, getattr(sums, k)) for k in SUM_KEYS)
    lo, hi = feature_range(data.train)
    msg.feature_sums.extend(inline_tensor(k, v) for k, v in zip(RANGE_KEYS, (lo, hi), strict=True))
    return msg
