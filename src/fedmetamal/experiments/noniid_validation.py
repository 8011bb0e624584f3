"""Does a heterogeneity measure predict how much non-IID data hurts FedAvg? Train and see.

:func:`run_validation` measures and trains FedAvg on many federations of one dataset (the
:mod:`noniid_study_plan` presets), all with the same training budget as an IID baseline trained
with several seeds, and relates each federation-level measure to the drop in test ROC AUC and
accuracy (rank correlations, :mod:`noniid_correlations`). Every finished federation is appended
to ``results.jsonl`` at once, so an interrupted study resumes where it stopped.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from fedmetamal.config import RunConfig, build_config
from fedmetamal.data.dataset import Dataset
from fedmetamal.errors import PartitionError, TrainingDivergedError
from fedmetamal.experiments.naming import stable_hash
from fedmetamal.experiments.noniid_correlations import write_study_outputs
from fedmetamal.experiments.noniid_study_plan import (
    StudyEntry,
    federation_id,
    partition_label,
    study_entries,
)

#: Partition fields every federation takes from the base config; kind-specific ones come from
#: the study entry (or their defaults), so the base config's alpha cannot leak into other kinds.
COMMON_PARTITION_FIELDS = ("clients", "min_client_size", "test_fraction", "client_test_fraction")
RESULTS_FILE = "results.jsonl"


@dataclass
class StudyEvent:
    """Progress of a study: ``status`` is ``start`` (before a federation), ``trained``,
    ``cached`` (found in results.jsonl), ``skipped`` (partition impossible) or ``failed``."""

    status: str
    id: str
    description: str
    role: str
    done: int
    total: int
    roc_auc: float | None = None
    reason: str | None = None


@dataclass
class ValidationResult:
    out_dir: Path
    baseline: dict[str, Any]
    federations: pd.DataFrame
    correlations: pd.DataFrame
    summary: dict[str, Any]
    skipped: list[dict[str, Any]]
    files: list[Path]
    trained: int = 0  # trainings run by this call
    reused: int = 0  # records found in results.jsonl (resumed)
    records: list[dict[str, Any]] = field(default_factory=list)


def entry_config(base: RunConfig, entry: StudyEntry) -> RunConfig:
    """The run config of one federation: the base's data, model and training budget, FedAvg,
    the entry's partition and seed, and evaluation on the global test set after the last round
    only (the study reads nothing else, and per-round evaluation would dominate the time)."""
    data = base.model_dump(mode="json", exclude_unset=False)
    common = {k: data["partition"][k] for k in COMMON_PARTITION_FIELDS}
    data["partition"] = {**common, **entry.partition}
    data["seed"] = entry.seed
    server_lr = data["algorithm"]["server_lr"] if data["algorithm"]["name"] == "fedavg" else None
    data["algorithm"] = {"name": "fedavg", "server_lr": server_lr}
    data["evaluation"] = {"every": data["training"]["rounds"], "per_client": False}
    data["output"] |= {"onnx": False, "checkpoint": False}
    return build_config(data, origin="study federation")


def training_hash(cfg: RunConfig) -> str:
    """Hash of everything except partition, seed, runtime and outputs: results with equal hashes
    differ only by their federation. Settings at their defaults are left out, so a version that
    adds settings keeps earlier results valid."""
    data = cfg.model_dump(mode="json", exclude_defaults=True)
    return stable_hash({k: v for k, v in data.items() if k not in _NOT_TRAINING}, 10)


_NOT_TRAINING = ("partition", "seed", "runtime", "output")


def evaluate_entry(cfg: RunConfig, dataset: Dataset, role: str) -> dict[str, Any]:
    """Measure and train one federation; a record for results.jsonl (never raises for an
    impossible partition or a diverged training: those are recorded)."""
    from fedmetamal.api import build_federation, simulate
    from fedmetamal.data.heterogeneity import measure_federation

    rec: dict[str, Any] = {
        "id": federation_id(cfg.partition, cfg.seed, training_hash(cfg)),
        "role": role,
        "kind": cfg.partition.kind,
        "description": partition_label(cfg.partition),
        "partition": cfg.partition.model_dump(mode="json"),
        "seed": cfg.seed,
    }
    t0 = time.perf_counter()
    try:
        report = measure_federation(build_federation(cfg, dataset))
        result = simulate(cfg, write_outputs=False, dataset=dataset)
    except (PartitionError, TrainingDivergedError) as err:
        status = "skipped" if isinstance(err, PartitionError) else "failed"
        return rec | {"status": status, "reason": str(err)}
    rec |= {
        "status": "finished",
        "measures": {k: _plain(v) for k, v in report.federation.items()},
        "metrics": {k: _plain(v) for k, v in result.final_metrics.items()},
        "seconds": round(time.perf_counter() - t0, 3),
    }
    return rec


def _refresh_measures(
    records: list[dict[str, Any]], configs: list[tuple[str, RunConfig]], dataset: Dataset
) -> None:
    """Measure every federation again: measuring takes a second where training takes many, so
    a resumed study always reports the measures of the current code on its cached trainings."""
    from fedmetamal.api import build_federation
    from fedmetamal.data.heterogeneity import measure_federation

    for rec, (_, cfg) in zip(records, configs, strict=True):
        if rec.get("status") == "finished":
            report = measure_federation(build_federation(cfg, dataset))
            rec["measures"] = {k: _plain(v) for k, v in report.federation.items()}


def _plain(v: Any) -> float | None:
    f = float(v)
    return None if f != f else f


def read_results(path: Path) -> dict[str, dict[str, Any]]:
    """Finished records by id; a torn last line (a crash mid-write) is ignored."""
    out: dict[str, dict[str, Any]] = {}
    if not path.is_file():
        return out
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        out[rec["id"]] = rec
    return out


def _append(path: Path, rec: dict[str, Any]) -> None:
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(rec, sort_keys=True) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def run_validation(
    base_cfg: RunConfig,
    preset: str | Sequence[StudyEntry],
    out_dir: Path | str,
    iid_seeds: int = 3,
    on_progress: Callable[[StudyEvent], None] | None = None,
    jobs: int = 1,
    figures: bool = True,
) -> ValidationResult:
    """Run (or resume) the study in ``out_dir`` and write its tables, summary and (unless
    ``figures`` is false) its scatter plots. ``jobs`` > 1 trains in that many processes."""
    from fedmetamal.api import load_data

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dataset = load_data(base_cfg)
    has_family = dataset.has_metadata("family")
    plan = [("baseline", StudyEntry({"kind": "iid"}, seed=s)) for s in range(max(iid_seeds, 1))]
    plan += [("federation", e) for e in study_entries(preset, has_family)]
    configs = [(role, entry_config(base_cfg, e)) for role, e in plan]
    ids = [federation_id(c.partition, c.seed, training_hash(c)) for _, c in configs]

    results_path = out / RESULTS_FILE
    done = read_results(results_path)
    notify = on_progress or (lambda _e: None)
    todo = [(fid, role, c) for fid, (role, c) in zip(ids, configs, strict=True) if fid not in done]
    count = len(configs) - len(todo)
    for fid, (role, _) in zip(ids, configs, strict=True):
        if fid in done:
            desc = done[fid]["description"]
            notify(StudyEvent("cached", fid, desc, role, count, len(configs)))

    def finish(rec: dict[str, Any]) -> None:
        nonlocal count
        _append(results_path, rec)
        done[rec["id"]] = rec
        count += 1
        status = "trained" if rec["status"] == "finished" else rec["status"]
        auc = (rec.get("metrics") or {}).get("roc_auc")
        notify(
            StudyEvent(
                status,
                rec["id"],
                rec["description"],
                rec["role"],
                count,
                len(configs),
                auc,
                rec.get("reason"),
            )
        )

    def started(c: RunConfig, fid: str, role: str) -> None:
        desc = partition_label(c.partition)
        notify(StudyEvent("start", fid, f"{desc} (seed {c.seed})", role, count, len(configs)))

    if jobs > 1 and len(todo) > 1:
        from fedmetamal.experiments.noniid_parallel import run_parallel

        run_parallel(base_cfg, [(role, c) for _, role, c in todo], jobs, finish)
    else:
        for fid, role, c in todo:
            started(c, fid, role)
            finish(evaluate_entry(c, dataset, role))

    records = [done[fid] for fid in ids]
    _refresh_measures(records, configs, dataset)
    written = write_study_outputs(out, records, dataset.name, figures=figures)
    return ValidationResult(
        out_dir=out,
        baseline=written.summary["baseline"],
        federations=written.federations,
        correlations=written.correlations,
        summary=written.summary,
        skipped=written.summary["skipped"],
        files=written.files,
        trained=sum(done[fid]["status"] == "finished" for fid, _, _ in todo),
        reused=len(configs) - len(todo),
        records=records,
    )
