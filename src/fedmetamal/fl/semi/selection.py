"""Which pseudo-labels a client trusts: a confidence threshold, then class balance.

Malware data is imbalanced and non-IID clients are more so; a self-trained model that is a
little biased towards one class pseudo-labels that class more confidently, trains on it, and
drifts further. Class-balanced selection caps each class at its share of the labelled data (a
Laplace-smoothed prior), keeping the most confident rows of each class first.
"""

from __future__ import annotations

import torch


def select(
    probs: torch.Tensor,
    valid: torch.Tensor,
    threshold: float,
    prior: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Hard pseudo-labels and the 0/1 selection of rows (C, U) to train on.

    ``probs``: teacher malware probabilities (C, U); ``valid``: 1 for real rows (not padding);
    a row is confident when max(p, 1 - p) >= ``threshold``. With ``prior`` (C,), each client's
    malware share, class k keeps at most ceil(share_k x n_confident) of its confident rows,
    the most confident first.
    """
    conf = torch.maximum(probs, 1.0 - probs)
    hard = (probs >= 0.5).to(probs.dtype)
    chosen = (conf >= threshold) & (valid > 0)
    if prior is None:
        return hard, chosen.to(probs.dtype)
    n_chosen = chosen.sum(-1).to(probs.dtype)
    u = probs.shape[-1]
    positions = torch.arange(u, device=probs.device).expand_as(probs)
    keep = torch.zeros_like(chosen)
    for cls, share in ((1.0, prior), (0.0, 1.0 - prior)):
        cand = chosen & (hard == cls)
        cap = torch.ceil(share.to(probs.dtype) * n_chosen - 1e-6)
        order = torch.where(cand, conf, -1.0).argsort(dim=-1, descending=True, stable=True)
        rank = torch.empty_like(order).scatter_(-1, order, positions)
        keep |= cand & (rank < cap.unsqueeze(-1))
    return hard, keep.to(probs.dtype)


def labelled_prior(n_malware: torch.Tensor, n_labelled: torch.Tensor) -> torch.Tensor:
    """Laplace-smoothed malware share (n_malware + 1) / (n_labelled + 2): a client with few
    labels of one class still admits some pseudo-labels of the other."""
    return (n_malware + 1.0) / (n_labelled + 2.0)
