"""Scoring the global model on the held-out test set and on each client's local test split.

When a semi-supervised scenario hid training labels, every evaluation also says how good the
global model is as a pseudo-labeller on those rows: ``pseudo_coverage`` (share of hidden-label
rows it labels with confidence >= the method's threshold) and ``pseudo_accuracy`` (share of
those whose hard label is the hidden true one), pooled over clients (each weighted by its
hidden rows) and per client. Only this evaluation code reads the hidden labels.

Under an attack with a measurable goal (``sim.attacks``: backdoor, targeted label flipping),
every global evaluation also reports ``attack_success_rate``: the share of the attack's probe
rows (triggered test malware, or the target family's test malware) the model scores benign.
"""

from __future__ import annotations

import math
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


def pseudo_metrics(n_hidden: int, n_confident: int, n_correct: int) -> dict[str, float]:
    """Coverage and accuracy of pseudo-labels from counts; NaN where undefined."""
    return {
        "pseudo_coverage": n_confident / n_hidden if n_hidden else math.nan,
        "pseudo_accuracy": n_correct / n_confident if n_confident else math.nan,
    }


class Evaluator:
    """Holds the (preprocessed) test data on the device so each round only runs the forward."""

    def __init__(
        self, fed: Federation, device: torch.device, per_client: bool, threshold: float = 0.95
    ) -> None:
        self.X = torch.from_numpy(np.ascontiguousarray(fed.test.X)).to(device)
        self.y = fed.test.y
        self.clients: list[tuple[int, torch.Tensor, np.ndarray]] = []
        if per_client:
            for c in fed.clients:
                if c.test.n_samples:
                    Xc = torch.from_numpy(np.ascontiguousarray(c.test.X)).to(device)
                    self.clients.append((c.client_id, Xc, c.test.y))
        self.threshold = threshold
        #: Whether a scenario hid labels (then rounds report pseudo-label metrics).
        self.semi = any(c.hidden_labels is not None for c in fed.clients)
        self.hidden: dict[int, tuple[torch.Tensor, np.ndarray]] = {}
        for c in fed.clients:
            h = c.hidden_labels
            if h is not None and (h >= 0).any():
                keep = h >= 0
                Xh = torch.from_numpy(np.ascontiguousarray(np.asarray(c.train.X)[keep]))
                self.hidden[c.client_id] = (Xh.to(device), h[keep])
        self._counts_for: tuple[torch.Tensor, int] | None = None
        self._counts: dict[int, tuple[int, int, int]] = {}
        #: Rows an attack wants scored benign (``sim.attacks``); None: no attack to measure.
        self.probe: torch.Tensor | None = None

    def set_probe(self, X: np.ndarray | None) -> None:
        """Measure ``attack_success_rate`` (share of X scored benign) at every evaluation."""
        if X is None:
            self.probe = None
            return
        X = np.ascontiguousarray(X, dtype=np.float32)
        self.probe = torch.from_numpy(X).to(self.X.device)

    def global_metrics(self, network: Network, params: torch.Tensor) -> dict[str, float] | None:
        """Metrics on the held-out test set; ``None`` when the model outputs NaN (diverged)."""
        scores = predict(network, params, self.X)
        if not np.isfinite(scores).all():
            return None
        out = detection_metrics(scores, self.y)
        if self.semi:
            totals = np.array(list(self.pseudo_counts(network, params).values())).reshape(-1, 3)
            out |= pseudo_metrics(*(int(v) for v in totals.sum(0)))
        if self.probe is not None:
            p = predict(network, params, self.probe)
            out["attack_success_rate"] = float((p < 0.5).mean()) if len(p) else math.nan
        return out

    def client_metrics(self, network: Network, params: torch.Tensor) -> list[dict[str, Any]]:
        rows = []
        counts = self.pseudo_counts(network, params) if self.semi else {}
        for cid, Xc, yc in self.clients:
            m = detection_metrics(predict(network, params, Xc), yc)
            if self.semi:
                m |= pseudo_metrics(*counts.get(cid, (0, 0, 0)))
            rows.append({"client": cid, **m})
        return rows

    def pseudo_counts(
        self, network: Network, params: torch.Tensor
    ) -> dict[int, tuple[int, int, int]]:
        """Per client: hidden-label rows, confident ones, confident and correct ones (cached
        for the same parameters, as global and per-client metrics both need them)."""
        seen = self._counts_for
        if seen is None or seen[0] is not params or seen[1] != params._version:
            self._counts = {}
            for cid, (Xh, yh) in self.hidden.items():
                p = predict(network, params, Xh)
                confident = np.maximum(p, 1.0 - p) >= self.threshold
                correct = confident & ((p >= 0.5).astype(yh.dtype) == yh)
                self._counts[cid] = (len(yh), int(confident.sum()), int(correct.sum()))
            self._counts_for = (params, params._version)
        return self._counts
