"""The semi-supervised objective: what unlabelled rows add to a local step.

Local training runs ONE forward/backward per step over the labelled rows and, appended along
the batch dimension, the unlabelled rows' student view with pseudo-label targets and
per-sample weights. Client c's loss is

    sum_labelled mask * bce / n_labelled_in_batch
      + lambda * ramp * sum_unlabelled selected * bce / (mu * B)

(``mu * B``: every unlabelled row of the step, selected or not, as FixMatch normalises), with
ramp = 0 for the first ``warmup_rounds`` rounds and 1 after. During warm-up the objective is
inactive and local training is exactly the supervised one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from fedmetamal.config import AugmentConfig, SemiConfig
from fedmetamal.fl.base import RoundContext
from fedmetamal.fl.semi.augment import strong, weak
from fedmetamal.fl.semi.methods import METHODS
from fedmetamal.fl.semi.selection import select
from fedmetamal.fl.semi.teachers import agreement_teacher, global_teacher, local_teacher
from fedmetamal.models.networks import Network


@dataclass
class SemiGroup:
    """Per-round inputs of a group of C clients beyond their batches."""

    objective: SemiObjective
    weight: float  # lambda * ramp of this round
    generators: Sequence[torch.Generator]  # one per client: augmentations
    prior: torch.Tensor | None = None  # (C,) malware share for class-balanced selection
    helpers: torch.Tensor | None = None  # (k, C, P) fedmatch helper models
    helper_valid: torch.Tensor | None = None  # (k, C) 1 where the helper exists


@dataclass
class UnlabelledPart:
    """What the unlabelled rows add to a step: inputs (C, U, d), targets and weights (C, U)."""

    x: torch.Tensor
    targets: torch.Tensor
    weights: torch.Tensor


@dataclass(frozen=True)
class SemiObjective:
    method: str
    threshold: float
    unlabelled_weight: float
    warmup_rounds: int
    mu: int
    class_balanced: bool
    helpers: int
    augment: AugmentConfig

    @classmethod
    def from_config(cls, cfg: SemiConfig) -> SemiObjective:
        return cls(
            cfg.method,
            cfg.threshold,
            cfg.unlabelled_weight,
            cfg.warmup_rounds,
            cfg.unlabelled_ratio,
            cfg.class_balanced,
            cfg.helpers,
            cfg.augment,
        )

    @property
    def uses_unlabelled(self) -> bool:
        """Whether the method ever trains on unlabelled rows (else: supervised)."""
        return METHODS[self.method].teacher != "none"

    @property
    def uses_helpers(self) -> bool:
        return METHODS[self.method].teacher == "helpers"

    def active(self, round_index: int) -> bool:
        """Whether unlabelled rows enter local training in round ``round_index`` (0-based)."""
        return self.uses_unlabelled and round_index >= self.warmup_rounds

    def round_weight(self, round_index: int) -> float:
        """lambda * ramp: the ramp is a step, 0 during warm-up and 1 after."""
        return self.unlabelled_weight if self.active(round_index) else 0.0

    @torch.no_grad()
    def unlabelled_part(
        self,
        network: Network,
        params: torch.Tensor,
        ctx: RoundContext,
        x_u: torch.Tensor,
        mask_u: torch.Tensor,
        group: SemiGroup,
    ) -> UnlabelledPart:
        """Student inputs, hard pseudo-labels and weights for the unlabelled rows of a step.

        ``params`` (C, P): the clients' current local models; ``mask_u`` (C, U): real rows.
        """
        method = METHODS[self.method]
        if method.augmented:
            x_teacher = weak(x_u, self.augment, group.generators)
            x_student = strong(x_u, self.augment, group.generators)
        else:
            x_teacher = x_student = x_u
        if method.teacher == "local":
            probs = local_teacher(network, params, x_teacher)
        elif method.teacher == "global":
            probs = global_teacher(network, ctx.global_params, x_teacher)
        else:
            probs = agreement_teacher(network, params, group.helpers, group.helper_valid, x_teacher)
        prior = group.prior if self.class_balanced else None
        targets, chosen = select(probs, mask_u, self.threshold, prior)
        per_row = group.weight / mask_u.sum(-1, keepdim=True).clamp_min(1.0)
        return UnlabelledPart(x_student, targets, chosen * per_row)
