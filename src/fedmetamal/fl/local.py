"""Local training of one or many clients: the client update every runtime calls.

``batch_plan`` decides which samples each local step sees (a seeded shuffle per epoch, last batch
kept partial); with unlabelled data, ``semi_step_count`` and ``cycling_plan`` do (full batches
of labelled and of unlabelled rows, each cycling through fresh permutations). ``local_train``
runs SGD on a stack of clients at once: each step's loss is the sum of the clients' own mean
losses, so one backward pass yields every client's own gradient.
Clients that ran out of steps, and padding samples in short batches, are masked out exactly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from fedmetamal.fl.base import Algorithm, ClientOutput, RoundContext, State
from fedmetamal.models.networks import Generators, Network, masked_bce, weighted_bce

if TYPE_CHECKING:
    from fedmetamal.fl.semi.objective import SemiGroup
    from fedmetamal.privacy.dp_sgd import SampleDP


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


def semi_step_count(
    n_labelled: int,
    n_unlabelled: int,
    batch_size: int,
    mu: int,
    epochs: float,
    steps: int | None,
) -> int:
    """Local steps of a client with unlabelled data: an epoch is ceil(max(n_l, n_u / mu) / B)
    steps, each with B labelled and mu x B unlabelled rows (FixMatch's pass over the larger)."""
    if steps is not None:
        return steps
    per_epoch = math.ceil(max(n_labelled, n_unlabelled / mu) / batch_size)
    return max(1, math.ceil(epochs * per_epoch))


def cycling_plan(n: int, width: int, n_steps: int, generator: torch.Generator) -> np.ndarray:
    """(n_steps, width) indices into ``n`` rows: fresh permutations laid end to end, so every
    batch is full (rows repeat within a batch only when ``n`` < ``width``)."""
    need = n_steps * width
    perms = [torch.randperm(n, generator=generator).numpy() for _ in range(-(-need // n))]
    return np.concatenate(perms)[:need].reshape(n_steps, width)


_FIRST_WEIGHT = "layer0.weight"
#: Per-client FLOPs (2 x batch x rows x columns) of the first weight's gradient from which it is
#: written straight into the strided (C, P) parameters or gradient. Such a write runs one
#: multithreaded matmul per client, which for small matrices costs more in thread hand-offs
#: than a batched matmul into a contiguous buffer plus a copy (W-small on 2 threads: 7 ms vs
#: 0.4 ms a step); from about 1e7 FLOPs, the direct write saves the extra pass (10-25 %).
_DIRECT_WRITE_FLOPS = 1e7


@dataclass
class Batch:
    """One local step for C clients: padded inputs, a sample mask and an active-client mask;
    with a semi-supervised objective, also unlabelled rows (features only) and their mask."""

    x: torch.Tensor  # (C, B, d)
    y: torch.Tensor  # (C, B) float 0/1
    mask: torch.Tensor  # (C, B) 1 for real samples
    active: torch.Tensor  # (C,) 1 for clients that still take this step
    x_u: torch.Tensor | None = None  # (C, U, d) unlabelled rows
    mask_u: torch.Tensor | None = None  # (C, U) 1 for real unlabelled rows


def local_train(
    network: Network,
    algorithm: Algorithm,
    ctx: RoundContext,
    batches: Iterable[Batch],
    client_state: State,
    num_samples: torch.Tensor,
    generator: Generators = None,
    out: torch.Tensor | None = None,
    semi: SemiGroup | None = None,
    dp: SampleDP | None = None,
) -> tuple[ClientOutput, State]:
    """Train C clients from the global model; returns their outputs and new persistent state.

    Parameters live in one (C, P) tensor updated in place, and each step differentiates with
    respect to named views of it: fresh (C, P) tensors every step (and autograd through slices
    of one flat vector) cost more than the arithmetic. The first weight matrix, which holds most
    parameters of a wide model, is not an autograd leaf: its gradient x^T g is computed from the
    gradient g of the first layer's output, and plain SGD folds the step into that matmul
    (W -= lr x^T g in place) instead of materialising the gradient and then reading it again.
    Weight decay, momentum or an algorithm's correction work on a flat (C, P) gradient.

    ``out``, a (C, P) tensor, is trained in and then holds the returned deltas: a runtime that
    reuses one across rounds spares the page faults of a fresh (C, P) allocation every round.

    ``semi``: a semi-supervised objective and its per-group inputs. Batches that carry
    unlabelled rows get the objective's student rows, pseudo-labels and weights appended along
    the batch dimension, so a step stays one forward/backward (and one fused first-layer
    update); the loss is then ``weighted_bce`` instead of ``masked_bce``.
    """
    n_clients = num_samples.shape[0]
    if out is None:
        params = ctx.global_params.unsqueeze(0).repeat(n_clients, 1)
    else:
        params = out.copy_(ctx.global_params.expand_as(out))
    named = network.spec.unflatten(params)  # views: in-place updates show in params
    w0 = named.pop(_FIRST_WEIGHT)
    flat_grad: torch.Tensor | None = None  # (C, P), only where more than the gradient enters
    grad_views: dict[str, torch.Tensor] = {}
    w0_grad = torch.empty(0)  # contiguous (C, rows, columns) buffer for small first weights
    velocity = torch.zeros_like(params) if ctx.momentum > 0 else None
    steps = torch.zeros(n_clients, device=params.device)
    loss_sum = torch.zeros(n_clients, device=params.device)
    for batch in batches:
        with torch.no_grad():
            correction = algorithm.gradient_correction(params, ctx, client_state)
        if dp is not None:
            if flat_grad is None:
                flat_grad = torch.empty_like(params)
            losses = _private_step(network, params, batch, dp, flat_grad)
            with torch.no_grad():
                velocity = _apply_gradient(params, flat_grad, ctx, correction, velocity, batch)
            steps += batch.active
            loss_sum.addcmul_(losses, batch.active)
            continue
        leaves = {k: v.detach().requires_grad_(True) for k, v in named.items()}
        p = {**leaves, _FIRST_WEIGHT: w0}
        x, y, weights = batch.x, batch.y, None
        if semi is not None and batch.x_u is not None and batch.mask_u is not None:
            x, y, weights = _with_unlabelled(network, params, ctx, batch, semi)
        z = network.first_layer(p, x)
        logits = network.head(p, z, train=True, generator=generator)
        if weights is None:
            losses = masked_bce(logits, y, batch.mask)
        else:
            losses = weighted_bce(logits, y, weights)
        g_z, *grads = torch.autograd.grad(losses.sum(), [z, *leaves.values()])
        with torch.no_grad():
            x_t = x.transpose(1, 2)
            direct = 2 * x_t.shape[1] * x_t.shape[2] * w0.shape[2] >= _DIRECT_WRITE_FLOPS
            if not direct and w0_grad.shape != w0.shape:
                w0_grad = torch.empty_like(w0, memory_format=torch.contiguous_format)
            if correction is None and ctx.weight_decay == 0 and velocity is None:
                scale = batch.active.view(-1, 1, 1)
                if direct:
                    w0.baddbmm_(x_t, g_z * scale, alpha=-ctx.lr)
                else:
                    w0.sub_(torch.bmm(x_t, g_z * scale, out=w0_grad), alpha=ctx.lr)
                for view, g in zip(named.values(), grads, strict=True):
                    view.addcmul_(scale.view(-1, *([1] * (g.dim() - 1))), g, value=-ctx.lr)
            else:
                if flat_grad is None:
                    flat_grad = torch.empty_like(params)
                    grad_views = network.spec.unflatten(flat_grad)
                if direct:
                    torch.bmm(x_t, g_z, out=grad_views[_FIRST_WEIGHT])
                else:
                    grad_views[_FIRST_WEIGHT].copy_(torch.bmm(x_t, g_z, out=w0_grad))
                for k, gk in zip(named, grads, strict=True):
                    grad_views[k].copy_(gk)
                velocity = _apply_gradient(params, flat_grad, ctx, correction, velocity, batch)
            steps += batch.active
            loss_sum.addcmul_(losses.detach(), batch.active)
    with torch.no_grad():
        extras, new_state = algorithm.client_finish(params, steps, ctx, client_state)
        extras, new_state = unaliased(extras, params), unaliased(new_state, params)
        result = ClientOutput(
            delta=params.sub_(ctx.global_params),
            num_samples=num_samples.to(params.dtype),
            steps=steps,
            train_loss=loss_sum / steps.clamp_min(1),
            extras=extras,
        )
    return result, new_state


def _apply_gradient(
    params: torch.Tensor,
    g: torch.Tensor,
    ctx: RoundContext,
    correction: torch.Tensor | None,
    velocity: torch.Tensor | None,
    batch: Batch,
) -> torch.Tensor | None:
    """One SGD step of the active clients from a flat (C, P) gradient ``g`` (overwritten):
    weight decay, the algorithm's correction and momentum first. Returns the new velocity."""
    if ctx.weight_decay > 0:
        g.add_(params, alpha=ctx.weight_decay)
    if correction is not None:
        g.add_(correction)
    act = batch.active.unsqueeze(-1)
    if velocity is not None:
        velocity = torch.where(act > 0, ctx.momentum * velocity + g, velocity)
        g = velocity
    params.addcmul_(act, g, value=-ctx.lr)
    return velocity


def _private_step(
    network: Network, params: torch.Tensor, batch: Batch, dp: SampleDP, out: torch.Tensor
) -> torch.Tensor:
    """DP-SGD: the private gradient into ``out``; returns the batch's mean loss per client
    (a simulation diagnostic, not a released quantity)."""
    from fedmetamal.privacy.dp_sgd import private_gradient

    named = network.spec.unflatten(params.detach())
    private_gradient(network, named, batch.x, batch.y, batch.mask, dp, out)
    with torch.no_grad():
        return masked_bce(network.forward_named(named, batch.x), batch.y, batch.mask)


@torch.no_grad()
def _with_unlabelled(
    network: Network, params: torch.Tensor, ctx: RoundContext, batch: Batch, semi: SemiGroup
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inputs, targets and weights of a step: labelled rows (mean over the real ones), then the
    objective's unlabelled part."""
    assert batch.x_u is not None and batch.mask_u is not None
    part = semi.objective.unlabelled_part(network, params, ctx, batch.x_u, batch.mask_u, semi)
    w_l = batch.mask / batch.mask.sum(-1, keepdim=True).clamp_min(1.0)
    return (
        torch.cat([batch.x, part.x], 1),
        torch.cat([batch.y, part.targets], 1),
        torch.cat([w_l, part.weights], 1),
    )


def shares_memory(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether ``a`` and ``b`` are views of the same storage (so writing one changes the other)."""
    return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()


def unaliased(state: State, buffer: torch.Tensor) -> State:
    """``state`` with copies of the tensors that share memory with ``buffer`` (about to change)."""
    return {k: v.clone() if shares_memory(v, buffer) else v for k, v in state.items()}
