"""Feature augmentations: shapes, determinism, the configured rates, where values come from."""

from __future__ import annotations

import pytest
import torch

from fedmetamal.config import AugmentConfig
from fedmetamal.fl.semi.augment import augment, strong, weak


def _x(c: int = 3, b: int = 200, d: int = 40, seed: int = 0) -> torch.Tensor:
    return torch.randn((c, b, d), generator=torch.Generator().manual_seed(seed))


def _gens(n: int, seed: int = 1) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(seed * 100 + i) for i in range(n)]


def test_shapes_and_determinism() -> None:
    x, cfg = _x(), AugmentConfig()
    for fn in (weak, strong):
        a, b = fn(x, cfg, _gens(3)), fn(x, cfg, _gens(3))
        assert a.shape == x.shape and a.dtype == x.dtype
        assert torch.equal(a, b)
        assert not torch.equal(a, fn(x, cfg, _gens(3, seed=2)))
    assert torch.equal(x, _x())  # the input is never modified


def test_per_client_generators_make_clients_independent_of_grouping() -> None:
    """Client c's augmentation depends on its own generator alone (batched = looped)."""
    x, cfg = _x(), AugmentConfig()
    together = strong(x, cfg, _gens(3))
    for c in range(3):
        alone = strong(x[c : c + 1], cfg, [_gens(3)[c]])
        assert torch.equal(alone[0], together[c])


@pytest.mark.parametrize("rate", [0.1, 0.3, 0.6])
def test_corruption_rate_and_source(rate: float) -> None:
    x = _x()
    out = augment(x, rate, 0.0, 0.0, _gens(3))
    changed = out != x
    assert abs(float(changed.float().mean()) - rate) < 0.02
    # every corrupted value is the same feature of another row of the same client's batch
    c_idx, i_idx, f_idx = changed.nonzero(as_tuple=True)
    for c, i, f in list(zip(c_idx.tolist(), i_idx.tolist(), f_idx.tolist(), strict=True))[:500]:
        column = x[c, :, f]
        others = torch.cat([column[:i], column[i + 1 :]])
        assert bool((others == out[c, i, f]).any())


def test_mask_sets_zero_and_leaves_the_rest() -> None:
    x = _x()
    out = augment(x, 0.0, 0.25, 0.0, _gens(3))
    zero = out == 0
    assert abs(float(zero.float().mean()) - 0.25) < 0.02
    assert torch.equal(out[~zero], x[~zero])


def test_noise_scale_and_masked_entries_stay_zero() -> None:
    x = _x(b=400)
    out = augment(x, 0.0, 0.0, 0.5, _gens(3))
    assert abs(float((out - x).std()) - 0.5) < 0.02
    masked_noisy = augment(x, 0.0, 0.3, 0.5, _gens(3))
    dropped = masked_noisy == 0
    assert abs(float(dropped.float().mean()) - 0.3) < 0.02  # noise never touches masked entries


def test_strong_changes_more_than_weak() -> None:
    x, cfg = _x(), AugmentConfig()
    d_weak = (weak(x, cfg, _gens(3)) - x).abs().mean()
    d_strong = (strong(x, cfg, _gens(3)) - x).abs().mean()
    assert d_strong > 2 * d_weak > 0


def test_edge_cases() -> None:
    x = _x(b=1)
    assert torch.equal(augment(x, 1.0, 0.0, 0.0, _gens(3)), x)  # no other row to copy from
    assert torch.equal(augment(x, 0.0, 0.0, 0.0, _gens(3)), x)
    single = augment(_x(), 0.3, 0.1, 0.1, torch.Generator().manual_seed(0))
    assert single.shape == _x().shape
    with pytest.raises(ValueError, match="generators"):
        augment(_x(), 0.3, 0.0, 0.0, _gens(2))
