"""A federation: each client's own train/test data plus a global held-out test set.

Semi-supervised scenarios (:func:`fedmetamal.data.semi.apply_semi`) hide some training labels
(``-1`` in ``train.y``) and keep the true ones in ``ClientData.hidden_labels`` for evaluation
only; ``Federation.server`` holds the server's labelled set when the scenario gives it one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fedmetamal.data.dataset import Dataset


@dataclass
class ClientData:
    """One participant's data; ``test`` is its local evaluation split (may be empty).

    ``hidden_labels`` (aligned with ``train`` rows, or ``None`` when no scenario hid labels) is
    the true label of each row whose label a semi-supervised scenario hid and -1 elsewhere. Only
    evaluation code may read it (e.g. pseudo-label accuracy); training must not.
    """

    client_id: int
    train: Dataset
    test: Dataset
    hidden_labels: np.ndarray | None = None

    @property
    def n_train(self) -> int:
        return self.train.n_samples


@dataclass
class Federation:
    """Clients, the global test set, JSON-ready ``info`` and, for ``labels-at-server``, the
    server's labelled set (carved from the training pool, never from ``test``)."""

    clients: list[ClientData]
    test: Dataset
    info: dict[str, Any] = field(default_factory=dict)
    server: Dataset | None = None

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
        """All clients' training data (and the server's labelled set, if any) in one dataset:
        the centralised baseline's view."""
        parts = [c.train for c in self.clients] + ([self.server] if self.server is not None else [])
        X = np.concatenate([p.X for p in parts])
        y = np.concatenate([p.y for p in parts])
        return Dataset(X, y, list(self.feature_names), name=f"{self.test.name}-pooled")

    def summary(self) -> list[dict[str, Any]]:
        """One row per client. ``malware_share`` is over the client's true training labels
        (hidden ones included: it describes the partition); ``labelled``/``unlabelled`` count
        the labels training sees."""
        rows = []
        for c in self.clients:
            counts = c.train.class_counts()
            malware, benign = counts["malware"], counts["benign"]
            if c.hidden_labels is not None:
                malware += int(np.sum(c.hidden_labels == 1))
                benign += int(np.sum(c.hidden_labels == 0))
            known = malware + benign
            rows.append(
                {
                    "client": c.client_id,
                    "train": c.n_train,
                    "test": c.test.n_samples,
                    "malware_share": malware / known if known else float("nan"),
                    "labelled": counts["malware"] + counts["benign"],
                    "unlabelled": counts["unlabelled"],
                }
            )
        return rows
