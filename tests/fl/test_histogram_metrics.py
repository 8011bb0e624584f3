"""Federated evaluation from score histograms gives the metrics of the pooled scores.

``histogram_metrics`` must agree with ``detection_metrics`` (what the simulation reports) up to
the bin width, and ``histogram_threshold`` with ``choose_threshold`` up to one bin, or the
network runtime's numbers would not be comparable with the simulation's.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from fedmetamal.detect.threshold import choose_threshold
from fedmetamal.fl.histogram_metrics import (
    BINS,
    histogram_metrics,
    histogram_threshold,
    score_histogram,
)
from fedmetamal.fl.metrics import FPR_TARGETS, detection_metrics

BIN = 1.0 / BINS


def _scores(seed: int, n_benign: int, n_malware: int) -> tuple[np.ndarray, np.ndarray]:
    """Overlapping benign (low) and malware (high) scores, plus a few exactly at 0.5 and 0/1."""
    rng = np.random.default_rng(seed)
    benign = rng.beta(2.0, 5.0, n_benign)
    malware = rng.beta(5.0, 2.0, n_malware)
    benign[:3] = [0.5, 0.0, 1.0]  # the 0.5 edge and both ends belong to their bins
    malware[:3] = [0.5, 0.0, 1.0]
    return benign, malware


def _pooled(benign: np.ndarray, malware: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.concatenate([benign, malware])
    labels = np.concatenate([np.zeros(benign.size, np.int64), np.ones(malware.size, np.int64)])
    return scores, labels


def _loss_sum(scores: np.ndarray, labels: np.ndarray) -> float:
    p = np.clip(scores, 1e-7, 1 - 1e-7)
    return float(-(labels * np.log(p) + (1 - labels) * np.log1p(-p)).sum())


@pytest.mark.parametrize(("seed", "n_benign", "n_malware"), [(0, 2000, 1500), (1, 300, 4000)])
def test_histogram_metrics_match_pooled_scores(seed: int, n_benign: int, n_malware: int) -> None:
    benign, malware = _scores(seed, n_benign, n_malware)
    scores, labels = _pooled(benign, malware)
    want = detection_metrics(scores, labels)
    got = histogram_metrics(
        score_histogram(benign), score_histogram(malware), _loss_sum(scores, labels)
    )
    assert set(got) == set(want)
    # 0.5 is a bin edge, so every thresholded count is exact
    for key in ("accuracy", "precision", "recall", "f1", "n", "malware_share"):
        assert got[key] == pytest.approx(want[key], abs=1e-12), key
    assert got["loss"] == pytest.approx(want["loss"], rel=1e-9)
    assert abs(got["roc_auc"] - want["roc_auc"]) < 1e-3
    for name, target in FPR_TARGETS.items():
        # the histogram reads the ROC curve at bin edges: its TPR lies between the exact TPR
        # at the target FPR and the exact TPR one bin above that operating point
        exact = want[name]
        assert got[name] <= exact + 1e-12, name
        order = np.sort(benign)[::-1]
        allowed = math.floor(target * benign.size + 1e-9)
        cut = order[allowed] if allowed < benign.size else 0.0
        one_bin_up = float(np.mean(malware > cut + BIN))
        assert got[name] >= one_bin_up - 1e-12, name


def test_histograms_of_parts_add_up_to_the_whole() -> None:
    """Participants' histograms are summed by the server: the sum is the pooled histogram."""
    benign, malware = _scores(2, 900, 700)
    parts = np.array_split(np.arange(benign.size), 3)
    mparts = np.array_split(np.arange(malware.size), 3)
    b = sum(score_histogram(benign[i]) for i in parts)
    m = sum(score_histogram(malware[i]) for i in mparts)
    np.testing.assert_array_equal(b, score_histogram(benign))
    np.testing.assert_array_equal(m, score_histogram(malware))
    assert b.dtype == np.int64 and b.shape == (BINS,)


def test_one_class_gives_nan_ranking_metrics_like_detection_metrics() -> None:
    benign, _ = _scores(3, 500, 10)
    scores, labels = _pooled(benign, np.empty(0))
    want = detection_metrics(scores, labels)
    got = histogram_metrics(score_histogram(benign), np.zeros(BINS, np.int64), 0.0)
    for key in ("roc_auc", *FPR_TARGETS):
        assert math.isnan(got[key]) and math.isnan(want[key]), key
    assert got["accuracy"] == pytest.approx(want["accuracy"], abs=1e-12)
    assert got["precision"] == want["precision"] == 0.0
    assert got["f1"] == want["f1"] == 0.0


def test_recall_without_malware_matches_detection_metrics() -> None:
    """A participant whose test split holds no malware: the simulation reports recall 0.0
    (sklearn's zero_division=0), so the federated per-participant metric must too."""
    benign, _ = _scores(4, 400, 10)
    scores, labels = _pooled(benign, np.empty(0))
    want = detection_metrics(scores, labels)
    got = histogram_metrics(score_histogram(benign), np.zeros(BINS, np.int64), 0.0)
    assert want["recall"] == 0.0
    assert got["recall"] == want["recall"]


def test_empty_histograms_give_nan_not_an_error() -> None:
    got = histogram_metrics(np.zeros(BINS, np.int64), np.zeros(BINS, np.int64), 0.0)
    assert got["n"] == 0
    for key in ("loss", "accuracy", "roc_auc", "malware_share"):
        assert math.isnan(got[key]), key


@pytest.mark.parametrize("target", [0.01, 0.001, 0.1, 0.0])
@pytest.mark.parametrize("seed", [0, 5])
def test_histogram_threshold_agrees_with_choose_threshold(seed: int, target: float) -> None:
    rng = np.random.default_rng(seed)
    benign = rng.beta(2.0, 5.0, 3000)
    exact = choose_threshold(benign, np.empty(0), target)["value"]
    got = histogram_threshold(score_histogram(benign), target)
    assert got is not None
    # the histogram can only cut at bin edges: the next edge at or above the exact cut
    assert exact - 1e-6 <= got <= exact + BIN + 1e-6
    # and it keeps the promise: at most target of the benign scores are flagged
    assert float(np.mean(benign >= got)) <= target + 1e-12


def test_histogram_threshold_without_benign_is_none() -> None:
    assert histogram_threshold(np.zeros(BINS, np.int64), 0.01) is None
