"""Model checkpoints as safetensors files: weights, preprocessing and feature names together.

A checkpoint holds everything needed to score new samples: the network's named parameters, the
fitted preprocessing (``preprocess.*``) and, optionally, other tensors such as optimizer states
(``extra.*``). Architecture, feature names and user metadata are JSON in the safetensors header.
Safetensors never runs code on load, unlike pickle, so a checkpoint from an untrusted
participant is safe to open. Loading checks the file against its own description and refuses
anything inconsistent with a :class:`DataError` that says what is wrong.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError
from safetensors import safe_open
from safetensors.torch import save_file

from fedmetamal.config import ModelConfig
from fedmetamal.data.preprocess import Preprocessor
from fedmetamal.errors import DataError
from fedmetamal.models.networks import Network

FORMAT = "fedmetamal-model"
VERSION = 1
_HEADER_KEY = "fedmetamal"
_PREPROCESS = "preprocess."
_EXTRA = "extra."
_PREPROCESS_NAMES = ("log_mask", "mean", "std")


@dataclass
class Checkpoint:
    """A loaded checkpoint; ``params`` is the flat (P,) float32 vector of ``network``."""

    network: Network
    params: torch.Tensor
    preprocessor: Preprocessor
    feature_names: list[str]
    extra_tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)


def network_header(network: Network) -> dict[str, Any]:
    """The network's description plus the fields that rebuild it (shared with ONNX export)."""
    return {
        **network.describe(),
        "n_features": network.n_features,
        "hidden": list(network.hidden),
        "activation": network.activation,
        "norm": network.norm,
        "dropout": network.dropout,
    }


def save_checkpoint(
    path: str | os.PathLike[str],
    network: Network,
    params: torch.Tensor,
    preprocessor: Preprocessor,
    feature_names: list[str],
    extra_tensors: dict[str, torch.Tensor] | None = None,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint to ``path`` (atomically: a crash never leaves half a file).

    ``metadata`` must be JSON-serialisable (run id, round, metrics, config ...).
    """
    _check_consistent(network, params, preprocessor, feature_names)
    header = {
        "format": FORMAT,
        "version": VERSION,
        "network": network_header(network),
        "feature_names": list(feature_names),
        "user": metadata or {},
    }
    try:
        header_json = json.dumps(header)
    except TypeError as err:
        raise TypeError(f"checkpoint metadata must be JSON-serialisable: {err}") from None

    named = network.spec.unflatten(params.detach().float().cpu())
    tensors = {name: t.clone().contiguous() for name, t in named.items()}
    for name, t in preprocessor.tensors().items():
        tensors[_PREPROCESS + name] = t.float().contiguous()
    for name, t in (extra_tensors or {}).items():
        tensors[_EXTRA + name] = t.detach().cpu().clone().contiguous()

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        save_file(tensors, str(tmp), metadata={_HEADER_KEY: header_json})
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read and validate a checkpoint written by :func:`save_checkpoint`."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"Checkpoint '{p}' does not exist or is not a file.", "Check the path.")
    try:
        with safe_open(str(p), framework="pt") as f:
            raw_header = (f.metadata() or {}).get(_HEADER_KEY)
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not a dict)
    except Exception as err:
        raise DataError(
            f"'{p}' is not a readable safetensors file ({err}).",
            "Pass a checkpoint written by FedMetaMal (model.safetensors in a run directory).",
        ) from None

    header = _parse_header(p, raw_header)
    network = _network_from_header(p, header.get("network"))
    feature_names = header.get("feature_names")
    if not isinstance(feature_names, list) or not all(isinstance(n, str) for n in feature_names):
        raise DataError(f"Checkpoint '{p}' has no valid feature name list in its header.")
    if len(feature_names) != network.n_features:
        raise DataError(
            f"Checkpoint '{p}' names {len(feature_names)} features but its network "
            f"takes {network.n_features}."
        )
    metadata = header.get("user") or {}
    if not isinstance(metadata, dict):
        raise DataError(f"Checkpoint '{p}' has malformed user metadata (not a JSON object).")

    spec = network.spec
    model = {k: v for k, v in tensors.items() if not k.startswith((_PREPROCESS, _EXTRA))}
    prep = {k[len(_PREPROCESS) :]: v for k, v in tensors.items() if k.startswith(_PREPROCESS)}
    extra = {k[len(_EXTRA) :]: v for k, v in tensors.items() if k.startswith(_EXTRA)}

    expected = dict(zip(spec.names, spec.shapes, strict=True))
    problems = [f"missing '{n}'" for n in expected if n not in model]
    problems += [f"unexpected '{n}'" for n in model if n not in expected]
    problems += [
        f"'{n}' has shape {tuple(t.shape)}, expected {expected[n]}"
        for n, t in model.items()
        if n in expected and tuple(t.shape) != expected[n]
    ]
    problems += [f"missing '{_PREPROCESS}{n}'" for n in _PREPROCESS_NAMES if n not in prep]
    problems += [
        f"'{_PREPROCESS}{n}' has shape {tuple(t.shape)}, expected ({network.n_features},)"
        for n, t in prep.items()
        if tuple(t.shape) != (network.n_features,)
    ]
    if problems:
        raise DataError(
            f"Checkpoint '{p}' does not match the network it describes "
            f"({network.describe()['widths']}): " + "; ".join(problems) + "."
        )
    return Checkpoint(
        network=network,
        params=spec.flatten(model),
        preprocessor=Preprocessor.from_tensors(prep),
        feature_names=feature_names,
        extra_tensors=extra,
        metadata=metadata,
    )


def _check_consistent(
    network: Network, params: torch.Tensor, preprocessor: Preprocessor, feature_names: list[str]
) -> None:
    """Refuse to write a checkpoint that could not be loaded back."""
    if tuple(params.shape) != (network.num_params,):
        raise ValueError(
            f"params has shape {tuple(params.shape)}, expected ({network.num_params},) "
            "for this network"
        )
    if preprocessor.n_features != network.n_features:
        raise ValueError(
            f"preprocessor has {preprocessor.n_features} features, "
            f"network takes {network.n_features}"
        )
    if len(feature_names) != network.n_features:
        raise ValueError(
            f"{len(feature_names)} feature names given, network takes {network.n_features}"
        )


def _parse_header(p: Path, raw: str | None) -> dict[str, Any]:
    not_ours = DataError(
        f"'{p}' is a safetensors file but not a FedMetaMal model checkpoint "
        f"(its header has no '{FORMAT}' format marker).",
        "Pass a checkpoint written by FedMetaMal (model.safetensors in a run directory).",
    )
    if raw is None:
        raise not_ours
    try:
        header = json.loads(raw)
    except json.JSONDecodeError as err:
        raise DataError(f"Checkpoint '{p}' has a corrupt header ({err}).") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise not_ours
    version = header.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise DataError(
            f"Checkpoint '{p}' has format version {version!r}; "
            f"this FedMetaMal reads version {VERSION} and older.",
            "Upgrade FedMetaMal to load it.",
        )
    return header


def _network_from_header(p: Path, net: Any) -> Network:
    """Rebuild the Network, validating the architecture with the config schema."""
    try:
        if not isinstance(net, dict):
            raise TypeError("no network description")
        hidden = [int(w) for w in net["hidden"]]
        cfg = ModelConfig(
            kind="mlp" if hidden else "logreg",
            hidden=hidden,
            activation=net["activation"],
            norm=net["norm"],
            dropout=float(net["dropout"]),
        )
        n_features = int(net["n_features"])
        if n_features < 1:
            raise ValueError("n_features must be >= 1")
    except (KeyError, TypeError, ValueError, ValidationError) as err:
        raise DataError(f"Checkpoint '{p}' has an invalid network description: {err}") from None
    return Network.from_config(cfg, n_features)
