"""The one in-memory dataset type every loader produces and every runtime consumes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from fedmetamal.errors import DataError

MALWARE = 1
BENIGN = 0
UNLABELLED = -1

#: Metadata columns with a meaning the library knows about; any other column is kept as-is.
KNOWN_METADATA = ("family", "first_seen", "source", "sha256")


@dataclass
class Dataset:
    """Features, labels and optional per-sample metadata.

    ``X`` is float32 (n x d) and may be a read-only memory map for large datasets; ``y`` is int8
    with 1 = malware, 0 = benign and -1 = unlabelled. ``metadata`` is a DataFrame with one row
    per sample (columns such as ``family``, ``first_seen``, ``source``, ``sha256``) or ``None``.
    ``info`` records provenance and the loader's report (dropped columns, NaN policy, ...).
    """

    X: np.ndarray
    y: np.ndarray
    feature_names: list[str]
    metadata: pd.DataFrame | None = None
    name: str = "dataset"
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.X.ndim != 2:
            raise DataError(f"Features must be a 2-D table, got shape {self.X.shape}.")
        if self.X.dtype != np.float32:
            self.X = np.asarray(self.X, dtype=np.float32)
        self.y = np.asarray(self.y).astype(np.int8, copy=False)
        n, d = self.X.shape
        if self.y.shape != (n,):
            raise DataError(f"Labels have shape {self.y.shape} but features have {n} rows.")
        if len(self.feature_names) != d:
            raise DataError(
                f"{len(self.feature_names)} feature names for {d} feature columns.",
                "Give one name per column.",
            )
        bad = np.setdiff1d(np.unique(self.y), [MALWARE, BENIGN, UNLABELLED])
        if bad.size:
            raise DataError(
                f"Labels must be 1 (malware), 0 (benign) or -1 (unlabelled); found {bad.tolist()}."
            )
        if self.metadata is not None:
            if len(self.metadata) != n:
                raise DataError(f"Metadata has {len(self.metadata)} rows but features have {n}.")
            self.metadata = self.metadata.reset_index(drop=True)

    @property
    def n_samples(self) -> int:
        return int(self.X.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.X.shape[1])

    @property
    def labelled_mask(self) -> np.ndarray:
        return self.y != UNLABELLED

    def has_metadata(self, column: str) -> bool:
        return self.metadata is not None and column in self.metadata.columns

    def meta(self, column: str) -> np.ndarray:
        """One metadata column as an array; a clear error when the dataset lacks it."""
        if not self.has_metadata(column):
            have = [] if self.metadata is None else list(self.metadata.columns)
            raise DataError(
                f"Dataset '{self.name}' has no metadata column '{column}' "
                f"(it has: {have or 'none'}).",
                "Choose a partition that does not need it, or load a dataset that carries it.",
            )
        assert self.metadata is not None
        return self.metadata[column].to_numpy()

    def subset(self, index: Sequence[int] | np.ndarray) -> Dataset:
        """Rows ``index`` as a new in-memory dataset (copies, so memory maps are released)."""
        idx = np.asarray(index, dtype=np.int64)
        meta = None if self.metadata is None else self.metadata.iloc[idx].reset_index(drop=True)
        return Dataset(
            X=np.ascontiguousarray(self.X[idx], dtype=np.float32),
            y=self.y[idx].copy(),
            feature_names=list(self.feature_names),
            metadata=meta,
            name=self.name,
            info=dict(self.info),
        )

    def class_counts(self) -> dict[str, int]:
        return {
            "malware": int(np.sum(self.y == MALWARE)),
            "benign": int(np.sum(self.y == BENIGN)),
            "unlabelled": int(np.sum(self.y == UNLABELLED)),
        }

    def check_trainable(self) -> None:
        """Refuse data that cannot train a detector: empty, or a single class."""
        if self.n_samples == 0:
            raise DataError(f"Dataset '{self.name}' has no samples.", "Check the file and filters.")
        counts = self.class_counts()
        if counts["malware"] == 0 or counts["benign"] == 0:
            raise DataError(
                f"Dataset '{self.name}' has a single class "
                f"({counts['malware']} malware, {counts['benign']} benign labelled samples).",
                "A detector needs both malware and benign samples; check the label column.",
            )

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "samples": self.n_samples,
            "features": self.n_features,
            **self.class_counts(),
            "metadata": [] if self.metadata is None else list(self.metadata.columns),
        }
