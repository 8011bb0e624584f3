"""A stored model version as files: its checkpoint, its tensors and its exports.

Both operator transports (gRPC and the dashboard's Connect port) serve DownloadModel and
ExportModel from here, so a model exports the same bytes whichever way it is asked for.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fedmetamal.errors import ConfigError, FedMetaMalError
from fedmetamal.service.records import ModelRecord
from fedmetamal.service.store import Store

EXPORT_FORMATS = ("onnx", "safetensors")


@dataclass(frozen=True)
class ExportedFile:
    """One export: its bytes, the file name to offer and its media type."""

    data: bytes
    name: str
    media_type: str


def model_path(store: Store, data_dir: Path, model_id: str) -> tuple[ModelRecord, Path]:
    """The version's record and its checkpoint file (NotFound for an unknown id)."""
    rec = store.get_model(model_id)
    return rec, data_dir / rec.path


def load_model(store: Store, data_dir: Path, model_id: str) -> Any:
    """The version's checkpoint (network, parameters, preprocessing, metadata)."""
    from fedmetamal.models.checkpoint import load_checkpoint

    return load_checkpoint(model_path(store, data_dir, model_id)[1])


def model_tensors(store: Store, data_dir: Path, model_id: str) -> dict[str, np.ndarray]:
    """The tensors DownloadModel streams: the flat parameters and the preprocessing's."""
    ckpt = load_model(store, data_dir, model_id)
    tensors = {"params": ckpt.params.numpy()}
    tensors |= {f"pre.{k}": v.numpy() for k, v in ckpt.preprocessor.tensors().items()}
    return tensors


def export_model(store: Store, data_dir: Path, model_id: str, fmt: str) -> ExportedFile:
    """The version as safetensors (its checkpoint file) or ONNX with preprocessing; the ONNX
    file is built once and kept beside the checkpoint, since model versions never change."""
    if fmt not in EXPORT_FORMATS:
        raise ConfigError(f"Unknown export format '{fmt[:20]}'.", "Use onnx or safetensors.")
    rec, path = model_path(store, data_dir, model_id)
    if fmt == "safetensors":
        return ExportedFile(
            path.read_bytes(), f"{model_id}.safetensors", "application/octet-stream"
        )
    cached = path.with_suffix(".onnx")
    if not cached.is_file():
        data = _build_onnx(path)
        tmp_cached = cached.with_name(f".{cached.name}.tmp")
        tmp_cached.write_bytes(data)
        tmp_cached.replace(cached)
    return ExportedFile(cached.read_bytes(), f"{rec.model_id}.onnx", "application/onnx")


def _build_onnx(checkpoint: Path) -> bytes:
    from fedmetamal.models.checkpoint import load_checkpoint
    from fedmetamal.models.export import export_onnx

    ckpt = load_checkpoint(checkpoint)
    meta = dict(ckpt.metadata)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "model.onnx"
        export_onnx(
            out,
            ckpt.network,
            ckpt.params,
            ckpt.preprocessor,
            ckpt.feature_names,
            metadata={k: v for k, v in meta.items() if k not in ("threshold", "feature_schema")},
            feature_schema=_full_schema(meta.get("feature_schema"), ckpt.feature_names),
            threshold=meta.get("threshold"),
        )
        return out.read_bytes()


def _full_schema(schema: Any, names: list[str]) -> dict[str, Any] | None:
    """The feature schema stamp export_onnx stores: the registry's, else name + columns."""
    if not isinstance(schema, dict) or not schema.get("name"):
        return None
    from fedmetamal.features.schema import get_schema

    try:
        return get_schema(str(schema["name"])).describe()
    except FedMetaMalError:
        return {"name": schema["name"], "version": None, "columns": list(names)}
