"""All clients' training data in one device tensor, and the batches local training reads from it.

Clients are concatenated (no padding to the largest client, which would waste memory under
quantity skew); a client is an offset and a size. A group of clients trains together by gathering
each step's rows for every client into a (C, B, d) tensor.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

from fedmetamal.data.federation import Federation
from fedmetamal.fl.local import Batch, batch_plan, local_step_count
from fedmetamal.fl.schedule import SHUFFLE_STREAM, round_seed


class ClientStore:
    def __init__(self, X: list[np.ndarray], y: list[np.ndarray], device: torch.device) -> None:
        self.sizes = np.array([len(a) for a in y], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(np.int64)
        self.X = torch.from_numpy(np.concatenate(X).astype(np.float32, copy=False)).to(device)
        self.y = torch.from_numpy(np.concatenate(y).astype(np.float32)).to(device)
        self.device = device

    @classmethod
    def from_federation(
        cls, fed: Federation, device: torch.device, pooled: bool = False
    ) -> ClientStore:
        """Labelled training samples of every client (unlabelled rows are not used here);
        ``pooled`` puts them all into one client (the centralised baseline)."""
        Xs, ys = [], []
        for c in fed.clients:
            keep = c.train.y >= 0
            Xs.append(np.asarray(c.train.X)[keep])
            ys.append(c.train.y[keep])
        if pooled:
            Xs, ys = [np.concatenate(Xs)], [np.concatenate(ys)]
        return cls(Xs, ys, device)

    @property
    def n_clients(self) -> int:
        return len(self.sizes)

    def step_counts(
        self, clients: Sequence[int], batch_size: int, epochs: float, steps: int | None
    ) -> list[int]:
        return [local_step_count(int(self.sizes[c]), batch_size, epochs, steps) for c in clients]

    def batches(
        self,
        clients: Sequence[int],
        batch_size: int,
        n_steps: Sequence[int],
        seed: int,
        round_index: int,
    ) -> Iterator[Batch]:
        """Yield each local step's batch for ``clients`` (the same samples however grouped)."""
        n_c, total = len(clients), max(n_steps)
        idx = np.zeros((total, n_c, batch_size), dtype=np.int64)
        mask = np.zeros((total, n_c, batch_size), dtype=np.float32)
        active = np.zeros((total, n_c), dtype=np.float32)
        for j, c in enumerate(clients):
            gen = torch.Generator().manual_seed(round_seed(seed, round_index, SHUFFLE_STREAM, c))
            plan = batch_plan(int(self.sizes[c]), batch_size, n_steps[j], gen)
            for s, rows in enumerate(plan):
                idx[s, j, : len(rows)] = rows + self.offsets[c]
                mask[s, j, : len(rows)] = 1.0
                active[s, j] = 1.0
        idx_t = torch.from_numpy(idx).to(self.device)
        mask_t = torch.from_numpy(mask).to(self.device)
        active_t = torch.from_numpy(active).to(self.device)
        d = self.X.shape[1]
        for s in range(total):
            rows = idx_t[s].reshape(-1)  # index_select: a plain row gather, unlike X[rows]
            x = self.X.index_select(0, rows).view(n_c, batch_size, d)
            y = self.y.index_select(0, rows).view(n_c, batch_size)
            yield Batch(x, y, mask_t[s], active_t[s])
