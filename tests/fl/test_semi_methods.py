"""Semi-supervised pieces as pure functions: selection, helpers, the loss, server fine-tuning."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fedmetamal.config import SemiConfig
from fedmetamal.fl.base import Algorithm, NoParams, RoundContext
from fedmetamal.fl.local import Batch, cycling_plan, local_train, semi_step_count
from fedmetamal.fl.semi import (
    METHODS,
    SemiGroup,
    SemiObjective,
    labelled_prior,
    select,
    select_helpers,
    server_finetune,
)
from fedmetamal.models.networks import Network


def test_threshold_selection_ignores_padding() -> None:
    probs = torch.tensor([[0.99, 0.02, 0.6, 0.97, 0.5, 0.999]])
    valid = torch.tensor([[1.0, 1, 1, 1, 1, 0]])
    hard, chosen = select(probs, valid, 0.95)
    assert hard.tolist() == [[1, 0, 1, 1, 1, 1]]  # p >= 0.5 is malware, as in evaluation
    assert chosen.tolist() == [[1, 1, 0, 1, 0, 0]]


def test_class_balanced_selection_caps_each_class_by_its_prior() -> None:
    malware = [0.999, 0.998, 0.997, 0.996, 0.995, 0.994, 0.993, 0.992]
    probs = torch.tensor([[0.993, *malware[:-1], 0.01, 0.03]])  # 8 malware, 2 benign confident
    valid = torch.ones_like(probs)
    _, chosen = select(probs, valid, 0.95, torch.tensor([0.5]))
    kept = chosen[0].bool()
    assert int(kept.sum()) == 7  # ceil(0.5 * 10) = 5 malware, both benign
    assert kept[-2:].all()
    kept_malware = probs[0][kept & (probs[0] > 0.5)]
    assert sorted(kept_malware.tolist(), reverse=True) == pytest.approx(malware[:5])
    _, unbalanced = select(probs, valid, 0.95, None)
    assert int(unbalanced.sum()) == 10
    assert labelled_prior(torch.tensor(0.0), torch.tensor(3.0)) == pytest.approx(0.2)


def test_helpers_are_the_most_similar_other_clients_with_history() -> None:
    deltas = torch.tensor([[1.0, 0.0], [-1.0, 0.1], [0.9, 0.2], [0.8, 0.5], [1.0, 0.01]])
    has = torch.tensor([True, True, True, True, False])
    ids, valid = select_helpers(deltas, has, torch.tensor([0, 4]), k=2)
    assert ids.shape == valid.shape == (2, 2)
    assert ids[:, 0].tolist() == [2, 3]  # client 0: 2 then 3; never itself, never 4
    assert valid[:, 0].tolist() == [1.0, 1.0]
    assert valid[:, 1].tolist() == [0.0, 0.0]  # client 4 has no history yet: no helpers
    none, _ = select_helpers(deltas[:1], has[:1], torch.tensor([0]), k=2)
    assert none.shape == (0, 1)


def test_objective_is_inactive_during_warmup_and_for_supervised() -> None:
    obj = SemiObjective.from_config(
        SemiConfig(method="fixmatch", warmup_rounds=2, unlabelled_weight=0.5)
    )
    assert [obj.active(r) for r in range(4)] == [False, False, True, True]
    assert [obj.round_weight(r) for r in range(4)] == [0.0, 0.0, 0.5, 0.5]
    sup = SemiObjective.from_config(SemiConfig())
    assert not sup.uses_unlabelled and not sup.active(100)
    assert set(METHODS) == {"supervised", "pseudo-label", "fixmatch", "fedmatch", "semifl"}


def test_step_rule_and_cycling_plan() -> None:
    assert semi_step_count(10, 300, 16, 2, 1.0, None) == 10  # ceil(max(10, 150) / 16)
    assert semi_step_count(200, 30, 16, 2, 2.0, None) == 26  # 2 * ceil(200 / 16)
    assert semi_step_count(200, 30, 16, 2, 2.0, 3) == 3
    plan = cycling_plan(7, 5, 6, torch.Generator().manual_seed(0))
    assert plan.shape == (6, 5)
    flat = plan.reshape(-1)
    for start in range(0, 28, 7):  # fresh permutations laid end to end
        assert sorted(flat[start : start + 7].tolist()) == list(range(7))


def _bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="none")


def test_one_step_follows_the_documented_loss() -> None:
    """loss_c = sum mask*bce / n_labelled + lambda * sum selected*bce(pseudo) / (mu B)."""
    torch.manual_seed(0)
    net = Network(6, (5,))
    g = net.init(torch.Generator().manual_seed(1))
    x, x_u = torch.randn(2, 4, 6), 3 * torch.randn(2, 8, 6)
    y = torch.tensor([[1.0, 0, 1, 0], [0, 1, 1, 0]])
    mask = torch.tensor([[1.0, 1, 1, 0], [1, 1, 1, 1]])  # client 0: a padded row
    mask_u = torch.ones(2, 8)
    obj = SemiObjective.from_config(
        SemiConfig(
            method="pseudo-label", threshold=0.55, unlabelled_weight=0.7, class_balanced=False
        )
    )
    group = SemiGroup(obj, 0.7, [torch.Generator() for _ in range(2)])
    ctx = RoundContext(0, g, {}, lr=0.3)
    batch = Batch(x, y, mask, torch.ones(2), x_u, mask_u)
    out, _ = local_train(
        net, Algorithm(NoParams()), ctx, [batch], {}, torch.tensor([4.0, 4.0]), semi=group
    )
    n_selected = 0
    for c in range(2):
        p = g.clone().requires_grad_(True)
        logits = net.forward(p.unsqueeze(0), x[c : c + 1])[0]
        probs = torch.sigmoid(net.forward(g.unsqueeze(0), x_u[c : c + 1])[0])
        chosen = (torch.maximum(probs, 1 - probs) >= 0.55).float()
        n_selected += int(chosen.sum())
        pseudo = (probs >= 0.5).float()
        logits_u = net.forward(p.unsqueeze(0), x_u[c : c + 1])[0]
        loss = (mask[c] * _bce(logits, y[c])).sum() / mask[c].sum()
        loss = loss + 0.7 * (chosen * _bce(logits_u, pseudo)).sum() / 8
        (grad,) = torch.autograd.grad(loss, p)
        torch.testing.assert_close(out.delta[c], -0.3 * grad, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(out.train_loss[c], loss.detach(), atol=1e-6, rtol=1e-5)
    assert 0 < n_selected < 16  # the selection really matters


def test_global_teacher_and_helpers_enter_the_targets() -> None:
    """semifl labels with the round's global model, fedmatch with the helpers' agreement."""
    net = Network(6, (5,))
    g = net.init(torch.Generator().manual_seed(1))
    params = g.unsqueeze(0).repeat(2, 1) + 0.5 * torch.randn(2, g.numel())
    x_u, mask_u = torch.randn(2, 8, 6), torch.ones(2, 8)
    ctx = RoundContext(0, g, {}, lr=0.1)
    parts = {}
    for method in ("fixmatch", "semifl", "fedmatch"):
        obj = SemiObjective.from_config(
            SemiConfig(method=method, threshold=0.51, class_balanced=False)
        )
        gens = [torch.Generator().manual_seed(5 + c) for c in range(2)]
        helpers = 3 * torch.randn(1, 2, g.numel())
        group = SemiGroup(obj, 1.0, gens, None, helpers, torch.ones(1, 2))
        parts[method] = obj.unlabelled_part(net, params, ctx, x_u, mask_u, group)
    # same augmentations (same generators), different teachers: different pseudo-labels
    torch.testing.assert_close(parts["fixmatch"].x, parts["semifl"].x)
    assert not torch.equal(parts["fixmatch"].targets, parts["semifl"].targets)
    assert not torch.equal(parts["fixmatch"].targets, parts["fedmatch"].targets)
    w = parts["fixmatch"].weights
    assert set(np.unique(w.numpy()).tolist()) <= {0.0, 1 / 8}


def test_server_finetune_learns_and_is_deterministic() -> None:
    net = Network(6, (8,))
    g = net.init(torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(3)
    X = torch.randn(120, 6, generator=gen)
    y = (X[:, 0] > 0).float()
    ctx = RoundContext(2, g, {}, lr=0.5)
    before = g.clone()
    new, loss = server_finetune(net, g, X, y, ctx, batch_size=16, epochs=3.0, seed=0)
    again, _ = server_finetune(net, g, X, y, ctx, batch_size=16, epochs=3.0, seed=0)
    assert torch.equal(g, before) and torch.equal(new, again)

    def mean_loss(p: torch.Tensor) -> float:
        return float(_bce(net.forward(p.unsqueeze(0), X.unsqueeze(0))[0], y).mean())

    assert mean_loss(new) < mean_loss(g) - 0.1
    assert np.isfinite(loss)
