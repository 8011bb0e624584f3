"""Sample-level DP at each participant: DP-SGD (Abadi et al., CCS 2016) in the batched runtime.

Every local step of every client: per-sample gradients (torch.func: ``grad`` of one sample's
loss, ``vmap``-ed over the samples of a batch and again over the stacked clients), each clipped
to L2 norm <= ``clip`` over all parameters, summed, plus N(0, (z * clip)^2) per coordinate, and
divided by the expected batch size. Batches are Poisson samples (each row taken independently
with probability q = batch_size / n), the sampling the RDP analysis of the subsampled Gaussian
mechanism assumes, so the accountant's epsilon is the guarantee of what ran. The privacy unit
is one training sample of one participant; a record's epsilon is that of the participant that
holds it (the runtime reports the largest over participants).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import grad, vmap

from fedmetamal.models.networks import Network

#: Seed stream of each client's DP-SGD noise (one generator per client and round).
DP_SGD_NOISE_STREAM = 0xD5
#: Seed stream of each client's Poisson batch sampling.
POISSON_STREAM = 0xD6


@dataclass
class SampleDP:
    """What a DP-SGD step needs for one group of clients.

    ``generators``: one CPU generator per client, so noise does not depend on how clients are
    grouped or which device trains them. ``expected_batch``: the public denominator q * n,
    which equals the configured batch size.
    """

    clip: float
    noise_multiplier: float
    expected_batch: float
    generators: Sequence[torch.Generator]


def poisson_plan(
    n: int, batch_size: int, n_steps: int, generator: torch.Generator
) -> list[np.ndarray]:
    """Rows of each of ``n_steps`` steps: every row joins a step with probability
    min(1, batch_size / n), independently (batches vary in size and may be empty)."""
    q = min(1.0, batch_size / max(n, 1))
    draws = torch.rand((n_steps, n), generator=generator) < q
    return [np.flatnonzero(row.numpy()) for row in draws]


def _sample_loss(
    network: Network, p: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor
) -> torch.Tensor:
    """Binary cross-entropy of one sample under one client's parameters (unbatched shapes)."""
    one = {k: v.unsqueeze(0) for k, v in p.items()}
    logit = network.forward_named(one, x.view(1, 1, -1)).reshape(())
    return F.binary_cross_entropy_with_logits(logit, y)


def per_sample_grads(
    network: Network, named: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Gradient of every sample's loss: (C, B, *shape) per parameter, for params (C, *shape)
    and a batch x (C, B, d), y (C, B)."""

    def loss(p: dict[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        return _sample_loss(network, p, xi, yi)

    over_samples = vmap(grad(loss), in_dims=(None, 0, 0))
    return vmap(over_samples, in_dims=(0, 0, 0))(named, x, y)


def _clip_factors(sq_norms: torch.Tensor, clip: float, mask: torch.Tensor) -> torch.Tensor:
    """min(1, clip / ||g_i||) for real samples, 0 for padding: (C, B)."""
    return (clip / sq_norms.sqrt().clamp_min(1e-12)).clamp(max=1.0) * mask


def clipped_sum_vmap(
    network: Network,
    named: dict[str, torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    mask: torch.Tensor,
    clip: float,
) -> dict[str, torch.Tensor]:
    """Sum of the clipped per-sample gradients, (C, *shape) per parameter, from torch.func's
    per-sample gradients: any differentiable network, at the cost of a (C, B, P) tensor."""
    grads = per_sample_grads(network, named, x, y)
    sq = torch.stack([g.flatten(2).pow(2).sum(-1) for g in grads.values()]).sum(0)
    scale = _clip_factors(sq, clip, mask)
    return {k: torch.einsum("cb,cb...->c...", scale, g) for k, g in grads.items()}


def clipped_sum_mlp(
    network: Network,
    named: dict[str, torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    mask: torch.Tensor,
    clip: float,
) -> dict[str, torch.Tensor]:
    """The same sum as :func:`clipped_sum_vmap` for the MLP, without per-sample gradients.

    A linear layer's per-sample weight gradient is the outer product a_i g_i^T of its input
    and output gradient, so its squared norm is |a_i|^2 |g_i|^2 (Goodfellow 2015; "ghost
    clipping", Li et al. ICLR 2022), and the clipped sum is one matmul a^T diag(s) g. One
    ordinary backward pass to the layer outputs gives every g_i; memory stays O(C B width).
    """
    act = {"relu": F.relu, "gelu": F.gelu, "tanh": torch.tanh}[network.activation]
    n_layers = len(network.widths) - 1
    inputs: list[torch.Tensor] = [x]
    outputs: list[torch.Tensor] = []  # linear outputs z_l, differentiated
    normed: list[tuple[torch.Tensor, torch.Tensor]] = []  # (n_hat, affine output u)
    h = x
    with torch.enable_grad():
        for i in range(n_layers):
            z = torch.baddbmm(named[f"layer{i}.bias"].unsqueeze(-2), h, named[f"layer{i}.weight"])
            z = z.detach().requires_grad_(True) if i == 0 else z
            outputs.append(z)
            if i == n_layers - 1:
                break
            h = z
            if network.norm == "layer":  # u = n_hat * gain + shift; d loss / d u is kept
                n_hat = F.layer_norm(h, h.shape[-1:])
                gain, shift = named[f"norm{i}.weight"], named[f"norm{i}.bias"]
                h = n_hat * gain.unsqueeze(-2) + shift.unsqueeze(-2)
                normed.append((n_hat.detach(), h))
            h = act(h)
            inputs.append(h)
        logits = outputs[-1].squeeze(-1)
        losses = F.binary_cross_entropy_with_logits(logits, y, reduction="none") * mask
        wrt = outputs + [u for _, u in normed]
        grads = torch.autograd.grad(losses.sum(), wrt)
    g_out, g_norm = grads[:n_layers], grads[n_layers:]
    sq = torch.zeros_like(mask)
    for a, g in zip(inputs, g_out, strict=True):
        g2 = g.pow(2).sum(-1)
        sq += a.detach().pow(2).sum(-1) * g2 + g2
    for (n_hat, _), g in zip(normed, g_norm, strict=True):
        sq += (g * n_hat).pow(2).sum(-1) + g.pow(2).sum(-1)
    s = _clip_factors(sq, clip, mask).unsqueeze(-1)  # (C, B, 1)
    out: dict[str, torch.Tensor] = {}
    for i, (a, g) in enumerate(zip(inputs, g_out, strict=True)):
        gs = g * s
        out[f"layer{i}.weight"] = torch.bmm(a.detach().transpose(1, 2), gs)
        out[f"layer{i}.bias"] = gs.sum(1)
    for i, (n_hat, _) in enumerate(normed):
        gs = g_norm[i] * s
        out[f"norm{i}.weight"] = (gs * n_hat).sum(1)
        out[f"norm{i}.bias"] = gs.sum(1)
    return out


def private_gradient(
    network: Network,
    named: dict[str, torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    mask: torch.Tensor,
    dp: SampleDP,
    out: torch.Tensor,
    method: str = "mlp",
) -> torch.Tensor:
    """Write the DP-SGD gradient of each client into ``out`` (C, P): the sum of the per-sample
    gradients of the real (mask = 1) samples, each clipped to ``dp.clip``, plus Gaussian noise
    of std ``noise_multiplier * clip``, over the expected batch size. ``method`` "vmap" uses
    torch.func per-sample gradients (the reference), "mlp" the exact norm shortcut."""
    summed = (clipped_sum_mlp if method == "mlp" else clipped_sum_vmap)(
        network, named, x, y, mask, dp.clip
    )
    views = network.spec.unflatten(out)
    for name, g in summed.items():
        views[name].copy_(g)
    if dp.noise_multiplier > 0.0:
        std = dp.noise_multiplier * dp.clip
        noise = torch.stack(
            [torch.randn(out.shape[1], generator=g, dtype=torch.float32) for g in dp.generators]
        )
        out.add_(noise.to(out), alpha=std)
    return out.div_(dp.expected_batch)
