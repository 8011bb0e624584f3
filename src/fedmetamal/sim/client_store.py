"""All clients' training data in one device tensor, and the batches local training reads from it.

Clients are concatenated (no padding to the largest client, which would waste memory under
quantity skew); a client is an offset and a size. A group of clients trains together by gathering
each step's rows for every client into a (C, B, d) tensor. With a semi-supervised method the
store also holds each client's unlabelled rows — their features only, never a label.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

from fedmetamal.data.federation import Federation
from fedmetamal.fl.local import Batch, batch_plan, cycling_plan, local_step_count, semi_step_count
from fedmetamal.fl.schedule import SHUFFLE_STREAM, round_seed
from fedmetamal.fl.semi.streams import UNLABELLED_STREAM
from fedmetamal.privacy.dp_sgd import POISSON_STREAM, poisson_plan


def _rows(parts: list[np.ndarray], d: int, device: torch.device) -> torch.Tensor:
    """Concatenated float32 rows on the device; one zero row when there are none, so padding
    indices (0) stay valid."""
    X = np.concatenate(parts).astype(np.float32, copy=False) if parts else np.zeros((0, d))
    if len(X) == 0:
        X = np.zeros((1, d), dtype=np.float32)
    return torch.from_numpy(X.astype(np.float32, copy=False)).to(device)


class ClientStore:
    def __init__(
        self,
        X: list[np.ndarray],
        y: list[np.ndarray],
        device: torch.device,
        X_u: list[np.ndarray] | None = None,
    ) -> None:
        self.sizes = np.array([len(a) for a in y], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(np.int64)
        self.X = torch.from_numpy(np.concatenate(X).astype(np.float32, copy=False)).to(device)
        self.y = torch.from_numpy(np.concatenate(y).astype(np.float32)).to(device)
        self.malware = np.array([int((a == 1).sum()) for a in y], dtype=np.int64)
        self.device = device
        d = self.X.shape[1]
        unlabelled = X_u if X_u is not None else [np.zeros((0, d), np.float32) for _ in y]
        self.sizes_u = np.array([len(a) for a in unlabelled], dtype=np.int64)
        self.offsets_u = np.concatenate([[0], np.cumsum(self.sizes_u)[:-1]]).astype(np.int64)
        self.X_u = _rows(unlabelled, d, device) if X_u is not None else self.X[:0]
        #: The id each client's random streams are seeded with: its index here, except on a
        #: network participant, whose one-client store stands for its slot in the federation.
        self.seed_ids = np.arange(len(self.sizes), dtype=np.int64)

    @classmethod
    def from_federation(
        cls,
        fed: Federation,
        device: torch.device,
        pooled: bool = False,
        unlabelled: bool = False,
    ) -> ClientStore:
        """Labelled training samples of every client and, with ``unlabelled``, the features of
        its unlabelled rows (label -1); ``pooled`` puts them all into one client (the
        centralised baseline)."""
        Xs, ys, Xus = [], [], []
        for c in fed.clients:
            X = np.asarray(c.train.X)
            keep = c.train.y >= 0
            Xs.append(X[keep])
            ys.append(c.train.y[keep])
            if unlabelled:
                Xus.append(X[~keep])
        if pooled:
            Xs, ys = [np.concatenate(Xs)], [np.concatenate(ys)]
            Xus = [np.concatenate(Xus)] if unlabelled else []
        return cls(Xs, ys, device, Xus if unlabelled else None)

    @property
    def n_clients(self) -> int:
        return len(self.sizes)

    def step_counts(
        self, clients: Sequence[int], batch_size: int, epochs: float, steps: int | None
    ) -> list[int]:
        return [local_step_count(int(self.sizes[c]), batch_size, epochs, steps) for c in clients]

    def semi_step_counts(
        self, clients: Sequence[int], batch_size: int, mu: int, epochs: float, steps: int | None
    ) -> list[int]:
        """Steps when unlabelled rows train too (a client without any: as ``step_counts``)."""
        return [
            semi_step_count(int(self.sizes[c]), int(self.sizes_u[c]), batch_size, mu, epochs, steps)
            if self.sizes_u[c] > 0
            else local_step_count(int(self.sizes[c]), batch_size, epochs, steps)
            for c in clients
        ]

    def batches(
        self,
        clients: Sequence[int],
        batch_size: int,
        n_steps: Sequence[int],
        seed: int,
        round_index: int,
        poisson: bool = False,
    ) -> Iterator[Batch]:
        """Yield each local step's batch for ``clients`` (the same samples however grouped).

        ``poisson``: each row joins each step independently with probability batch_size / n
        (DP-SGD's sampling); batches are padded to the largest drawn, and may be empty.
        """
        n_c, total = len(clients), max(n_steps)
        plans = []
        for j, c in enumerate(clients):
            if poisson:
                stream = POISSON_STREAM
                gen = torch.Generator().manual_seed(
                    round_seed(seed, round_index, stream, int(self.seed_ids[c]))
                )
                plans.append(poisson_plan(int(self.sizes[c]), batch_size, n_steps[j], gen))
            else:
                gen = torch.Generator().manual_seed(
                    round_seed(seed, round_index, SHUFFLE_STREAM, int(self.seed_ids[c]))
                )
                plans.append(batch_plan(int(self.sizes[c]), batch_size, n_steps[j], gen))
        if poisson:  # padded width: the largest batch drawn (at least one column)
            batch_size = max([1] + [len(rows) for plan in plans for rows in plan])
        idx = np.zeros((total, n_c, batch_size), dtype=np.int64)
        mask = np.zeros((total, n_c, batch_size), dtype=np.float32)
        active = np.zeros((total, n_c), dtype=np.float32)
        for j, c in enumerate(clients):
            for s, rows in enumerate(plans[j]):
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

    def semi_batches(
        self,
        clients: Sequence[int],
        batch_size: int,
        mu: int,
        n_steps: Sequence[int],
        seed: int,
        round_index: int,
        labelled: bool = True,
    ) -> Iterator[Batch]:
        """Batches with ``mu * batch_size`` unlabelled rows appended per step.

        A client with unlabelled rows draws full batches of each kind, cycling through fresh
        permutations (labelled shuffle seeded as in ``batches``, unlabelled from its own
        stream); one without draws today's labelled batches and no unlabelled rows. With
        ``labelled`` False (no client holds labels) the labelled part has width 0.
        """
        n_c, total = len(clients), max(n_steps)
        width, width_u = (batch_size if labelled else 0), mu * batch_size
        idx = np.zeros((total, n_c, width), dtype=np.int64)
        mask = np.zeros((total, n_c, width), dtype=np.float32)
        idx_u = np.zeros((total, n_c, width_u), dtype=np.int64)
        mask_u = np.zeros((total, n_c, width_u), dtype=np.float32)
        active = np.zeros((total, n_c), dtype=np.float32)
        for j, c in enumerate(clients):
            n, n_u, steps = int(self.sizes[c]), int(self.sizes_u[c]), n_steps[j]
            active[:steps, j] = 1.0
            sid = int(self.seed_ids[c])
            gen = torch.Generator().manual_seed(round_seed(seed, round_index, SHUFFLE_STREAM, sid))
            if n_u > 0:
                if n > 0 and width:
                    idx[:steps, j] = cycling_plan(n, width, steps, gen) + self.offsets[c]
                    mask[:steps, j] = 1.0
                gen_u = torch.Generator().manual_seed(
                    round_seed(seed, round_index, UNLABELLED_STREAM, sid)
                )
                idx_u[:steps, j] = cycling_plan(n_u, width_u, steps, gen_u) + self.offsets_u[c]
                mask_u[:steps, j] = 1.0
            elif n > 0 and width:
                for s, rows in enumerate(batch_plan(n, width, steps, gen)):
                    idx[s, j, : len(rows)] = rows + self.offsets[c]
                    mask[s, j, : len(rows)] = 1.0
        tensors = [torch.from_numpy(a).to(self.device) for a in (idx, mask, idx_u, mask_u, active)]
        idx_t, mask_t, idx_ut, mask_ut, active_t = tensors
        d = self.X.shape[1]
        for s in range(total):
            rows = idx_t[s].reshape(-1)
            x = self.X.index_select(0, rows).view(n_c, width, d)
            y = self.y.index_select(0, rows).view(n_c, width)
            x_u = self.X_u.index_select(0, idx_ut[s].reshape(-1)).view(n_c, width_u, d)
            yield Batch(x, y, mask_t[s], active_t[s], x_u, mask_ut[s])
