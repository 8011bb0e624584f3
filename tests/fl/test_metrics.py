"""Detection metrics against cases small enough to check by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fedmetamal.fl.metrics import (
    FPR_TARGETS,
    METRIC_NAMES,
    detection_metrics,
    detection_metrics_from_logits,
    format_metric,
    tpr_at_fpr,
)


def test_perfect_separation() -> None:
    scores = np.array([0.1, 0.2, 0.3, 0.8, 0.9])
    labels = np.array([0, 0, 0, 1, 1])
    m = detection_metrics(scores, labels)
    assert tuple(m) == METRIC_NAMES
    expected_loss = -np.mean(np.log([0.9, 0.8, 0.7, 0.8, 0.9]))
    assert m["loss"] == pytest.approx(expected_loss)
    for name in ("accuracy", "precision", "recall", "f1", "roc_auc", *FPR_TARGETS):
        assert m[name] == 1.0, name
    assert m["n"] == 5
    assert m["malware_share"] == pytest.approx(0.4)


def test_threshold_counts_match_hand_computation() -> None:
    # Predictions at 0.5 (>= is malware): TP = 2 (0.5, 0.9), FP = 1 (0.6), FN = 1 (0.4), TN = 2.
    scores = np.array([0.9, 0.5, 0.4, 0.6, 0.1, 0.2])
    labels = np.array([1, 1, 1, 0, 0, 0])
    m = detection_metrics(scores, labels)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    # 9 malware/benign pairs, ranked correctly except (0.4 < 0.6) and (0.5 < 0.6): AUC 7/9.
    assert m["roc_auc"] == pytest.approx(7 / 9)
    stricter = detection_metrics(scores, labels, threshold=0.95)
    assert stricter["recall"] == 0.0 and stricter["precision"] == 0.0  # zero_division=0


def test_unlabelled_rows_are_ignored() -> None:
    scores = np.array([0.1, 0.9, 0.99, 0.2, 0.7])
    labels = np.array([0, 1, -1, 1, -1])
    m = detection_metrics(scores, labels)
    assert m == detection_metrics(scores[[0, 1, 3]], labels[[0, 1, 3]])
    assert m["n"] == 3


def test_random_scores_give_chance_auc() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 20000)
    scores = rng.random(20000)
    m = detection_metrics(scores, labels)
    assert m["roc_auc"] == pytest.approx(0.5, abs=0.02)
    assert m["accuracy"] == pytest.approx(0.5, abs=0.02)
    assert m["tpr_at_1pct_fpr"] == pytest.approx(0.01, abs=0.01)
    assert m["loss"] == pytest.approx(1.0, abs=0.05)  # E[-log U] = 1
    for name in METRIC_NAMES:
        if name != "n":
            assert 0.0 <= m[name] <= 1.1, name


def test_tpr_at_fpr_on_crafted_example() -> None:
    # 200 benign scores 0..199, so each benign file above the threshold costs 0.5% FPR.
    benign = np.arange(200, dtype=float)
    malware = np.array([250, 240, 198.5, 197.5, 150, 100, 50, 20, 10, 5], dtype=float)
    scores = np.concatenate([benign, malware])
    labels = np.concatenate([np.zeros(200, int), np.ones(10, int)])
    # FPR 0 allows only the scores above 199 (250, 240): TPR 0.2.
    assert tpr_at_fpr(scores, labels, 0.001) == pytest.approx(0.2)
    assert tpr_at_fpr(scores, labels, 0.0) == pytest.approx(0.2)
    # FPR <= 1% lets benign 199 and 198 through, reaching malware 197.5: TPR 0.4.
    assert tpr_at_fpr(scores, labels, 0.01) == pytest.approx(0.4)
    # 1.5% adds benign 197 but no further malware until 150.
    assert tpr_at_fpr(scores, labels, 0.015) == pytest.approx(0.4)
    assert tpr_at_fpr(scores, labels, 1.0) == 1.0
    m = detection_metrics(scores / 1000, labels)
    assert m["tpr_at_1pct_fpr"] == pytest.approx(0.4)
    assert m["tpr_at_0.1pct_fpr"] == pytest.approx(0.2)


@pytest.mark.parametrize("label", [0, 1])
def test_single_class_gives_nan_ranking_metrics(label: int) -> None:
    scores = np.array([0.2, 0.7, 0.9])
    m = detection_metrics(scores, np.full(3, label))
    assert math.isnan(m["roc_auc"])
    assert math.isnan(m["tpr_at_1pct_fpr"]) and math.isnan(m["tpr_at_0.1pct_fpr"])
    assert m["accuracy"] == pytest.approx(2 / 3 if label == 1 else 1 / 3)
    assert m["malware_share"] == label and m["n"] == 3
    assert math.isfinite(m["loss"])


@pytest.mark.parametrize("labels", [np.array([], int), np.array([-1, -1])])
def test_empty_input_is_all_nan_except_n(labels: np.ndarray) -> None:
    m = detection_metrics(np.full(labels.shape, 0.5), labels)
    assert m["n"] == 0
    assert all(math.isnan(v) for k, v in m.items() if k != "n")
    assert tuple(m) == METRIC_NAMES


def test_loss_clips_confident_mistakes() -> None:
    m = detection_metrics(np.array([0.0, 1.0]), np.array([1, 0]))
    assert m["loss"] == pytest.approx(-math.log(1e-7), rel=1e-6)


def test_logits_agree_with_probabilities() -> None:
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 3, 500)
    labels = rng.integers(0, 2, 500)
    from_logits = detection_metrics_from_logits(logits, labels)
    from_probs = detection_metrics(1 / (1 + np.exp(-logits)), labels)
    assert from_logits.keys() == from_probs.keys()
    for name in METRIC_NAMES:
        assert from_logits[name] == pytest.approx(from_probs[name], rel=1e-9), name


def test_logits_keep_ranking_where_sigmoid_saturates() -> None:
    # sigmoid(40), sigmoid(45) and sigmoid(50) are all exactly 1.0 in float64.
    logits = np.array([40.0, 45.0, 50.0, -5.0])
    labels = np.array([0, 1, 1, 0])
    assert detection_metrics_from_logits(logits, labels)["roc_auc"] == 1.0
    assert detection_metrics(1 / (1 + np.exp(-logits)), labels)["roc_auc"] < 1.0
    extreme = detection_metrics_from_logits(np.array([-1000.0, 1000.0]), np.array([1, 0]))
    assert extreme["loss"] == pytest.approx(-math.log(1e-7), rel=1e-6)


def test_bad_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match="probabilities"):
        detection_metrics(np.array([0.5, 1.5]), np.array([0, 1]))
    with pytest.raises(ValueError, match="labels must be"):
        detection_metrics(np.array([0.5, 0.5]), np.array([0, 2]))
    with pytest.raises(ValueError, match="2 scores but 3 labels"):
        detection_metrics(np.array([0.5, 0.5]), np.array([0, 1, 1]))
    with pytest.raises(ValueError, match="NaN"):
        detection_metrics_from_logits(np.array([np.nan, 0.0]), np.array([0, 1]))


def test_format_metric() -> None:
    assert format_metric("roc_auc", 0.987654) == "0.9877"
    assert format_metric("loss", 1.0) == "1.0000"
    assert format_metric("n", 1200) == "1200"
    assert format_metric("roc_auc", math.nan) == "n/a"
    assert format_metric("accuracy", np.float32(0.5)) == "0.5000"
