"""What a detector file says about itself: feature schema, input columns, threshold, preprocessing.

Models exported before scanning existed carry neither a schema nor a threshold. They still
load: the schema is recognised from the feature names when they are exactly a registered
schema's columns (a notice says so), and the threshold falls back to
:data:`~fedmetamal.detect.threshold.DEFAULT_THRESHOLD` with a notice; anything else is refused
with a message saying what to do.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fedmetamal.detect.standardizer import Standardizer
from fedmetamal.detect.threshold import DEFAULT_THRESHOLD
from fedmetamal.errors import DataError
from fedmetamal.features.dataset_file import SchemaMismatchError
from fedmetamal.features.schema import FeatureSchema, get_schema, schema_names

FORMAT = "fedmetamal-detector"
_REEXPORT = "Re-export the model with this version of fedmetamal (fedmetamal simulate)."


@dataclass(frozen=True)
class ModelInfo:
    """The decoded metadata of a detector, checked against the schema registry."""

    feature_names: list[str]
    schema: FeatureSchema
    #: Position in the schema's row of each model input, so a schema row feeds the model.
    columns: np.ndarray
    threshold: float
    threshold_info: dict[str, Any]
    #: The model's preprocessing, for integrated gradients; None for models without it.
    standardizer: Standardizer | None
    description: dict[str, Any] = field(default_factory=dict)
    notices: tuple[str, ...] = ()


def parse_model_info(path: Path, props: dict[str, str]) -> ModelInfo:
    """Decode and check the metadata props of the ONNX file at ``path``."""
    if props.get("format") != FORMAT:
        raise DataError(
            f"'{path}' is an ONNX model but not a detector exported by FedMetaMal.",
            "Pass the model.onnx written by fedmetamal simulate.",
        )
    try:
        decoded = {k: json.loads(v) for k, v in props.items() if k != "format"}
    except ValueError as err:
        raise DataError(f"'{path}' has damaged metadata ({err}).", _REEXPORT) from None
    names = decoded.get("feature_names")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise DataError(f"'{path}' lists no feature names.", _REEXPORT)
    notices: list[str] = []
    schema = _schema_of(path, decoded.get("feature_schema"), names, notices)
    index = {c: i for i, c in enumerate(schema.columns)}
    unknown = [n for n in names if n not in index]
    if unknown:
        raise SchemaMismatchError(
            f"'{path}' takes features {', '.join(unknown[:5])} that schema "
            f"'{schema.name}' v{schema.version} does not have.",
            _REEXPORT,
        )
    threshold_info = decoded.get("threshold")
    if isinstance(threshold_info, dict) and isinstance(threshold_info.get("value"), int | float):
        threshold = float(threshold_info["value"])
    else:
        threshold, threshold_info = DEFAULT_THRESHOLD, {"value": DEFAULT_THRESHOLD}
        threshold_info["method"] = "default: the model stores no threshold"
        notices.append(
            f"'{path}' stores no decision threshold (exported before thresholds were stored); "
            f"using {DEFAULT_THRESHOLD}. Pass --threshold or re-export the model."
        )
    standardizer = _standardizer(decoded.get("explain"), len(names))
    return ModelInfo(
        feature_names=names,
        schema=schema,
        columns=np.array([index[n] for n in names], dtype=np.int64),
        threshold=threshold,
        threshold_info=threshold_info,
        standardizer=standardizer,
        description=decoded.get("model") or {},
        notices=tuple(notices),
    )


def _standardizer(explain: Any, width: int) -> Standardizer | None:
    """The preprocessing stored for explanations, if complete and of the right width."""
    if not isinstance(explain, dict):
        return None
    parts = [explain.get(k) for k in ("log_mask", "mean", "std")]
    if not all(isinstance(p, list) and len(p) == width for p in parts):
        return None
    mask, mean, std = (np.asarray(p, dtype=np.float64) for p in parts)
    if not np.all(std > 0):
        return None
    return Standardizer(mask > 0.5, mean, std)


def _schema_of(path: Path, stamp: Any, names: list[str], notices: list[str]) -> FeatureSchema:
    """The registered schema a model was trained with; a clear refusal when there is none."""
    if isinstance(stamp, dict) and isinstance(stamp.get("name"), str):
        if stamp["name"] not in schema_names():
            raise SchemaMismatchError(
                f"'{path}' was trained on feature schema '{stamp['name']}' "
                f"v{stamp.get('version')}, which this fedmetamal cannot extract "
                f"(it knows {', '.join(schema_names())}).",
                "Use a model trained on one of those schemas.",
            )
        schema = get_schema(stamp["name"])
        if stamp.get("version") != schema.version:
            raise SchemaMismatchError(
                f"'{path}' was trained on schema '{stamp['name']}' v{stamp.get('version')}, "
                f"but this fedmetamal extracts '{schema.name}' v{schema.version}.",
                "Use a fedmetamal version that matches the model, or retrain it.",
            )
        if list(stamp.get("columns", [])) != list(schema.columns):
            raise SchemaMismatchError(
                f"'{path}' says schema '{schema.name}' v{schema.version} but its column list "
                "differs from the registered one.",
                _REEXPORT,
            )
        return schema
    for name in schema_names():
        candidate = get_schema(name)
        if list(candidate.columns) == names:
            notices.append(
                f"'{path}' stores no feature schema; its {len(names)} feature names are exactly "
                f"schema '{candidate.name}' v{candidate.version}, so that is used."
            )
            return candidate
    raise SchemaMismatchError(
        f"'{path}' stores no feature schema and its {len(names)} features "
        f"({', '.join(names[:3])}, ...) match no known schema ({', '.join(schema_names())}): "
        "it cannot score files.",
        "Train on a dataset made by fedmetamal extract or a shared PE dataset, then export.",
    )
