"""Read a suite directory into tidy tables, whatever state its runs are in.

Every run the manifest lists is read by :mod:`run_records` into one state (``finished``,
``failed``, ``pending``, ``missing`` or ``unreadable``); only the last three are problems, and
none of them stops the others from being reported.

Tables and plots work from two pandas DataFrames: ``final`` (one row per run) and ``curves``
(one row per run and evaluated round).
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from fedmetamal.errors import ConfigError
from fedmetamal.experiments.run_records import RunRecord, as_number, read_run, read_status
from fedmetamal.experiments.suite_layout import SEED_AXIS, SUITE_FORMAT
from fedmetamal.fl.metrics import METRIC_NAMES

STATUSES = ("finished", "failed", "pending", "missing", "unreadable")
LOWER_IS_BETTER = frozenset({"loss", "train_loss", "attack_success_rate"})
NO_METHOD = "all"
"""The one method row's label when a suite has no methods axis."""
NO_SETTING = "all runs"
"""The one setting column's label when a suite varies only the method (and the seed)."""


@dataclass
class Axis:
    """A grid axis as the manifest lists it: its key and its value labels, in grid order."""

    key: str
    labels: list[str]


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
    """A run's setting-combination label, "a / b" (tables and figures group runs by it)."""
    if not axes:
        return NO_SETTING
    return " / ".join(str(settings.get(a.key, "?")) for a in axes)


# --- reading -----------------------------------------------------------------------------------


def load_results(suite_dir: Path | str) -> SuiteResults:
    """Read ``manifest.json`` and every run it lists; a damaged run is reported, not raised."""
    root = Path(suite_dir)
    manifest = read_manifest(root)
    axes = [Axis(str(a["key"]), [str(x) for x in a.get("labels", [])]) for a in manifest["axes"]]
    outcomes = read_status(root / "status.jsonl")
    runs = [read_run(root, entry, outcomes.get(str(entry["id"]))) for entry in manifest["runs"]]
    suite_yaml = None
    if (root / "suite.yaml").is_file():
        suite_yaml = (root / "suite.yaml").read_text(encoding="utf-8", errors="replace")
    results = SuiteResults(root, manifest, axes, runs, pd.DataFrame(), pd.DataFrame(), suite_yaml)
    results.final = _final_frame(results)
    results.curves = _curve_frame(results)
    return results


def read_manifest(root: Path) -> dict[str, Any]:
    """The manifest, checked for everything the tables need (axes, runs with ids, metrics)."""
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
            tests = {k[5:]: as_number(v) for k, v in rec.items() if k.startswith("test_")}
            if not tests:
                continue
            rows.append(
                {
                    "id": r.id,
                    "method": res.method_of(r),
                    "setting": res.setting_of(r),
                    SEED_AXIS: r.seed,
                    "round": int(rec["round"]),
                    "train_loss": as_number(rec.get("train_loss")),
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
