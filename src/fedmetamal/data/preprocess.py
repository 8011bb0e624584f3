"""Preprocessing fitted the federated way: from sums each client can share, never raw samples.

Each client reports, per feature: its sample count, the sum and sum of squares of the raw values
and of their signed log (``sign(x) * log1p(|x|)``), and the largest absolute value. The server
adds the reports and decides, per feature, whether to take the log (heavy-tailed counts such as
sizes and addresses) and which mean and standard deviation to standardise with. The result is
saved with the model (checkpoint and ONNX graph) so inference applies the same transform.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

import numpy as np
import torch

from fedmetamal.config import PreprocessConfig
from fedmetamal.data.dataset import Dataset
from fedmetamal.data.federation import ClientData, Federation

_MIN_STD = 1e-6


def signed_log1p(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.log1p(np.abs(x))


@dataclass
class FeatureSums:
    """What one client shares about its features; sums add across clients."""

    n: int
    sum: np.ndarray
    sumsq: np.ndarray
    log_sum: np.ndarray
    log_sumsq: np.ndarray
    max_abs: np.ndarray

    @classmethod
    def of(cls, X: np.ndarray, chunk: int = 8192) -> FeatureSums:
        """Sums of one client's features, in float64, read in chunks (works on memory maps)."""
        d = X.shape[1]
        acc = {k: np.zeros(d) for k in ("sum", "sumsq", "log_sum", "log_sumsq")}
        max_abs = np.zeros(d)
        for start in range(0, X.shape[0], chunk):
            block = np.asarray(X[start : start + chunk], dtype=np.float64)
            logb = signed_log1p(block)
            acc["sum"] += block.sum(0)
            acc["sumsq"] += (block * block).sum(0)
            acc["log_sum"] += logb.sum(0)
            acc["log_sumsq"] += (logb * logb).sum(0)
            max_abs = np.maximum(max_abs, np.abs(block).max(0, initial=0.0))
        return cls(int(X.shape[0]), max_abs=max_abs, **acc)

    def __add__(self, other: FeatureSums) -> FeatureSums:
        return FeatureSums(
            self.n + other.n,
            self.sum + other.sum,
            self.sumsq + other.sumsq,
            self.log_sum + other.log_sum,
            self.log_sumsq + other.log_sumsq,
            np.maximum(self.max_abs, other.max_abs),
        )


@dataclass
class Preprocessor:
    """``z = (where(log_mask, signed_log1p(x), x) - mean) / std`` per feature."""

    log_mask: np.ndarray  # bool (d,)
    mean: np.ndarray  # float32 (d,)
    std: np.ndarray  # float32 (d,)

    @classmethod
    def identity(cls, d: int) -> Preprocessor:
        return cls(np.zeros(d, bool), np.zeros(d, np.float32), np.ones(d, np.float32))

    @classmethod
    def fit(cls, sums: Iterable[FeatureSums], cfg: PreprocessConfig) -> Preprocessor:
        """Fit from client reports (the server's side of federated preprocessing)."""
        reports = list(sums)
        if not reports:
            raise ValueError("at least one client report is needed to fit preprocessing")
        total = reports[0]
        for r in reports[1:]:
            total = total + r
        d = total.sum.shape[0]
        if cfg.log_transform == "all":
            log_mask = np.ones(d, bool)
        elif cfg.log_transform == "none":
            log_mask = np.zeros(d, bool)
        else:
            log_mask = total.max_abs > cfg.log_threshold
        n = max(total.n, 1)
        s = np.where(log_mask, total.log_sum, total.sum)
        ss = np.where(log_mask, total.log_sumsq, total.sumsq)
        mean = s / n
        var = np.maximum(ss / n - mean * mean, 0.0)
        std = np.sqrt(var)
        std = np.where(std < _MIN_STD, 1.0, std)  # constant features pass through centred
        if not cfg.standardize:
            mean, std = np.zeros(d), np.ones(d)
        return cls(log_mask, mean.astype(np.float32), std.astype(np.float32))

    @property
    def n_features(self) -> int:
        return int(self.mean.shape[0])

    def apply(self, X: np.ndarray) -> np.ndarray:
        Xf = np.asarray(X, dtype=np.float32)
        out = np.where(self.log_mask, signed_log1p(Xf), Xf)
        return ((out - self.mean) / self.std).astype(np.float32)

    def apply_torch(self, x: torch.Tensor) -> torch.Tensor:
        t = self.tensors(x.device)
        logged = torch.sign(x) * torch.log1p(torch.abs(x))
        return (torch.where(t["log_mask"] > 0.5, logged, x) - t["mean"]) / t["std"]

    def tensors(self, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
        """As float tensors, for safetensors checkpoints and the ONNX graph."""
        return {
            "log_mask": torch.as_tensor(self.log_mask.astype(np.float32), device=device),
            "mean": torch.as_tensor(self.mean, device=device),
            "std": torch.as_tensor(self.std, device=device),
        }

    @classmethod
    def from_tensors(cls, t: dict[str, torch.Tensor]) -> Preprocessor:
        return cls(
            t["log_mask"].cpu().numpy() > 0.5,
            t["mean"].cpu().numpy().astype(np.float32),
            t["std"].cpu().numpy().astype(np.float32),
        )


def preprocess_federation(
    fed: Federation, cfg: PreprocessConfig
) -> tuple[Federation, Preprocessor]:
    """Fit preprocessing from each client's shared sums and apply it to every split.

    A server labelled set (``labels-at-server``) adds its own sums: it is the server's data, and
    with it the fit sees the same training rows as without the scenario. ``hidden_labels`` pass
    through unchanged.
    """
    parts = [c.train for c in fed.clients] + ([fed.server] if fed.server is not None else [])
    pre = Preprocessor.fit((FeatureSums.of(p.X) for p in parts), cfg)

    def tx(ds: Dataset) -> Dataset:
        return replace(ds, X=pre.apply(ds.X))

    clients = [
        ClientData(c.client_id, tx(c.train), tx(c.test), c.hidden_labels) for c in fed.clients
    ]
    server = tx(fed.server) if fed.server is not None else None
    return Federation(clients, tx(fed.test), dict(fed.info), server=server), pre
