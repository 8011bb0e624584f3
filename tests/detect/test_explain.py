"""Explanations computed by onnxruntime alone agree with PyTorch autograd on the same model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fedmetamal.cli import run as run_cli
from fedmetamal.detect import load_detector
from fedmetamal.detect.explain import grad_input, integrated_gradients
from fedmetamal.features.extract_file import extract_file
from fedmetamal.features.outcome import Row
from fedmetamal.models.checkpoint import load_checkpoint
from fedmetamal.models.export import DetectorModule

from .conftest import Trained


def _inputs(trained: Trained) -> tuple[np.ndarray, list[str]]:
    detector = load_detector(trained.model)
    rows = []
    for path in trained.pe_files:
        outcome = extract_file(path, detector.info.schema).outcome
        assert isinstance(outcome, Row)
        rows.append(outcome.values)
    return detector.model_inputs(np.array(rows, dtype=np.float64)), detector.feature_names


def _autograd_grad_input(trained: Trained, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(logit, x * d logit / dx) by torch autograd through the checkpoint's model."""
    ckpt = load_checkpoint(trained.checkpoint)
    module = DetectorModule(ckpt.network, ckpt.params, ckpt.preprocessor).double()
    x = torch.from_numpy(X.astype(np.float64)).requires_grad_(True)
    logged = torch.sign(x) * torch.log1p(torch.abs(x))
    z = (torch.where(module.log_mask, logged, x) - module.mean) / module.std
    logit = module.mlp(z).squeeze(-1)
    (grad,) = torch.autograd.grad(logit.sum(), x)
    return logit.detach().numpy(), (grad * x).detach().numpy()


def test_gradient_x_input_matches_autograd(trained: Trained) -> None:
    X, _ = _inputs(trained)
    detector = load_detector(trained.model)
    scores = detector.run(X)
    assert scores.gradient is not None and scores.gradient.shape == X.shape
    logit, expected = _autograd_grad_input(trained, X)
    got = grad_input(X, scores.gradient)
    assert np.abs(expected).max() > 1e-3  # the model is not flat, so the check means something
    np.testing.assert_allclose(scores.logit, logit, atol=1e-4)
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4 * np.abs(expected).max())


def test_integrated_gradients_add_up_to_the_logit_change(trained: Trained) -> None:
    X, _ = _inputs(trained)
    detector = load_detector(trained.model)
    standardizer = detector.info.standardizer
    assert standardizer is not None
    attributions = integrated_gradients(detector, X, standardizer, steps=64)
    baseline = standardizer.from_z(np.zeros((1, X.shape[1]))).astype(np.float32)
    change = detector.run(X).logit - detector.run(baseline).logit
    assert np.abs(change).max() > 0.05  # files differ from the mean, so the check means something
    error = np.abs(attributions.sum(axis=1) - change)
    assert np.all(error <= 0.005 + 0.01 * np.abs(change)), (error, change)
    # a feature at its training mean (a header field constant in training) gets no credit
    constant = np.isclose(standardizer.to_z(X), 0.0, atol=1e-12)
    assert constant.any() and np.all(np.abs(attributions[constant]) < 1e-9)


@pytest.mark.parametrize("method", ["grad-input", "ig"])
def test_scan_reports_the_largest_contributions(
    trained: Trained,
    method: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    X, names = _inputs(trained)
    args = ["scan", *map(str, trained.pe_files), "-m", str(trained.model), "-f", "jsonl"]
    capsys.readouterr()
    run_cli([*args, "--explain", method, "--top", "3"])
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    if method == "grad-input":
        expected = _autograd_grad_input(trained, X)[1]
    else:
        detector = load_detector(trained.model)
        assert detector.info.standardizer is not None
        expected = integrated_gradients(detector, X, detector.info.standardizer)
    for i, record in enumerate(records):
        top = record["top_features"]
        assert len(top) == 3
        magnitudes = [abs(t["contribution"]) for t in top]
        assert magnitudes == sorted(magnitudes, reverse=True)
        for t in top:
            j = names.index(t["feature"])
            assert t["value"] == pytest.approx(float(X[i, j]))
            scale = np.abs(expected[i]).max()
            assert t["contribution"] == pytest.approx(expected[i, j], rel=1e-3, abs=1e-4 * scale)
        # nothing left out is larger than the smallest reported one
        assert np.sort(np.abs(expected[i]))[-3] <= magnitudes[-1] * (1 + 1e-3) + 1e-4 * scale
