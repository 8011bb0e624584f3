"""Privacy for federated training: participant-level DP-FedAvg (:mod:`.dp`), sample-level
DP-SGD at each participant (:mod:`.dp_sgd`), their accounting (:mod:`.accountant`) and secure
aggregation (:mod:`.secagg`).
"""

from __future__ import annotations

from fedmetamal.privacy.accountant import PrivacyAccountant, noise_for_target, predicted_epsilon
from fedmetamal.privacy.adaptive_clip import (
    DP_CLIP_STREAM,
    adjusted_noise_multiplier,
    default_count_stddev,
    update_clip,
)
from fedmetamal.privacy.dp import (
    DP_NOISE_STREAM,
    DPAggregator,
    PrivacyBudgetError,
    check_privacy_compatible,
    clip_rows,
    dp_mean,
)

__all__ = [
    "DP_CLIP_STREAM",
    "DP_NOISE_STREAM",
    "DPAggregator",
    "PrivacyAccountant",
    "PrivacyBudgetError",
    "adjusted_noise_multiplier",
    "check_privacy_compatible",
    "clip_rows",
    "default_count_stddev",
    "dp_mean",
    "noise_for_target",
    "predicted_epsilon",
    "update_clip",
]
