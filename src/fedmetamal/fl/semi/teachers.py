"""Teachers: the models whose predictions on unlabelled rows become pseudo-labels.

All run without gradients and without dropout, on a stack of C clients' rows (C, U, d).
"""

from __future__ import annotations

import torch

from fedmetamal.models.networks import Network


@torch.no_grad()
def local_teacher(network: Network, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Each client's current local model ``params`` (C, P) on its rows: probabilities (C, U)."""
    return torch.sigmoid(network.forward(params, x))


@torch.no_grad()
def global_teacher(network: Network, global_params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The round's global model (P,) on every client's rows: one forward over all of them."""
    n_c, u, d = x.shape
    logits = network.forward(global_params.unsqueeze(0), x.reshape(1, n_c * u, d))
    return torch.sigmoid(logits).view(n_c, u)


@torch.no_grad()
def agreement_teacher(
    network: Network,
    params: torch.Tensor,
    helpers: torch.Tensor | None,
    valid: torch.Tensor | None,
    x: torch.Tensor,
) -> torch.Tensor:
    """Mean probability of the local model and each client's valid helper models.

    ``helpers`` (k, C, P): helper j of every client; ``valid`` (k, C): 1 where client c has a
    j-th helper. A client without helpers gets its local model's probabilities.
    """
    total = local_teacher(network, params, x)
    if helpers is None or valid is None or helpers.shape[0] == 0:
        return total
    count = torch.ones_like(total[:, :1])
    for h, v in zip(helpers, valid, strict=True):
        weight = v.to(total.dtype).unsqueeze(-1)
        total = total + weight * torch.sigmoid(network.forward(h, x))
        count = count + weight
    return total / count
