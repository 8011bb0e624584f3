"""A federation: each client's own train/test data plus a global held-out test set."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fedmetamal.data.dataset import Dataset


@dataclass
class ClientData:
    """One participant's data; ``test`` is its local evaluation split (may be empty)."""

    client_id: int
    train: Dataset
    test: Dataset

    @property
    def n_train(self) -> int:
        return self.train.n_samples


@dataclass
class Federation:
    clients: list[ClientData]
    test: Dataset
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def n_clients(self) -> int:
        return len(self.clients)

    @property
    def n_features(self) -> int:
        return self.test.n_features

    @property
    def feature_names(self) -> list[str]:
        return self.test.feature_names

    def sizes(self) -> np.ndarray:
        return np.array([c.n_train for c in self.clients], dtype=np.int64)

    def pooled_train(self) -> Dataset:
        """All clients' training data in one dataset (the centralised baseline's view)."""
        X = np.concatenate([c.train.X for c in self.clients])
        y = np.concatenate([c.train.y for c in self.clients])
        return Dataset(X, y, list(self.feature_names), name=f"{self.test.name}-pooled")

    def summary(self) -> list[dict[str, Any]]:
        rows = []
        for c in self.clients:
            counts = c.train.class_counts()
            labelled = counts["malware"] + counts["benign"]
            rows.append(
                {
                    "client": c.client_id,
                    "train": c.n_train,
                    "test": c.test.n_samples,
                    "malware_share": counts["malware"] / labelled if labelled else float("nan"),
                }
            )
        return rows
