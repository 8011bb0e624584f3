"""The stored threshold flags at most the target share of held-out benign files, and no less."""

from __future__ import annotations

import numpy as np
import pytest

from fedmetamal.detect.threshold import DEFAULT_THRESHOLD, choose_threshold


@pytest.mark.parametrize("target", [0.0, 0.01, 0.05, 0.2])
def test_threshold_is_the_lowest_meeting_the_target(target: float) -> None:
    rng = np.random.default_rng(3)
    benign = rng.beta(2, 8, 1000).astype(np.float32)
    malware = rng.beta(8, 2, 300).astype(np.float32)
    info = choose_threshold(benign, malware, target, source="unit test")
    value = info["value"]
    assert np.mean(benign >= value) <= target
    # one float32 step lower flags more benign files than the target allows
    below = np.nextafter(np.float32(value), np.float32(0))
    assert np.mean(benign >= below) > target
    assert info["fpr"] == pytest.approx(np.mean(benign >= value))
    assert info["tpr"] == pytest.approx(np.mean(malware >= value))
    assert (info["benign"], info["malware"], info["source"]) == (1000, 300, "unit test")


def test_ties_never_exceed_the_target() -> None:
    benign = np.array([0.9] * 5 + [0.1] * 95, np.float32)
    info = choose_threshold(benign, np.array([0.95], np.float32), 0.01)
    assert info["value"] > 0.9 and info["fpr"] == 0.0


def test_without_benign_scores_it_falls_back_and_says_so() -> None:
    info = choose_threshold(np.zeros(0), np.array([0.7]), source="none")
    assert info["value"] == DEFAULT_THRESHOLD
    assert "no held-out benign" in info["method"]
    with pytest.raises(ValueError, match="target_fpr"):
        choose_threshold(np.zeros(3), np.zeros(0), 1.5)
