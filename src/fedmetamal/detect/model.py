"""A detector loaded for scanning: an onnxruntime session plus its checked metadata.

Everything a bad ``--model`` can be (missing, a directory, not ONNX, an ONNX file from
elsewhere, a schema this version cannot extract) ends in one :class:`DataError` that names the
file, raised before any input file is read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fedmetamal.detect.model_info import ModelInfo, parse_model_info
from fedmetamal.errors import DataError
from fedmetamal.features.dataset_file import SchemaMismatchError
from fedmetamal.features.schema import get_schema

INPUT_NAME = "features"
PROBABILITY = "malware_probability"
LOGIT = "logit"
GRADIENT = "logit_gradient"


@dataclass(frozen=True)
class Scores:
    """Model outputs for N rows: probability and logit (N,), and d logit / d input (N, d)."""

    probability: np.ndarray
    logit: np.ndarray
    gradient: np.ndarray | None


class Detector:
    """Runs an exported detector on schema rows; one session, reused for every batch."""

    def __init__(self, path: Path, session: object, info: ModelInfo) -> None:
        self.path = path
        self.session = session
        self.info = info
        outputs = {o.name for o in session.get_outputs()}  # type: ignore[attr-defined]
        #: Models exported before explanations existed have only the probability output.
        self.explains = LOGIT in outputs and GRADIENT in outputs

    @property
    def feature_names(self) -> list[str]:
        return self.info.feature_names

    def model_inputs(self, rows: np.ndarray) -> np.ndarray:
        """Schema rows (N, schema width) -> the model's input columns (N, d) as float32."""
        return np.ascontiguousarray(rows[:, self.info.columns], dtype=np.float32)

    def run(self, X: np.ndarray, explain: bool = True) -> Scores:
        """Score model inputs ``X`` (N, d); the gradient too when asked for and available."""
        if X.shape[0] == 0:
            empty = np.zeros(0, np.float32)
            return Scores(empty, empty, np.zeros((0, X.shape[1]), np.float32))
        if explain and self.explains:
            p, logit, grad = self.session.run(  # type: ignore[attr-defined]
                [PROBABILITY, LOGIT, GRADIENT], {INPUT_NAME: X}
            )
            return Scores(p, logit, grad)
        (p,) = self.session.run([PROBABILITY], {INPUT_NAME: X})  # type: ignore[attr-defined]
        with np.errstate(divide="ignore"):
            logit = np.log(p) - np.log1p(-p)
        return Scores(p, logit.astype(np.float32), None)


def load_detector(
    path: str | os.PathLike[str], expect_schema: str | None = None, threads: int = 1
) -> Detector:
    """Open the detector at ``path``; with ``expect_schema``, refuse a model of another schema."""
    import onnxruntime as ort

    model = Path(path)
    if not model.is_file():
        raise DataError(
            f"Model '{model}' does not exist or is not a file.",
            "Pass the model.onnx of a run directory with --model.",
        )
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(
            str(model), sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as err:  # onnxruntime raises its own exception types for bad files
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(
            f"Model '{model}' is not a loadable ONNX file ({first[:200]}).",
            "Pass the model.onnx written by fedmetamal simulate.",
        ) from None
    props = dict(session.get_modelmeta().custom_metadata_map)
    info = parse_model_info(model, props)
    if expect_schema is not None:
        wanted = get_schema(expect_schema)
        if wanted.name != info.schema.name:
            raise SchemaMismatchError(
                f"Model '{model}' was trained on feature schema '{info.schema.name}' "
                f"v{info.schema.version}, not '{wanted.name}' v{wanted.version} as --schema says.",
                "Use a model trained on that schema, or drop --schema.",
            )
    inputs = session.get_inputs()
    width = inputs[0].shape[1] if inputs and len(inputs[0].shape) == 2 else None
    if not inputs or inputs[0].name != INPUT_NAME or width != len(info.feature_names):
        raise DataError(
            f"Model '{model}' does not take the {len(info.feature_names)} features its "
            "metadata lists.",
            "Re-export the model with this version of fedmetamal.",
        )
    return Detector(model, session, info)
