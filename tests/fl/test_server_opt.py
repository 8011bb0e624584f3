"""Server optimisers on hand-checkable numbers."""

from __future__ import annotations

import torch

from fedmetamal.fl.algorithms.fednova import effective_steps
from fedmetamal.fl.server_opt import ServerAdaptive, ServerMomentum, ServerSGD


def test_sgd_and_momentum() -> None:
    x, u = torch.tensor([1.0, 2.0]), torch.tensor([0.5, -1.0])
    new, _ = ServerSGD(0.5).step(x, u, {})
    assert torch.allclose(new, torch.tensor([1.25, 1.5]))
    opt = ServerMomentum(1.0, 0.9)
    state = opt.init_state(x)
    x1, state = opt.step(x, u, state)
    x2, state = opt.step(x1, u, state)
    assert torch.allclose(x2 - x1, 1.9 * u)


def test_adaptive_first_step_is_sign_like() -> None:
    x, u = torch.zeros(3), torch.tensor([1.0, -2.0, 0.0])
    for kind in ("adam", "yogi", "adagrad"):
        opt = ServerAdaptive(0.1, 0.9, 0.99, 1e-3, kind)
        new, state = opt.step(x, u, opt.init_state(x))
        assert new[0] > 0 > new[1]
        assert new[2] == 0
        assert set(state) == {"m", "v"}


def test_yogi_second_moment_grows_slower_than_adagrad() -> None:
    x, u = torch.zeros(1), torch.tensor([1.0])
    yogi, ada = (
        ServerAdaptive(0.1, 0.9, 0.99, 1e-3, "yogi"),
        ServerAdaptive(0.1, 0.9, 0.99, 1e-3, "adagrad"),
    )
    sy, sa = yogi.init_state(x), ada.init_state(x)
    for _ in range(5):
        _, sy = yogi.step(x, u, sy)
        _, sa = ada.step(x, u, sa)
    assert sy["v"] < sa["v"]


def test_fednova_effective_steps() -> None:
    steps = torch.tensor([1.0, 4.0])
    assert torch.allclose(
        effective_steps(steps, 0.0), torch.tensor([1.0, 4.0], dtype=torch.float64)
    )
    # momentum 0.5, tau 2: (2 - 0.5 * (1 - 0.25) / 0.5) / 0.5 = 2.5  (= 1 + 1.5)
    assert torch.isclose(
        effective_steps(torch.tensor([2.0]), 0.5), torch.tensor(2.5, dtype=torch.float64)
    )
