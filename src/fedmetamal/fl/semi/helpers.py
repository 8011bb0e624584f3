"""FedMatch helper selection, on the server: each client's most similar other clients.

Similarity is the cosine of the clients' last deltas (their most recent local updates): clients
whose data pull the model the same way make helpers whose pseudo-labels are worth agreeing with.
A client is helped only once it and its helpers have taken part in a round; before that it
pseudo-labels with its local model alone.
"""

from __future__ import annotations

import torch


def select_helpers(
    deltas: torch.Tensor, has_history: torch.Tensor, clients: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Helper ids (k, C) and validity (k, C) for ``clients`` (C,).

    ``deltas`` (N, P): every client's last delta; ``has_history`` (N,) bool: which have one.
    Helper j of client c is its j-th most cosine-similar other client with history (ties: lower
    id first); invalid (0) where fewer than j + 1 such clients exist, or c has no history.
    """
    n = deltas.shape[0]
    k = min(k, max(n - 1, 0))
    if k == 0:
        empty = torch.zeros((0, len(clients)), dtype=torch.long, device=deltas.device)
        return empty, empty.to(deltas.dtype)
    unit = deltas / deltas.norm(dim=1, keepdim=True).clamp_min(1e-12)
    sim = unit[clients] @ unit.T  # (C, N)
    allowed = has_history.unsqueeze(0).expand_as(sim).clone()
    allowed[torch.arange(len(clients), device=deltas.device), clients] = False
    sim = torch.where(allowed, sim, torch.finfo(sim.dtype).min)
    order = sim.argsort(dim=1, descending=True, stable=True)[:, :k]  # (C, k)
    valid = torch.gather(allowed, 1, order) & has_history[clients].unsqueeze(1)
    return order.T.contiguous(), valid.T.to(deltas.dtype).contiguous()
