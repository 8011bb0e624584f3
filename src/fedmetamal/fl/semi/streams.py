"""Seed streams of the semi-supervised random choices (``fl.schedule.round_seed``'s ``stream``).

Distinct from the schedule's own streams (1-3), so adding unlabelled data never changes which
clients are sampled or which labelled rows a step sees.
"""

from __future__ import annotations

#: Per client and round: the unlabelled rows of each step; the augmentations.
UNLABELLED_STREAM, AUGMENT_STREAM = 11, 12
#: Per round: the server set's shuffle and dropout during server fine-tuning.
SERVER_STREAM, SERVER_DROPOUT_STREAM = 13, 14
