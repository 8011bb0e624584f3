"""Augmentations of preprocessed (standardised) feature vectors for consistency training.

Images have flips and crops; tabular malware features have no such label-preserving moves, so
FixMatch-style methods here use SCARF-style corruption (Bahri et al. 2022: a feature takes the
value the same feature has in another random row of the batch, so it stays on the feature's
marginal), masking (a feature set to 0, the mean after standardisation) and Gaussian noise (in
feature standard deviations, since features are standardised). ``weak`` is mild (the teacher's
view), ``strong`` is heavy (the student's view).

Random draws come from one generator per client (row of the (C, B, d) stack), so a client's
augmentations do not depend on which other clients train in the same group.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from fedmetamal.config import AugmentConfig

Generators = torch.Generator | Sequence[torch.Generator]


def weak(x: torch.Tensor, cfg: AugmentConfig, gen: Generators) -> torch.Tensor:
    """The teacher's view: mild corruption, masking and noise."""
    return augment(x, cfg.weak_corrupt, cfg.weak_mask, cfg.weak_noise, gen)


def strong(x: torch.Tensor, cfg: AugmentConfig, gen: Generators) -> torch.Tensor:
    """The student's view: heavy corruption, masking and noise."""
    return augment(x, cfg.strong_corrupt, cfg.strong_mask, cfg.strong_noise, gen)


def augment(
    x: torch.Tensor, corrupt: float, mask: float, noise: float, gen: Generators
) -> torch.Tensor:
    """A corrupted copy of ``x`` (C, B, d); ``gen``: one generator, or one per client.

    Each entry is independently replaced, with probability ``corrupt``, by the same feature of
    another row of its client's batch (chosen uniformly among the other B - 1 rows); then set
    to 0 with probability ``mask``; entries not masked get N(0, noise^2) added.
    """
    n_c, b, d = x.shape
    if b == 0 or (corrupt == 0 and mask == 0 and noise == 0):
        return x.clone()
    n_uniform = 2 * (corrupt > 0 and b > 1) + (mask > 0)
    u, z = _draws(gen, n_c, (b, d), n_uniform, noise > 0, x.device, x.dtype)
    out = x.clone()
    k = 0
    if corrupt > 0 and b > 1:
        # another row: i + 1 + floor(u (B - 1)) mod B is uniform over the rows other than i
        shift = (u[k + 1] * (b - 1)).long().clamp_max(b - 2) + 1
        rows = (torch.arange(b, device=x.device).view(1, b, 1) + shift) % b
        out = torch.where(u[k] < corrupt, torch.gather(x, 1, rows), out)
        k += 2
    keep = None
    if mask > 0:
        keep = u[k] >= mask
        out = out * keep
    if noise > 0:
        assert z is not None
        out = out + noise * (z if keep is None else z * keep)
    return out


def _draws(
    gen: Generators,
    n_c: int,
    shape: tuple[int, int],
    n_uniform: int,
    normal: bool,
    device: torch.device,
    dtype: torch.dtype,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Uniform (n_uniform, C, *shape) and normal (C, *shape) draws, per client when ``gen`` is
    a sequence of generators (client c's rows come from ``gen[c]`` alone)."""
    if isinstance(gen, torch.Generator):
        u = torch.rand((n_uniform, n_c, *shape), generator=gen, device=device, dtype=dtype)
        z = (
            torch.randn((n_c, *shape), generator=gen, device=device, dtype=dtype)
            if normal
            else None
        )
        return u, z
    if len(gen) != n_c:
        raise ValueError(f"{len(gen)} generators for {n_c} clients")
    us, zs = [], []
    for g in gen:
        us.append(torch.rand((n_uniform, *shape), generator=g, device=device, dtype=dtype))
        if normal:
            zs.append(torch.randn(shape, generator=g, device=device, dtype=dtype))
    return torch.stack(us, 1), torch.stack(zs) if normal else None
