"""What one run's directory says about it, read defensively.

A suite is read while it runs, after it crashed, or after someone deleted a run by hand, so
each run the manifest lists ends up in exactly one state: ``finished`` (its directory is
complete), ``failed`` (``error.json`` or the runner's status line says why), ``pending`` (not run
yet, or still running), ``missing`` (the runner recorded an outcome but the directory is gone)
or ``unreadable`` (the directory is damaged, for example a corrupt line in ``metrics.jsonl``).
A damaged file is reported on its run, never raised.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fedmetamal.experiments.suite_layout import INTERRUPTS, SEED_AXIS, failed_dirs

ALPHA_PARTITIONS = ("dirichlet", "family-dirichlet")


@dataclass
class RunRecord:
    """One run of the manifest and what its directory says about it."""

    id: str
    status: str
    settings: dict[str, str]
    values: dict[str, Any]
    final_metrics: dict[str, float] = field(default_factory=dict)
    curve: list[dict[str, Any]] = field(default_factory=list)
    heterogeneity: dict[str, float] = field(default_factory=dict)
    partition_kind: str | None = None
    alpha: float | None = None
    seed: int | None = None
    seconds: float | None = None
    error: str | None = None
    message: str | None = None
    path: Path | None = None


def read_status(path: Path) -> dict[str, dict[str, Any]]:
    """The runner's last recorded outcome per run id (damaged lines are skipped)."""
    out: dict[str, dict[str, Any]] = {}
    if not path.is_file():
        return out
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and "id" in row:
            out[str(row["id"])] = row
    return out


class _Damaged(Exception):
    """A file of a run directory cannot be read; the message says which and why."""


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise _Damaged(f"{path.name} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise _Damaged(f"{path.name} is not valid JSON ({err})") from None
    except OSError as err:
        raise _Damaged(f"{path.name} cannot be read ({err.strerror})") from None


def as_number(value: Any) -> float:
    """A float, NaN for a missing or non-numeric value (records are read as they are)."""
    try:
        return float(value) if value is not None else math.nan
    except (TypeError, ValueError):
        return math.nan


def read_run(root: Path, entry: dict[str, Any], outcome: dict[str, Any] | None) -> RunRecord:
    """Run ``entry`` of the manifest of suite ``root``, with the runner's last ``outcome``."""
    run_id = str(entry["id"])
    values = dict(entry.get("values") or {})
    rec = RunRecord(
        id=run_id,
        status="pending",
        settings={str(k): str(v) for k, v in (entry.get("settings") or {}).items()},
        values=values,
    )
    seed = values.get(SEED_AXIS)
    rec.seed = int(seed) if isinstance(seed, int | float) and not isinstance(seed, bool) else None
    _partition_from_values(rec)
    runs = root / "runs"
    done = runs / run_id
    if (done / "summary.json").is_file():
        try:
            _read_finished(rec, done)
        except _Damaged as err:
            rec.status, rec.error, rec.message = "unreadable", "DamagedRunDirectory", str(err)
            rec.final_metrics, rec.curve = {}, []
        return rec
    failures = failed_dirs(runs, run_id)
    if failures:
        failed = failures[-1]
        rec.status, rec.path = "failed", failed
        try:
            info = _read_json(failed / "error.json")
            rec.error = str(info.get("error") or "Error")
            rec.message = str(info.get("message") or "")
        except (_Damaged, AttributeError) as err:
            rec.error, rec.message = "Error", f"the run failed; {err}"
        if rec.error in INTERRUPTS:  # stopped, not failed: the runner redoes it on resume
            rec.status = "pending"
            rec.message = f"interrupted ({rec.error}); resuming the suite reruns it"
            rec.error = None
            return rec
        _merge_outcome(rec, outcome)
        return rec
    if done.is_dir():
        rec.message = f"incomplete: runs/{run_id} has no summary.json; resuming the suite reruns it"
        return rec
    status = (outcome or {}).get("status")
    if (runs / f"{run_id}.partial").is_dir():
        rec.message = f"running, or interrupted while running (runs/{run_id}.partial)"
    elif status == "failed":  # its .failed directory was removed; the runner's log remembers
        rec.status = "failed"
        _merge_outcome(rec, outcome)
    elif status in ("finished", "skipped"):
        rec.status = "missing"
        rec.message = f"the runner recorded it as {status} but runs/{run_id} is gone"
    else:
        rec.message = "not run yet"
    return rec


def _merge_outcome(rec: RunRecord, outcome: dict[str, Any] | None) -> None:
    if not outcome:
        return
    rec.error = rec.error or (str(outcome["error"]) if outcome.get("error") else "Error")
    rec.message = rec.message or str(outcome.get("message") or "")
    if rec.seconds is None and outcome.get("seconds") is not None:
        rec.seconds = as_number(outcome["seconds"])


def _read_finished(rec: RunRecord, path: Path) -> None:
    rec.path = path
    summary = _read_json(path / "summary.json")
    if not isinstance(summary, dict) or not isinstance(summary.get("final_metrics"), dict):
        raise _Damaged("summary.json has no final_metrics")
    rec.status = "finished"
    rec.final_metrics = {str(k): as_number(v) for k, v in summary["final_metrics"].items()}
    rec.seconds = as_number(summary.get("seconds"))
    rec.heterogeneity = _heterogeneity(summary.get("heterogeneity"))
    rec.curve = _read_curve(path / "metrics.jsonl")
    config = path / "config.yaml"
    if config.is_file():
        try:
            cfg = yaml.safe_load(config.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as err:
            raise _Damaged(f"config.yaml is not valid YAML ({err})") from None
        if isinstance(cfg, dict):
            part = cfg.get("partition") if isinstance(cfg.get("partition"), dict) else {}
            kind = part.get("kind", rec.partition_kind)
            rec.partition_kind = str(kind) if kind is not None else None
            rec.alpha = as_number(part.get("alpha")) if kind in ALPHA_PARTITIONS else None
            if isinstance(cfg.get("seed"), int) and rec.seed is None:
                rec.seed = int(cfg["seed"])


def _heterogeneity(raw: Any) -> dict[str, float]:
    """Federation-level measures, whether stored flat or as a full report's ``federation``."""
    if not isinstance(raw, dict):
        return {}
    if "index" not in raw and isinstance(raw.get("federation"), dict):
        raw = raw["federation"]
    return {str(k): as_number(v) for k, v in raw.items() if not isinstance(v, dict | list)}


def _read_curve(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise _Damaged("metrics.jsonl is missing")
    rows = []
    text = path.read_text(encoding="utf-8", errors="replace")
    for i, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise _Damaged(f"metrics.jsonl line {i} is not valid JSON ({err.msg})") from None
        if not isinstance(row, dict) or "round" not in row:
            raise _Damaged(f"metrics.jsonl line {i} is not a round record")
        rows.append(row)
    return rows


def _partition_from_values(rec: RunRecord) -> None:
    """Partition kind and alpha from the manifest's raw grid values (config.yaml overrides)."""
    kind: Any = rec.values.get("partition.kind")
    alpha: Any = rec.values.get("partition.alpha")
    part = rec.values.get("partition")
    if isinstance(part, dict):
        kind = part.get("kind", kind)
        alpha = part.get("alpha", alpha)
    rec.partition_kind = str(kind) if kind is not None else None
    if kind in ALPHA_PARTITIONS and alpha is not None:
        rec.alpha = as_number(alpha)
