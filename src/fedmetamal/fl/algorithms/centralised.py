"""Centralised baseline: the same training on all clients' data pooled in one place.

It is the upper bound federated runs are compared against; each round is ``local_epochs``
passes over the pooled training data.
"""

from __future__ import annotations

from fedmetamal.fl.base import Algorithm


class Centralised(Algorithm):
    name = "centralised"
    summary = "baseline: one model trained on the pooled data of all clients"
    reference = "upper bound for federated training"
    pooled = True
