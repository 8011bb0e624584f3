"""Scoring the global model on the held-out test set and on each client's local test split."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from fedmetamal.data.federation import Federation
from fedmetamal.fl.metrics import detection_metrics
from fedmetamal.models.networks import Network

_CHUNK = 8192


@torch.no_grad()
def predict(network: Network, params: torch.Tensor, X: torch.Tensor) -> np.ndarray:
    """Malware probabilities of one model (params (P,)) for rows X (n, d), in chunks."""
    if X.shape[0] == 0:
        return np.zeros(0, dtype=np.float32)
    out = [
        torch.sigmoid(network.forward(params.unsqueeze(0), X[i : i + _CHUNK].unsqueeze(0))[0])
        for i in range(0, X.shape[0], _CHUNK)
    ]
    return torch.cat(out).float().cpu().numpy()


class Evaluator:
    """Holds the (preprocessed) test data on the device so each round only runs the forward."""

    def __init__(self, fed: Federation, device: torch.device, per_client: bool) -> None:
        self.X = torch.from_numpy(np.ascontiguousarray(fed.test.X)).to(device)
        self.y = fed.test.y
        self.clients: list[tuple[int, torch.Tensor, np.ndarray]] = []
        if per_client:
            for c in fed.clients:
                if c.test.n_samples:
                    Xc = torch.from_numpy(np.ascontiguousarray(c.test.X)).to(device)
                    self.clients.append((c.client_id, Xc, c.test.y))

    def global_metrics(self, network: Network, params: torch.Tensor) -> dict[str, float] | None:
        """Metrics on the held-out test set; ``None`` when the model outputs NaN (diverged)."""
        scores = predict(network, params, self.X)
        if not np.isfinite(scores).all():
            return None
        return detection_metrics(scores, self.y)

    def client_metrics(self, network: Network, params: torch.Tensor) -> list[dict[str, Any]]:
        rows = []
        for cid, Xc, yc in self.clients:
            m = detection_metrics(predict(network, params, Xc), yc)
            rows.append({"client": cid, **m})
        return rows
