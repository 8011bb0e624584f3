"""Local training of one or many clients: the client update every runtime calls.

``batch_plan`` decides which samples each local step sees (a seeded shuffle per epoch, last batch
kept partial). ``local_train`` runs SGD on a stack of clients at once: each step's loss is the
sum of the clients' own mean losses, so one backward pass yields every client's own gradient.
Clients that ran out of steps, and padding samples in short batches, are masked out exactly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

from fedmetamal.fl.base import Algorithm, ClientOutput, RoundContext, State
from fedmetamal.models.networks import Network, masked_bce


def local_step_count(n: int, batch_size: int, epochs: float, steps: int | None) -> int:
    """Local steps of a client holding ``n`` samples (fixed ``steps`` win over ``epochs``)."""
    if steps is not None:
        return steps
    return max(1, math.ceil(epochs * math.ceil(n / batch_size)))


def batch_plan(
    n: int, batch_size: int, n_steps: int, generator: torch.Generator
) -> list[np.ndarray]:
    """Sample indices for each of ``n_steps`` steps: fresh permutation per epoch, no drop-last."""
    batches: list[np.ndarray] = []
    while len(batches) < n_steps:
        perm = torch.randperm(n, generator=generator).numpy()
        for start in range(0, n, batch_size):
            batches.append(perm[start : start + batch_size])
            if len(batches) == n_steps:
                break
    return batches


@dataclass
class Batch:
    """One local step for C clients: padded inputs, a sample mask and an active-client mask."""

    x: torch.Tensor  # (C, B, d)
    y: torch.Tensor  # (C, B) float 0/1
    mask: torch.Tensor  # (C, B) 1 for real samples
    active: torch.Tensor  # (C,) 1 for clients that still take this step


def local_train(
    network: Network,
    algorithm: Algorithm,
    ctx: RoundContext,
    batches: Iterable[Batch],
    client_state: State,
    num_samples: torch.Tensor,
    generator: torch.Generator | None = None,
) -> tuple[ClientOutput, State]:
    """Train C clients from the global model; returns their outputs and new persistent state."""
    n_clients = num_samples.shape[0]
    params = ctx.global_params.unsqueeze(0).repeat(n_clients, 1)
    velocity = torch.zeros_like(params) if ctx.momentum > 0 else None
    steps = torch.zeros(n_clients, device=params.device)
    loss_sum = torch.zeros(n_clients, device=params.device)
    for batch in batches:
        p = params.detach().requires_grad_(True)
        logits = network.forward(p, batch.x, train=True, generator=generator)
        losses = masked_bce(logits, batch.y, batch.mask)
        (grad,) = torch.autograd.grad(losses.sum(), p)
        with torch.no_grad():
            if ctx.weight_decay > 0:
                grad = grad + ctx.weight_decay * params
            correction = algorithm.gradient_correction(params, ctx, client_state)
            if correction is not None:
                grad = grad + correction
            act = batch.active.unsqueeze(-1)
            if velocity is not None:
                velocity = torch.where(act > 0, ctx.momentum * velocity + grad, velocity)
                grad = velocity
            params = params - ctx.lr * act * grad
            steps += batch.active
            loss_sum += losses.detach() * batch.active
    with torch.no_grad():
        extras, new_state = algorithm.client_finish(params, steps, ctx, client_state)
        out = ClientOutput(
            delta=params - ctx.global_params,
            num_samples=num_samples.to(params.dtype),
            steps=steps,
            train_loss=loss_sum / steps.clamp_min(1),
            extras=extras,
        )
    return out, new_state
