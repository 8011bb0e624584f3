"""Update validation: the step between the clients' uploads and clipping / masking / aggregation.

One malformed upload is enough to ruin a round: a single NaN or inf coordinate turns the mean
(and every later model) into NaN, and an absurdly long update dominates any mean. Validation
drops such rows before anything combines them, logs why, and lets the round finish on the
rest (when *every* row is non-finite the runtime reports divergence instead: that is
training blowing up, not a malformed upload). Two checks, both per row:

* non-finite values (NaN, +inf, -inf): always on;
* ``aggregation.max_update_norm``: an L2 norm above the bound *excludes* the row (norm-bound
  aggregation and DP clipping *shrink* rows instead, keeping their direction).

With secure aggregation the server never sees a row, so these checks stand for the ones an
honest client's own software runs before it masks (a NaN cannot even be encoded). Malicious
clients skip them there: the runtime passes their rows through unchecked, a ``malformed``
attacker then uploads a malformed masked vector that the protocol's server excludes, and
over-long rows are only cut to ``secagg.range`` per coordinate by the encoding. (Bounding
malicious norms under secure aggregation needs zero-knowledge norm proofs, not done here.)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import torch

from fedmetamal.fl.base import ClientOutput

logger = logging.getLogger(__name__)


@dataclass
class UpdateCheck:
    """Outcome of validating one round's stacked updates."""

    keep: np.ndarray  # row indices that passed, ascending
    excluded: dict[int, str] = field(default_factory=dict)  # client id -> reason
    non_finite: int = 0  # rows excluded for NaN / inf values

    @property
    def all_pass(self) -> bool:
        return not self.excluded


def check_updates(
    delta: torch.Tensor,
    clients: np.ndarray,
    max_norm: float | None = None,
    unchecked: np.ndarray | None = None,
) -> UpdateCheck:
    """Which rows of the (C, P) ``delta`` may be aggregated; ``clients`` are the rows' ids.

    A row fails on any non-finite value, or (with ``max_norm``) on an L2 norm above it.
    ``unchecked`` (bool per row): rows that skip the checks and always pass (malicious clients
    under secure aggregation, whose checks would run on their own machines).
    """
    n = delta.shape[0]
    finite = torch.isfinite(delta).all(dim=1)
    ok = finite
    norms = None
    if max_norm is not None:
        norms = torch.linalg.vector_norm(torch.where(finite[:, None], delta, 0.0), dim=1)
        ok = finite & (norms <= max_norm)
    if unchecked is not None:
        skip = torch.as_tensor(unchecked, dtype=torch.bool, device=ok.device)
        ok, finite = ok | skip, finite | skip
    ok_np = ok.cpu().numpy()
    if ok_np.all():
        return UpdateCheck(np.arange(n))
    excluded: dict[int, str] = {}
    for row in np.flatnonzero(~ok_np):
        cid = int(clients[row])
        if not bool(finite[row]):
            values = delta[row]
            nan = int(torch.isnan(values).sum())
            inf = int(torch.isinf(values).sum())
            excluded[cid] = f"non-finite update ({nan} NaN, {inf} inf values)"
        else:
            assert norms is not None
            excluded[cid] = (
                f"update norm {float(norms[row]):.3g} > aggregation.max_update_norm {max_norm:g}"
            )
        logger.warning("update of client %d excluded: %s", cid, excluded[cid])
    return UpdateCheck(np.flatnonzero(ok_np), excluded, int((~finite).sum()))


def select_rows(out: ClientOutput, rows: np.ndarray) -> ClientOutput:
    """The clients' outputs restricted to ``rows`` (copies: the runtime reuses its buffers)."""
    idx = torch.as_tensor(rows, device=out.delta.device, dtype=torch.long)
    return ClientOutput(
        out.delta[idx],
        out.num_samples[idx.to(out.num_samples.device)],
        out.steps[idx.to(out.steps.device)],
        out.train_loss[idx.to(out.train_loss.device)],
        {k: v[idx.to(v.device)] for k, v in out.extras.items()},
    )
