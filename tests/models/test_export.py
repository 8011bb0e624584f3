"""The ONNX detector must score exactly like PyTorch, preprocessing included."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from fedmetamal.data.preprocess import Preprocessor
from fedmetamal.errors import DataError
from fedmetamal.models.export import (
    GRADIENT_NAME,
    INPUT_NAME,
    LOGIT_NAME,
    OUTPUT_NAME,
    DetectorModule,
    ExplainingDetector,
    baseline_features,
    export_onnx,
    onnx_metadata,
    onnx_scores,
    torch_scores,
)
from fedmetamal.models.networks import Network

D = 12
SCHEMA = {"name": "test-schema", "version": 3, "columns": [f"feature_{i}" for i in range(D)]}
# Each export costs seconds (the exporter rebuilds its op registry every call), so two models
# cover the graph's ops: logistic regression, and an MLP with GELU, LayerNorm and dropout.
NETWORKS = {
    "logreg": Network(D, ()),
    "mlp-gelu-layernorm": Network(D, (16, 8), "gelu", "layer", dropout=0.1),
}


@dataclass
class Exported:
    path: Path
    network: Network
    params: torch.Tensor
    preprocessor: Preprocessor


def _preprocessor() -> Preprocessor:
    """Half the features logged, means away from zero, standard deviations far from one."""
    rng = np.random.default_rng(0)
    log_mask = np.arange(D) < D // 2
    mean = np.where(log_mask, rng.uniform(0, 8, D), rng.normal(0, 50, D)).astype(np.float32)
    std = np.where(log_mask, rng.uniform(0.5, 3, D), rng.uniform(10, 200, D)).astype(np.float32)
    return Preprocessor(log_mask, mean, std)


def _features(n: int, seed: int = 1) -> np.ndarray:
    """Heavy-tailed raw features with extreme values, negatives and zeros mixed in."""
    rng = np.random.default_rng(seed)
    pre = _preprocessor()
    sign = rng.choice([-1.0, 1.0], (n, D), p=[0.2, 0.8])
    heavy = sign * np.exp(rng.normal(pre.mean, pre.std, (n, D)))
    normal = rng.normal(pre.mean, pre.std, (n, D))
    X = np.where(pre.log_mask, heavy, normal)
    X[rng.random((n, D)) < 0.05] = 0.0
    X[rng.random((n, D)) < 0.01] = 1e6
    X[rng.random((n, D)) < 0.01] = -1e6
    if n >= 3:
        X[0], X[1], X[2] = 0.0, 1e6, -1e6
    return X.astype(np.float32)


@pytest.fixture(scope="module", params=list(NETWORKS))
def exported(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Exported:
    net = NETWORKS[request.param]
    params = torch.randn(net.num_params, generator=torch.Generator().manual_seed(2)) * 1.5
    pre = _preprocessor()
    path = tmp_path_factory.mktemp("onnx") / f"{request.param}.onnx"
    names = [f"feature_{i}" for i in range(D)]
    export_onnx(
        path,
        net,
        params,
        pre,
        names,
        metadata={"round": 7, "run": "test"},
        feature_schema=SCHEMA,
        threshold={"value": 0.75, "target_fpr": 0.01},
    )
    return Exported(path, net, params, pre)


def test_onnx_matches_torch(exported: Exported) -> None:
    X = _features(2000)
    expected = torch_scores(exported.network, exported.params, exported.preprocessor, X)
    got = onnx_scores(exported.path, X)
    assert got.shape == (2000,) and got.dtype == np.float32
    assert np.isfinite(got).all()
    assert expected.std() > 0.05  # scores spread out, so the comparison means something
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


def test_detector_matches_training_forward(exported: Exported) -> None:
    """The exported computation is the same as preprocessing + Network.forward in training."""
    X = _features(500)
    x = exported.preprocessor.apply_torch(torch.from_numpy(X))
    with torch.no_grad():
        logits = exported.network.forward(exported.params[None], x[None])[0]
    reference = torch.sigmoid(logits).numpy()
    scores = torch_scores(exported.network, exported.params, exported.preprocessor, X)
    np.testing.assert_allclose(scores, reference, atol=1e-5, rtol=0)


@pytest.mark.parametrize("rows", [1, 1000])
def test_dynamic_batch(exported: Exported, rows: int) -> None:
    X = _features(rows, seed=rows)
    got = onnx_scores(exported.path, X)
    assert got.shape == (rows,)
    expected = torch_scores(exported.network, exported.params, exported.preprocessor, X)
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


def test_graph_interface_and_metadata(exported: Exported) -> None:
    session = ort.InferenceSession(str(exported.path), providers=["CPUExecutionProvider"])
    (inp,), (out, logit, grad) = session.get_inputs(), session.get_outputs()
    assert inp.name == INPUT_NAME and inp.shape[1] == D and not isinstance(inp.shape[0], int)
    assert out.name == OUTPUT_NAME and len(out.shape) == 1
    assert logit.name == LOGIT_NAME and len(logit.shape) == 1
    assert grad.name == GRADIENT_NAME and grad.shape[1] == D
    meta = onnx_metadata(exported.path)
    assert meta["format"] == "fedmetamal-detector"
    assert meta["feature_names"] == [f"feature_{i}" for i in range(D)]
    assert meta["model"]["widths"] == list(exported.network.widths)
    assert meta["model"]["kind"] == exported.network.describe()["kind"]
    assert meta["model"]["log_features"] == D // 2
    assert meta["user"] == {"round": 7, "run": "test"}
    assert meta["feature_schema"] == SCHEMA
    assert meta["threshold"] == {"value": 0.75, "target_fpr": 0.01}
    pre = exported.preprocessor
    assert meta["explain"]["mean"] == pytest.approx(pre.mean.tolist())
    assert meta["explain"]["log_mask"] == pre.log_mask.tolist()


def test_onnx_gradient_matches_autograd(exported: Exported) -> None:
    """The explicit backward pass in the graph is the derivative autograd computes."""
    X = _features(400, seed=5)
    session = ort.InferenceSession(str(exported.path), providers=["CPUExecutionProvider"])
    _, logit, grad = session.run(None, {INPUT_NAME: X})
    module = DetectorModule(exported.network, exported.params, exported.preprocessor).double()
    x = torch.from_numpy(X.astype(np.float64)).requires_grad_(True)
    logged = torch.sign(x) * torch.log1p(torch.abs(x))
    z = (torch.where(module.log_mask, logged, x) - module.mean) / module.std
    ref_logit = module.mlp(z).squeeze(-1)
    (ref,) = torch.autograd.grad(ref_logit.sum(), x)
    np.testing.assert_allclose(logit, ref_logit.detach().numpy(), atol=1e-4, rtol=1e-5)
    # autograd says 0 at x = 0 for logged features (through sign); compare x * grad there
    ref_gi, got_gi = (ref * x).detach().numpy(), grad * X
    scale = np.abs(ref_gi).max(axis=1, keepdims=True)
    assert np.all(np.abs(got_gi - ref_gi) <= 1e-3 * scale + 1e-6)
    nonzero = X != 0
    ref_np = ref.numpy()
    rel = np.abs(grad[nonzero] - ref_np[nonzero]) / (np.abs(ref_np[nonzero]) + 1e-6)
    assert np.median(rel) < 1e-4


def test_explaining_module_probability_equals_detector() -> None:
    net = NETWORKS["mlp-gelu-layernorm"]
    params = net.init(torch.Generator().manual_seed(1))
    x = torch.from_numpy(_features(64))
    with torch.no_grad():
        p, logit, _ = ExplainingDetector(net, params, _preprocessor())(x)
        expected = DetectorModule(net, params, _preprocessor())(x)
    torch.testing.assert_close(p, expected)
    torch.testing.assert_close(torch.sigmoid(logit), expected)


def test_baseline_maps_to_the_mean() -> None:
    pre = _preprocessor()
    np.testing.assert_allclose(pre.apply(baseline_features(pre)[None])[0], 0.0, atol=1e-3)


def test_threshold_out_of_range_is_refused(tmp_path: Path) -> None:
    net = NETWORKS["logreg"]
    params = torch.zeros(net.num_params)
    names = [f"feature_{i}" for i in range(D)]
    with pytest.raises(ValueError, match="threshold value"):
        export_onnx(
            tmp_path / "m.onnx", net, params, _preprocessor(), names, threshold={"value": 2}
        )


def test_wrong_width_is_refused(exported: Exported) -> None:
    with pytest.raises(DataError, match=f"expects rows of {D} features"):
        onnx_scores(exported.path, np.zeros((3, D + 1), np.float32))


def test_detector_module_is_inference_only() -> None:
    net = NETWORKS["mlp-gelu-layernorm"]
    module = DetectorModule(net, net.init(torch.Generator().manual_seed(0)), _preprocessor())
    assert not module.training
    x = torch.from_numpy(_features(50))
    with torch.no_grad():
        assert torch.equal(module(x), module(x))  # dropout is off
    with pytest.raises(ValueError, match="preprocessor has 3 features"):
        DetectorModule(net, torch.zeros(net.num_params), Preprocessor.identity(3))


def test_foreign_or_missing_onnx_is_refused(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    path = tmp_path / "other.onnx"
    onnx.save(helper.make_model(graph), str(path))
    with pytest.raises(DataError, match="not an ONNX detector"):
        onnx_metadata(path)
    path.write_bytes(b"garbage")
    with pytest.raises(DataError, match="not a readable ONNX model"):
        onnx_metadata(path)
    with pytest.raises(DataError, match="does not exist"):
        onnx_scores(tmp_path / "missing.onnx", np.zeros((1, D), np.float32))
