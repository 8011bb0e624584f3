"""ONNX export of a detector together with its preprocessing.

The exported graph maps raw feature vectors straight to malware probabilities, so a deployment
(an endpoint agent, a scanning service) needs only onnxruntime and the feature extractor: no
Python, no FedMetaMal, and no chance of applying a different log/standardisation than training
did. Feature names and the model description travel in the ONNX metadata so a consumer can
check it feeds the columns in the right order; the feature schema and the decision threshold
travel there too, so ``fedmetamal scan`` can refuse files of another schema and decide without
the run directory.

Besides the probability the graph outputs the logit and its gradient with respect to the raw
input, written out as an explicit backward pass (:class:`ExplainingDetector`), so explanations
(gradient x input, integrated gradients) need only onnxruntime at scan time.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from fedmetamal.data.preprocess import Preprocessor
from fedmetamal.errors import DataError
from fedmetamal.models.checkpoint import network_header
from fedmetamal.models.networks import Network

INPUT_NAME = "features"
OUTPUT_NAME = "malware_probability"
LOGIT_NAME = "logit"
GRADIENT_NAME = "logit_gradient"
FORMAT = "fedmetamal-detector"
_CHUNK = 65536


class DetectorModule(nn.Module):
    """``sigmoid(mlp(preprocess(x)))``: raw features (N, d) float32 -> probabilities (N,)."""

    def __init__(self, network: Network, params: torch.Tensor, preprocessor: Preprocessor) -> None:
        super().__init__()
        if preprocessor.n_features != network.n_features:
            raise ValueError(
                f"preprocessor has {preprocessor.n_features} features, "
                f"network takes {network.n_features}"
            )
        t = preprocessor.tensors()
        self.register_buffer("log_mask", t["log_mask"] > 0.5)
        self.register_buffer("mean", t["mean"])
        self.register_buffer("std", t["std"])
        self.mlp = network.to_module(params)
        self.eval()  # dropout off: the detector is for inference only

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logged = torch.sign(x) * torch.log1p(torch.abs(x))
        z = (torch.where(self.log_mask, logged, x) - self.mean) / self.std
        return torch.sigmoid(self.mlp(z).squeeze(-1))


class ExplainingDetector(DetectorModule):
    """``(probability, logit, d logit / d x)`` for raw features x (N, d), backward pass explicit.

    torch.autograd cannot be exported to ONNX, so the chain rule through the MLP and the
    preprocessing is spelt out layer by layer; ``tests/models/test_export.py`` checks it
    against autograd. At x = 0 the log transform's derivative is its true value 1/std, where
    autograd (through ``sign``) reports 0; gradient x input is 0 there either way.
    """

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # type: ignore[override]
        magnitude = torch.abs(x)
        logged = torch.sign(x) * torch.log1p(magnitude)
        h = (torch.where(self.log_mask, logged, x) - self.mean) / self.std
        tape: list[tuple[nn.Module, tuple[torch.Tensor, ...]]] = []
        for layer in self.mlp:
            if isinstance(layer, nn.Dropout):
                continue
            if isinstance(layer, nn.LayerNorm):
                centred = h - h.mean(-1, keepdim=True)
                inv = torch.rsqrt((centred * centred).mean(-1, keepdim=True) + layer.eps)
                tape.append((layer, (centred * inv, inv)))
                h = centred * inv * layer.weight + layer.bias
                continue
            tape.append((layer, (h,)))
            h = layer(h)
        logit = h.squeeze(-1)
        grad = torch.ones_like(h)
        for layer, saved in reversed(tape):
            grad = _backward(layer, saved, grad)
        slope = torch.where(self.log_mask, 1.0 / (1.0 + magnitude), torch.ones_like(x))
        return torch.sigmoid(logit), logit, grad * slope / self.std


def _backward(
    layer: nn.Module, saved: tuple[torch.Tensor, ...], grad: torch.Tensor
) -> torch.Tensor:
    """The gradient with respect to ``layer``'s input, given the one w.r.t. its output."""
    if isinstance(layer, nn.Linear):
        return grad @ layer.weight
    if isinstance(layer, nn.LayerNorm):
        normed, inv = saved
        g = grad * layer.weight
        return inv * (g - g.mean(-1, keepdim=True) - normed * (g * normed).mean(-1, keepdim=True))
    (h,) = saved
    if isinstance(layer, nn.ReLU):
        return grad * (h > 0).to(grad.dtype)
    if isinstance(layer, nn.Tanh):
        t = torch.tanh(h)
        return grad * (1.0 - t * t)
    if isinstance(layer, nn.GELU):
        cdf = 0.5 * (1.0 + torch.erf(h * _INV_SQRT2))
        pdf = torch.exp(-0.5 * h * h) * _INV_SQRT_2PI
        return grad * (cdf + h * pdf)
    raise TypeError(f"no backward pass for {type(layer).__name__}")


_INV_SQRT2 = 0.7071067811865476
_INV_SQRT_2PI = 0.3989422804014327


def baseline_features(preprocessor: Preprocessor) -> np.ndarray:
    """The raw feature vector the preprocessing maps to all zeros (the training mean).

    Integrated gradients start from it: a feature at its average value gets no credit.
    """
    mean = preprocessor.mean.astype(np.float64)
    raw = np.where(preprocessor.log_mask, np.sign(mean) * np.expm1(np.abs(mean)), mean)
    return raw.astype(np.float32)


def export_onnx(
    path: str | os.PathLike[str],
    network: Network,
    params: torch.Tensor,
    preprocessor: Preprocessor,
    feature_names: list[str],
    metadata: dict[str, Any] | None = None,
    feature_schema: dict[str, Any] | None = None,
    threshold: dict[str, Any] | None = None,
) -> Path:
    """Write the detector as an ONNX model with a dynamic batch dimension.

    Input ``features`` (N, d) float32; outputs ``malware_probability`` (N,), ``logit`` (N,) and
    ``logit_gradient`` (N, d). The metadata props hold ``format``, ``feature_names`` (JSON
    list), ``model`` (JSON description of the network and preprocessing), ``user`` (JSON of
    ``metadata``), ``explain`` (output names, the preprocessing's ``log_mask``/``mean``/``std`` and
    the raw ``baseline`` they map to zero, for integrated gradients) and, when
    given, ``feature_schema`` (``{"name", "version", "columns"}``) and ``threshold`` (at least
    ``{"value"}``, plus how it was chosen).
    """
    if len(feature_names) != network.n_features:
        raise ValueError(
            f"{len(feature_names)} feature names given, network takes {network.n_features}"
        )
    if threshold is not None and not 0.0 <= float(threshold.get("value", -1.0)) <= 1.0:
        raise ValueError(f"threshold value must lie in [0, 1], got {threshold.get('value')}")
    module = ExplainingDetector(network, params, preprocessor)
    example = torch.zeros(2, network.n_features)
    proto = _to_onnx(module, example)

    model_info = {
        **network_header(network),
        "log_features": int(preprocessor.log_mask.sum()),
        "input": INPUT_NAME,
        "output": OUTPUT_NAME,
    }
    props = {
        "format": FORMAT,
        "feature_names": json.dumps(list(feature_names)),
        "model": json.dumps(model_info),
        "user": json.dumps(metadata or {}),
        "explain": json.dumps(
            {
                "logit": LOGIT_NAME,
                "gradient": GRADIENT_NAME,
                "baseline": baseline_features(preprocessor).tolist(),
                "log_mask": preprocessor.log_mask.astype(bool).tolist(),
                "mean": preprocessor.mean.astype(float).tolist(),
                "std": preprocessor.std.astype(float).tolist(),
            }
        ),
    }
    if feature_schema is not None:
        props["feature_schema"] = json.dumps(feature_schema)
    if threshold is not None:
        props["threshold"] = json.dumps(threshold)
    del proto.metadata_props[:]
    for key, value in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.doc_string = "FedMetaMal malware detector: raw features -> malware probability"
    onnx.checker.check_model(proto)

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(out))
    return out


def onnx_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The decoded metadata props of an exported detector (JSON values parsed)."""
    _require_file(path)
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as err:
        raise DataError(f"'{path}' is not a readable ONNX model ({err}).") from None
    props = {p.key: p.value for p in proto.metadata_props}
    if props.get("format") != FORMAT:
        raise DataError(f"'{path}' is not an ONNX detector exported by FedMetaMal.")
    return {k: (v if k == "format" else json.loads(v)) for k, v in props.items()}


def onnx_scores(path: str | os.PathLike[str], X: np.ndarray) -> np.ndarray:
    """Malware probabilities (N,) from an exported model, run by onnxruntime on the CPU."""
    import onnxruntime as ort

    _require_file(path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    width = session.get_inputs()[0].shape[1]
    X = np.asarray(X)
    if X.ndim != 2 or (isinstance(width, int) and X.shape[1] != width):
        raise DataError(f"the ONNX model expects rows of {width} features, got shape {X.shape}")
    parts = [
        session.run(
            [OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(X[i : i + _CHUNK], np.float32)}
        )[0]
        for i in range(0, X.shape[0], _CHUNK)
    ]
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


def torch_scores(
    network: Network, params: torch.Tensor, preprocessor: Preprocessor, X: np.ndarray
) -> np.ndarray:
    """Malware probabilities (N,) from the same computation as the ONNX graph, in PyTorch."""
    module = DetectorModule(network, params, preprocessor)
    X = np.asarray(X)
    with torch.no_grad():
        parts = [
            module(torch.as_tensor(np.asarray(X[i : i + _CHUNK], np.float32))).numpy()
            for i in range(0, X.shape[0], _CHUNK)
        ]
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


def _require_file(path: str | os.PathLike[str]) -> None:
    if not Path(path).is_file():
        raise DataError(f"ONNX model '{path}' does not exist or is not a file.", "Check the path.")


def _to_onnx(module: nn.Module, example: torch.Tensor) -> onnx.ModelProto:
    """Export with the torch.export-based exporter (the default since PyTorch 2.9)."""
    with _quiet_export():
        program = torch.onnx.export(
            module,
            (example,),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME, LOGIT_NAME, GRADIENT_NAME],
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            dynamo=True,
            optimize=True,
            verbose=False,
        )
    if program is None:  # pragma: no cover - only when the exporter API changes
        raise RuntimeError("torch.onnx.export returned no program")
    return program.model_proto


@contextmanager
def _quiet_export() -> Iterator[None]:
    """Silence the exporter's informational warnings and log lines (torchvision ops etc.)."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        logger.setLevel(level)
