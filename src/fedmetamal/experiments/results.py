"""Read a suite directory into tidy tables, whatever state its runs are in.

A suite is read while it runs, after it crashed, or after someone deleted a run by hand, so
every run the manifest lists ends up in exactly one state: ``finished`` (its directory is
complete), ``failed`` (``error.json`` or the runner's status line says why), ``pending`` (not run
yet, or still running), ``missing`` (the runner recorded an outcome but the directory is gone)
or ``unreadable`` (the directory is damaged, for example a corrupt line in ``metrics.jsonl``).
Only the last three are problems; none of them stops the others from being reported.

Tables and plots work from two pandas DataFrames: ``final`` (one row per run) and ``curves``
(one row per run and evaluated round).
"""

from __future__ import annotations

import glob
import itertools
import json
import math
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from fedmetamal.errors import ConfigError
from fedmetamal.fl.metrics import METRIC_NAMES

SUITE_FORMAT = "fedmetamal-suite/1"
SEED_AXIS = "seed"
ALPHA_PARTITIONS = ("dirichlet", "family-dirichlet")
STATUSES = ("finished", "failed", "pending", "missing", "unreadable")
LOWER_IS_BETTER = frozenset({"loss", "train_loss"})
INTERRUPTS = frozenset({"KeyboardInterrupt", "SystemExit"})
"""Errors that stop a run without failing it (the runner redoes such runs on resume)."""
NO_METHOD = "all"
"""The one method row's label when a suite has no methods axis."""
NO_SETTING = "all runs"
"""The one setting column's label when a suite varies only the method (and the seed)."""


@dataclass
class Axis:
    key: str
    labels: list[str]


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


@dataclass
class SuiteResults:
    """Everything the tables, figures and report need from one suite directory."""

    suite_dir: Path
    manifest: dict[str, Any]
    axes: list[Axis]
    runs: list[RunRecord]
    final: pd.DataFrame
    curves: pd.DataFrame
    suite_yaml: str | None = None

    @property
    def name(self) -> str:
        return str(self.manifest.get("name") or self.suite_dir.name)

    @property
    def metrics(self) -> list[str]:
        return list(self.manifest["metrics"])

    @property
    def primary_metric(self) -> str:
        return self.metrics[0]

    @property
    def method_axis(self) -> str:
        return str(self.manifest.get("method_axis") or "algorithm.name")

    @property
    def has_method_axis(self) -> bool:
        """False when the methods axis is missing or is the seed (a suite of replicates only)."""
        return self.method_axis != SEED_AXIS and any(a.key == self.method_axis for a in self.axes)

    @property
    def setting_axes(self) -> list[Axis]:
        return [a for a in self.axes if a.key not in (self.method_axis, SEED_AXIS)]

    @property
    def methods(self) -> list[str]:
        """The method labels in axis order (one pseudo-method when the suite has no such axis)."""
        if self.has_method_axis:
            return next(list(a.labels) for a in self.axes if a.key == self.method_axis)
        return [NO_METHOD]

    @property
    def settings(self) -> list[str]:
        """Setting-combination labels ("a / b") in axis order, those that have runs."""
        axes = self.setting_axes
        if not axes:
            return [NO_SETTING]
        present = {setting_label(r.settings, axes) for r in self.runs}
        combos = (" / ".join(c) for c in itertools.product(*(a.labels for a in axes)))
        ordered = [c for c in combos if c in present]
        return ordered + sorted(present - set(ordered))

    def method_of(self, run: RunRecord) -> str:
        return run.settings.get(self.method_axis, "?") if self.has_method_axis else NO_METHOD

    def setting_of(self, run: RunRecord) -> str:
        return setting_label(run.settings, self.setting_axes)

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(STATUSES, 0)
        for r in self.runs:
            out[r.status] = out.get(r.status, 0) + 1
        return out

    def problems(self) -> list[RunRecord]:
        """Runs that are not finished, failures first."""
        order = {s: i for i, s in enumerate(("failed", "unreadable", "missing", "pending"))}
        bad = [r for r in self.runs if r.status != "finished"]
        return sorted(bad, key=lambda r: order.get(r.status, 9))


def setting_label(settings: dict[str, str], axes: list[Axis]) -> str:
    if not axes:
        return NO_SETTING
    return " / ".join(str(settings.get(a.key, "?")) for a in axes)


_GREEK = {
    "α": "alpha", "β": "beta", "γ": "gamma", "δ": "delta", "ε": "eps", "η": "eta",
    "λ": "lambda", "μ": "mu", "ρ": "rho", "σ": "sigma", "τ": "tau",
}  # fmt: skip


def slugify(text: str) -> str:
    """A file-name-safe form of a label: 'dirichlet α=0.05' -> 'dirichlet-alpha-0.05'."""
    s = "".join(f" {_GREEK[ch]} " if ch in _GREEK else ch for ch in str(text).lower())
    s = re.sub(r"[^a-z0-9.]+", "-", s).strip("-.")
    return s or "x"


def unique_slugs(labels: list[str]) -> dict[str, str]:
    """Slugs for distinct labels, suffixed -2, -3 ... where two labels slug alike."""
    out: dict[str, str] = {}
    used: set[str] = set()
    for label in labels:
        base = slug = slugify(label)
        n = 1
        while slug in used:
            n += 1
            slug = f"{base}-{n}"
        used.add(slug)
        out[label] = slug
    return out


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write a file so that readers see the old or the new content, never half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --- reading -----------------------------------------------------------------------------------


def load_results(suite_dir: Path | str) -> SuiteResults:
    """Read ``manifest.json`` and every run it lists; a damaged run is reported, not raised."""
    root = Path(suite_dir)
    manifest = read_manifest(root)
    axes = [Axis(str(a["key"]), [str(x) for x in a.get("labels", [])]) for a in manifest["axes"]]
    outcomes = _read_status(root / "status.jsonl")
    runs = [_read_run(root, entry, outcomes.get(str(entry["id"]))) for entry in manifest["runs"]]
    suite_yaml = None
    if (root / "suite.yaml").is_file():
        suite_yaml = (root / "suite.yaml").read_text(encoding="utf-8", errors="replace")
    results = SuiteResults(root, manifest, axes, runs, pd.DataFrame(), pd.DataFrame(), suite_yaml)
    results.final = _final_frame(results)
    results.curves = _curve_frame(results)
    return results


def read_manifest(root: Path) -> dict[str, Any]:
    fix = "Pass the folder that `fedmetamal suite run` wrote (it holds manifest.json)."
    if not root.is_dir():
        raise ConfigError(f"Suite directory '{root}' does not exist.", fix)
    path = root / "manifest.json"
    if not path.is_file():
        raise ConfigError(f"'{root}' is not a suite directory: it has no manifest.json.", fix)
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(
            f"'{path}' is not valid JSON ({err}).", "Rerun the suite to rewrite it."
        ) from None
    if not isinstance(manifest, dict) or "format" not in manifest:
        raise ConfigError(f"'{path}' is not a suite manifest (it has no 'format' field).", fix)
    if manifest["format"] != SUITE_FORMAT:
        raise ConfigError(
            f"'{path}' has format '{manifest['format']}'; this version of fedmetamal reads "
            f"'{SUITE_FORMAT}'.",
            "Use the fedmetamal version that wrote the suite, or rerun the suite.",
        )
    for key, kind in (("axes", list), ("runs", list), ("metrics", list)):
        if not isinstance(manifest.get(key), kind):
            raise ConfigError(f"'{path}' has no '{key}' list.", "Rerun the suite to rewrite it.")
    if not manifest["metrics"]:
        raise ConfigError(f"'{path}' names no metrics.", "List at least one metric in the suite.")
    for run in manifest["runs"]:
        if not isinstance(run, dict) or "id" not in run:
            raise ConfigError(f"'{path}' lists a run without an id.", "Rerun the suite.")
    return manifest


def _read_status(path: Path) -> dict[str, dict[str, Any]]:
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


def _number(value: Any) -> float:
    try:
        return float(value) if value is not None else math.nan
    except (TypeError, ValueError):
        return math.nan


def _read_run(root: Path, entry: dict[str, Any], outcome: dict[str, Any] | None) -> RunRecord:
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
    failed = _latest_failed_dir(runs, run_id)
    if failed is not None:
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
        rec.seconds = _number(outcome["seconds"])


def _latest_failed_dir(runs: Path, run_id: str) -> Path | None:
    if not runs.is_dir():
        return None
    found = [
        p
        for p in runs.glob(f"{glob.escape(run_id)}.failed*")
        if p.is_dir() and re.fullmatch(r"\.failed(-\d+)?", p.name[len(run_id) :])
    ]
    if not found:
        return None
    return max(found, key=lambda p: p.stat().st_mtime)


def _read_finished(rec: RunRecord, path: Path) -> None:
    rec.path = path
    summary = _read_json(path / "summary.json")
    if not isinstance(summary, dict) or not isinstance(summary.get("final_metrics"), dict):
        raise _Damaged("summary.json has no final_metrics")
    rec.status = "finished"
    rec.final_metrics = {str(k): _number(v) for k, v in summary["final_metrics"].items()}
    rec.seconds = _number(summary.get("seconds"))
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
            rec.alpha = _number(part.get("alpha")) if kind in ALPHA_PARTITIONS else None
            if isinstance(cfg.get("seed"), int) and rec.seed is None:
                rec.seed = int(cfg["seed"])


def _heterogeneity(raw: Any) -> dict[str, float]:
    """Federation-level measures, whether stored flat or as a full report's ``federation``."""
    if not isinstance(raw, dict):
        return {}
    if "index" not in raw and isinstance(raw.get("federation"), dict):
        raw = raw["federation"]
    return {str(k): _number(v) for k, v in raw.items() if not isinstance(v, dict | list)}


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
        rec.alpha = _number(alpha)


# --- tidy frames -------------------------------------------------------------------------------


def _metric_order(names: set[str], first: list[str]) -> list[str]:
    known = [m for m in METRIC_NAMES if m in names and m not in first]
    rest = sorted(names - set(first) - set(known))
    return first + known + rest


def _final_frame(res: SuiteResults) -> pd.DataFrame:
    metric_names = _metric_order({k for r in res.runs for k in r.final_metrics}, list(res.metrics))
    het_names = list(dict.fromkeys(k for r in res.runs for k in r.heterogeneity if k != "index"))
    label_axes = [a for a in res.axes if a.key != SEED_AXIS]
    rows = []
    for r in res.runs:
        row: dict[str, Any] = {"id": r.id, "status": r.status}
        row["method"] = res.method_of(r)
        row["setting"] = res.setting_of(r)
        for a in label_axes:
            row[a.key] = r.settings.get(a.key)
        row[SEED_AXIS] = r.seed
        for m in metric_names:
            row[m] = r.final_metrics.get(m, math.nan)
        row["heterogeneity_index"] = r.heterogeneity.get("index", math.nan)
        for h in het_names:
            row[f"het_{h}"] = r.heterogeneity.get(h, math.nan)
        row["partition_kind"] = r.partition_kind
        row["alpha"] = r.alpha if r.alpha is not None else math.nan
        row["seconds"] = r.seconds if r.seconds is not None else math.nan
        row["error"] = r.error
        row["message"] = r.message
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        frame = pd.DataFrame(columns=["id", "status", "method", "setting", SEED_AXIS])
    frame[SEED_AXIS] = frame[SEED_AXIS].astype("Int64")
    return frame


def _curve_frame(res: SuiteResults) -> pd.DataFrame:
    rows = []
    for r in res.runs:
        if r.status != "finished":
            continue
        for rec in r.curve:
            tests = {k[5:]: _number(v) for k, v in rec.items() if k.startswith("test_")}
            if not tests:
                continue
            rows.append(
                {
                    "id": r.id,
                    "method": res.method_of(r),
                    "setting": res.setting_of(r),
                    SEED_AXIS: r.seed,
                    "round": int(rec["round"]),
                    "train_loss": _number(rec.get("train_loss")),
                    **tests,
                }
            )
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=["id", "method", "setting", SEED_AXIS, "round"])
    metric_cols = _metric_order(
        set(frame.columns) - {"id", "method", "setting", SEED_AXIS, "round", "train_loss"}, []
    )
    return frame[["id", "method", "setting", SEED_AXIS, "round", "train_loss", *metric_cols]]
