"""Semi-supervised federated learning: augmentations, pseudo-label methods, server fine-tuning.

Written once as pure tensor functions; ``fl.local.local_train`` folds an objective's unlabelled
rows into its single forward/backward, and every runtime calls that.
"""

from __future__ import annotations

from fedmetamal.fl.semi.augment import augment, strong, weak
from fedmetamal.fl.semi.helpers import select_helpers
from fedmetamal.fl.semi.methods import METHODS, Method
from fedmetamal.fl.semi.objective import SemiGroup, SemiObjective, UnlabelledPart
from fedmetamal.fl.semi.selection import labelled_prior, select
from fedmetamal.fl.semi.server import server_finetune

__all__ = [
    "METHODS",
    "Method",
    "SemiGroup",
    "SemiObjective",
    "UnlabelledPart",
    "augment",
    "labelled_prior",
    "select",
    "select_helpers",
    "server_finetune",
    "strong",
    "weak",
]
