"""The Python API: ``fedmetamal.simulate(config)`` runs a whole simulated federation.

The CLI is a thin layer over these functions, so anything the command line does a script or a
notebook can do too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from fedmetamal.config import RunConfig, build_config, load_config
from fedmetamal.data.dataset import Dataset
from fedmetamal.data.federation import Federation
from fedmetamal.data.heterogeneity import measure_federation
from fedmetamal.data.preprocess import Preprocessor, preprocess_federation
from fedmetamal.data.semi import reveal_labels
from fedmetamal.sim.rundir import RunDirectory
from fedmetamal.sim.runtime import RoundRecord, Simulation

ConfigLike = RunConfig | dict[str, Any] | str | Path


@dataclass
class SimulationResult:
    """What a finished simulation returns (and, with outputs on, what its run directory holds)."""

    config: RunConfig
    history: list[RoundRecord]
    final_metrics: dict[str, float]
    params: torch.Tensor
    simulation: Simulation
    preprocessor: Preprocessor
    federation: list[dict[str, Any]]
    seconds: float
    run_dir: Path | None = None
    dataset: dict[str, Any] = field(default_factory=dict)
    heterogeneity: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "algorithm": self.config.algorithm.name,
            "dataset": self.dataset,
            "partition": self.config.partition.kind,
            "clients": len(self.federation),
            "rounds": len(self.history),
            "model": self.simulation.network.describe(),
            "seconds": round(self.seconds, 3),
            "final_metrics": self.final_metrics,
            "heterogeneity": self.heterogeneity.get("federation", {}),
            "run_dir": str(self.run_dir) if self.run_dir else None,
        }


def as_config(config: ConfigLike | None) -> RunConfig:
    if config is None:
        return build_config({})
    if isinstance(config, RunConfig):
        return config
    if isinstance(config, dict):
        return build_config(config)
    return load_config(config)


def load_data(cfg: RunConfig) -> Dataset:
    from fedmetamal.data.sources import load_dataset

    ds = load_dataset(cfg.dataset, cfg.seed)
    ds.check_trainable()
    return ds


def build_federation(cfg: RunConfig, dataset: Dataset | None = None) -> Federation:
    """Load (unless given) and partition the dataset, then apply the semi-supervised scenario
    (``cfg.semi``; scenario none leaves the partition as it is), as the config says."""
    from fedmetamal.data.partition import partition
    from fedmetamal.data.semi import apply_semi

    ds = dataset if dataset is not None else load_data(cfg)
    return apply_semi(partition(ds, cfg.partition, cfg.seed), cfg.semi, cfg.seed)


def _round_row(rec: RoundRecord) -> dict[str, Any]:
    row: dict[str, Any] = {
        "round": rec.round,
        "clients": len(rec.clients),
        "lr": rec.lr,
        "train_loss": rec.train_loss,
        "seconds": rec.seconds,
    }
    for k, v in (rec.metrics or {}).items():
        row[f"test_{k}"] = v
    if rec.epsilon is not None:
        row["epsilon"] = rec.epsilon
    if rec.excluded:  # updates that failed validation: ids and reasons
        row["excluded"] = {str(c): why for c, why in rec.excluded.items()}
    if rec.skipped:
        row["skipped"] = rec.skipped
    if rec.secagg:
        sa = rec.secagg
        for key in ("survivors", "bytes_up", "bytes_down", "seconds_client", "seconds_server"):
            if key in sa:
                row[f"secagg_{key}"] = sa[key]
        row["secagg_dropped"] = len(sa.get("dropped", []))
        row["secagg_excluded"] = len(sa.get("excluded", {}))
    return row


def simulate(
    config: ConfigLike | None = None,
    *,
    on_round: Callable[[RoundRecord], None] | None = None,
    on_stage: Callable[[str], None] | None = None,
    write_outputs: bool = True,
    dataset: Dataset | None = None,
    federation: Federation | None = None,
) -> SimulationResult:
    """Run one simulated federated training and return its results.

    ``config`` is a :class:`RunConfig`, a dict of settings, or a YAML path. ``on_round`` is
    called after every round (progress bars, dashboards); ``on_stage`` with a short description
    of each set-up stage. With ``write_outputs`` the run directory (metrics, checkpoint, ONNX)
    is written under ``config.output.dir``. ``federation``: train on this federation (as
    :func:`build_federation` returns it, before preprocessing) instead of building one.
    """
    cfg = as_config(config)
    stage = on_stage or (lambda _msg: None)
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    if federation is not None:
        fed, ds = federation, dataset
    else:
        stage("loading data")
        ds = dataset if dataset is not None else load_data(cfg)
        stage(f"partitioning {ds.n_samples} samples over {cfg.partition.clients} clients")
        fed = build_federation(cfg, ds)
    stage("measuring how non-IID the federation is")
    # true labels, hidden ones included: the skew is the partition's, not the label budget's
    heterogeneity = measure_federation(reveal_labels(fed)).to_dict()
    stage("fitting preprocessing from client summaries")
    fed, pre = preprocess_federation(fed, cfg.preprocess)
    sim = Simulation(cfg, fed)
    rundir = RunDirectory(cfg) if write_outputs else None
    if rundir:
        rundir.write_json("heterogeneity.json", heterogeneity)
    history: list[RoundRecord] = []

    def record(rec: RoundRecord) -> None:
        history.append(rec)
        if rundir:
            rundir.log_round(_round_row(rec), rec.client_metrics)
        if on_round:
            on_round(rec)

    try:
        stage("training")
        sim.run(record)
        final = next(r.metrics for r in reversed(history) if r.metrics is not None)
        result = SimulationResult(
            config=cfg,
            history=history,
            final_metrics=final,
            params=sim.state.params.detach().cpu(),
            simulation=sim,
            preprocessor=pre,
            federation=fed.summary(),
            seconds=time.perf_counter() - t0,
            dataset=ds.describe() if ds is not None else {"name": fed.test.name},
            heterogeneity=heterogeneity,
        )
        if rundir:
            stage("writing outputs")
            _write_models(rundir, result, fed)
            result.run_dir = rundir.finish(result.summary())
    except BaseException as err:
        if rundir:
            rundir.fail(err)
        raise
    return result


def _write_models(rundir: RunDirectory, result: SimulationResult, fed: Federation) -> None:
    from fedmetamal.models.checkpoint import save_checkpoint
    from fedmetamal.models.export import export_onnx

    cfg, sim = result.config, result.simulation
    if not (cfg.output.checkpoint or cfg.output.onnx):
        return
    schema = _feature_schema(fed)
    threshold = _validation_threshold(result, fed)
    meta = {
        "algorithm": cfg.algorithm.name,
        "rounds": len(result.history),
        "final_metrics": {k: v for k, v in result.final_metrics.items() if v == v},
        "dataset": result.dataset.get("name"),
    }
    dp_run = sim.privacy or sim.sample_dp
    if dp_run is not None:  # the accountant's history: epsilon can be recomputed/resumed
        meta["privacy"] = dp_run.metadata()
    if cfg.output.checkpoint:
        extra = {f"server.{k}": v for k, v in sim.state.server_state.items()}
        extra |= {f"client.{k}": v for k, v in sim.state.client_state.items()}
        save_checkpoint(
            rundir.file("model.safetensors"),
            sim.network,
            result.params,
            result.preprocessor,
            fed.feature_names,
            extra_tensors=extra,
            metadata={**meta, "feature_schema": schema, "threshold": threshold},
        )
    if cfg.output.onnx:
        export_onnx(
            rundir.file("model.onnx"),
            sim.network,
            result.params,
            result.preprocessor,
            fed.feature_names,
            metadata=meta,
            feature_schema=schema,
            threshold=threshold,
        )


def _feature_schema(fed: Federation) -> dict[str, Any] | None:
    """The feature schema (name, version, columns) the data was extracted with, if known.

    Extracted datasets carry the full stamp; shared tables only the schema's name, which the
    registry resolves. A name the registry lacks (``ember-v3`` from vectorised EMBER files) is
    kept with the model's own columns, so scanning can name it when it refuses. Synthetic data
    has none, and a model trained on it cannot scan files.
    """
    import re

    from fedmetamal.errors import DataError
    from fedmetamal.features.schema import get_schema

    info = fed.test.info
    if isinstance(info.get("feature_schema"), dict):
        return dict(info["feature_schema"])
    name = info.get("schema")
    if not isinstance(name, str):
        return None
    try:
        return get_schema(name).describe()
    except DataError:
        pass
    version = re.search(r"-v(\d+)$", name)
    return {
        "name": name,
        "version": int(version.group(1)) if version else None,
        "columns": list(fed.feature_names),
    }


def _validation_threshold(result: SimulationResult, fed: Federation) -> dict[str, Any]:
    """The decision threshold at :data:`~fedmetamal.detect.threshold.TARGET_FPR`, chosen on the
    clients' pooled local test splits: held out from training, and disjoint from the global
    test set whose metrics the run reports (see docs/detect.md)."""
    import numpy as np

    from fedmetamal.detect.threshold import choose_threshold
    from fedmetamal.sim.evaluate import predict

    parts = [c.test for c in fed.clients if c.test.n_samples]
    if not parts:
        return choose_threshold(np.zeros(0), np.zeros(0), source="none: no client test splits")
    network = result.simulation.network
    # client by client: pooling the features first would copy every local split at once
    scores = np.concatenate(
        [
            predict(network, result.params, torch.from_numpy(np.ascontiguousarray(p.X)))
            for p in parts
        ]
    )
    y = np.concatenate([p.y for p in parts])
    return choose_threshold(
        scores[y == 0], scores[y == 1], source="pooled client validation (local test splits)"
    )
