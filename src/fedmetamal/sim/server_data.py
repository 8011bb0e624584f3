"""Data the server itself holds in a simulation: the labelled set of a labels-at-server
scenario, and FLTrust's clean root set."""

from __future__ import annotations

import numpy as np
import torch

from fedmetamal.data.federation import Federation


def root_set(
    fed: Federation, fraction: float, seed: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """FLTrust's root dataset: a stratified ``fraction`` of the clients' labelled training rows
    (at least one per class), drawn from its own seed stream. In a real deployment the server
    collects it itself; here it is a copy of clean client samples, taken before any attack."""
    X = np.concatenate([np.asarray(c.train.X)[c.train.y >= 0] for c in fed.clients])
    y = np.concatenate([c.train.y[c.train.y >= 0] for c in fed.clients])
    rng = np.random.default_rng([seed, 0xF17])
    picks = []
    for label in (0, 1):
        rows = np.flatnonzero(y == label)
        if rows.size:
            k = max(1, round(fraction * rows.size))
            picks.append(rng.choice(rows, size=k, replace=False))
    idx = np.sort(np.concatenate(picks))
    Xr = torch.from_numpy(np.ascontiguousarray(X[idx], dtype=np.float32))
    yr = torch.from_numpy(y[idx].astype(np.float32))
    return Xr.to(device), yr.to(device)


def server_set(fed: Federation, device: torch.device) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The server's labelled rows (X, y) on the device, if the scenario gives it any."""
    server = fed.server
    if server is None:
        return None
    keep = server.y >= 0
    if not keep.any():
        return None
    X = torch.from_numpy(np.ascontiguousarray(np.asarray(server.X)[keep], dtype=np.float32))
    y = torch.from_numpy(server.y[keep].astype(np.float32))
    return X.to(device), y.to(device)
