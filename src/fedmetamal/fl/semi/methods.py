"""The semi-supervised methods, each as the teacher it uses and the views it compares.

* ``supervised``: labelled data only (the baseline).
* ``pseudo-label`` (self-training, Lee 2013): the client's current model labels its own
  unlabelled rows; the student trains on the same rows.
* ``fixmatch`` (Sohn et al. 2020): the current model labels a weak view, the student trains
  on a strong view of the same rows.
* ``fedmatch`` (Jeong et al., ICLR 2021, simplified): inter-client consistency through
  agreement: the pseudo-label is the mean probability of the local model and ``helpers``
  models of the most similar other clients (cosine of their last deltas) on the weak view;
  the paper's parameter decomposition and KD-tree helper search are left out.
* ``semifl`` (Diao et al., NeurIPS 2022, simplified): the fixed global model of the round
  labels the weak view (clients cannot drift on their own labels); the server fine-tunes on
  its labelled set after each aggregation (mixup and static batch norm are left out).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Method:
    teacher: Literal["none", "local", "global", "helpers"]
    #: Teacher on a weak view, student on a strong view (else both on the rows as they are).
    augmented: bool


METHODS: dict[str, Method] = {
    "supervised": Method("none", False),
    "pseudo-label": Method("local", False),
    "fixmatch": Method("local", True),
    "fedmatch": Method("helpers", True),
    "semifl": Method("global", True),
}
