"""A network run's model state: built at its start, saved after every round, restored after a
restart of the server.

Every completed round writes a regular FedMetaMal checkpoint (``models/checkpoint.py``: the
parameters, the preprocessing, the column names, and the algorithm's server state as extra
tensors), so every round is also a model version that ``scan`` and ``ExportModel`` read. Every
random choice of a round derives from the run's seed and the round number, so the round
number is all the random state there is to restore.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fedmetamal.config import RunConfig
from fedmetamal.data.preprocess import FeatureSums, Preprocessor
from fedmetamal.errors import FedMetaMalError
from fedmetamal.fl.base import Algorithm, State
from fedmetamal.models.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from fedmetamal.models.networks import Network
from fedmetamal.service.network_runs import build_network, initial_params

SUM_KEYS = ("sum", "sumsq", "log_sum", "log_sumsq", "max_abs")
#: The signed-log range of each feature, for the heterogeneity histograms' shared bins.
RANGE_KEYS = ("log_min", "log_max")


def feature_sums_blob(arrays: dict[str, np.ndarray]) -> bytes:
    """A participant's feature sums as safetensors bytes (stored with the participant)."""
    from safetensors.numpy import save

    keys = SUM_KEYS + RANGE_KEYS
    return save({k: np.ascontiguousarray(arrays[k], dtype=np.float64) for k in keys})


def feature_sums_from_blob(blob: bytes, n: int) -> FeatureSums:
    from safetensors.numpy import load

    arrays = load(blob)
    return FeatureSums(n=n, **{k: arrays[k] for k in SUM_KEYS})


def feature_range_from_blob(blob: bytes) -> tuple[np.ndarray, np.ndarray]:
    from safetensors.numpy import load

    arrays = load(blob)
    return arrays["log_min"], arrays["log_max"]


@dataclass
class RunState:
    network: Network
    params: torch.Tensor
    server_state: State
    preprocessor: Preprocessor
    feature_names: list[str]
    feature_schema: str | None
    round: int = 0


def fresh_state(
    cfg: RunConfig,
    algorithm: Algorithm,
    sums: list[FeatureSums],
    feature_names: list[str],
    feature_schema: str | None,
) -> RunState:
    """Round 0: preprocessing fitted from the participants' sums (in slot order, as the
    simulation adds its clients'), the seeded initial model, the algorithm's server state."""
    pre = Preprocessor.fit(sums, cfg.preprocess)
    network = build_network(cfg, len(feature_names))
    params = initial_params(cfg, network)
    return RunState(
        network, params, algorithm.init_server_state(params), pre, feature_names, feature_schema
    )


def save_round(
    path: Path,
    state: RunState,
    run_id: str,
    metadata: dict[str, Any],
    extra_tensors: dict[str, torch.Tensor] | None = None,
) -> tuple[str, int]:
    """Write the state after a round; returns the file's SHA-256 and size. ``extra_tensors``
    (client state, evaluation histograms) are stored beside the server state."""
    extra = {f"server.{k}": v for k, v in state.server_state.items()}
    extra |= extra_tensors or {}
    meta = {
        "run_id": run_id,
        "round": state.round,
        "feature_schema": {"name": state.feature_schema} if state.feature_schema else None,
        **metadata,
    }
    save_checkpoint(
        path,
        state.network,
        state.params,
        state.preprocessor,
        state.feature_names,
        extra_tensors=extra,
        metadata=meta,
    )
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest(), path.stat().st_size


def load_round_checkpoint(path: Path, expected_round: int) -> Checkpoint:
    """A run's checkpoint of ``expected_round``; refuses one of another round (a data dir and
    a database that do not belong together)."""
    ckpt = load_checkpoint(path)
    meta = ckpt.metadata
    if int(meta.get("round", -1)) != expected_round:
        raise FedMetaMalError(
            f"Checkpoint '{path}' holds round {meta.get('round')}, but the database says round "
            f"{expected_round} was the last completed.",
            "Restore the server's data directory and database from the same backup.",
        )
    return ckpt


def restore_state(path: Path, expected_round: int) -> RunState:
    """The state a network run's checkpoint holds."""
    ckpt = load_round_checkpoint(path, expected_round)
    meta = ckpt.metadata
    server_state = {
        k.removeprefix("server."): v.float() if v.is_floating_point() else v
        for k, v in ckpt.extra_tensors.items()
        if k.startswith("server.")
    }
    schema = meta.get("feature_schema")
    return RunState(
        ckpt.network,
        ckpt.params,
        server_state,
        ckpt.preprocessor,
        ckpt.feature_names,
        schema.get("name") if isinstance(schema, dict) else None,
        expected_round,
    )
