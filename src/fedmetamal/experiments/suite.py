"""A suite: one base configuration and a grid of axes whose product is the set of runs.

Everything is checked before any run starts (:func:`load_suite`): the suite's own keys, that
each axis names a config field, that every run's resolved configuration is valid (an error names
the axis and the value), the metrics and the method axis. A study that would fail on its 40th
run because of a typo fails in a second instead, having written nothing. The suite directory a
suite is run into is checked here too: new, empty, or holding this same suite.

The pieces live in ``suite_spec`` (the file), ``suite_axes`` (axes, labels, exclude) and
``suite_grid`` (runs, ids, hashes).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from fedmetamal.errors import ConfigError
from fedmetamal.experiments.naming import stable_hash
from fedmetamal.experiments.suite_axes import Axis, build_axis, check_excludes
from fedmetamal.experiments.suite_grid import PlannedRun, expand_grid
from fedmetamal.experiments.suite_layout import SUITE_FORMAT
from fedmetamal.experiments.suite_spec import (
    base_config,
    check_grid,
    check_metrics,
    check_parallel,
    method_axis,
    read_spec,
    suite_name,
)


@dataclass
class Suite:
    """A validated suite: its axes and every run, in grid order."""

    name: str
    path: Path
    text: str
    axes: list[Axis]
    method_axis: str
    metrics: list[str]
    parallel: int | Literal["auto"]
    runs: list[PlannedRun] = field(default_factory=list)

    @property
    def suite_hash(self) -> str:
        return stable_hash(
            {
                "name": self.name,
                "method_axis": self.method_axis,
                "metrics": self.metrics,
                "axes": [[a.key, list(a.labels)] for a in self.axes],
                "runs": [[r.id, r.config_hash] for r in self.runs],
            }
        )

    def manifest(self) -> dict[str, Any]:
        from fedmetamal import __version__

        return {
            "format": SUITE_FORMAT,
            "name": self.name,
            "suite_hash": self.suite_hash,
            "method_axis": self.method_axis,
            "metrics": list(self.metrics),
            "axes": [a.to_dict() for a in self.axes],
            "runs": [r.to_dict() for r in self.runs],
            "suite_file": str(self.path),
            "fedmetamal_version": __version__,
        }


def load_suite(path: Path | str) -> Suite:
    """Read, validate and expand a suite file. Writes nothing; raises ConfigError on any problem."""
    path = Path(path)
    spec = read_spec(path)
    text = path.read_text(encoding="utf-8")
    name = suite_name(spec, path)
    parallel = check_parallel(spec.parallel)
    check_grid(spec, path)
    base = base_config(spec, path)
    axes = [build_axis(key, values) for key, values in spec.grid.items()]
    check_excludes(spec.exclude, {a.key: a for a in axes})
    methods = method_axis(spec.methods, [a.key for a in axes])
    metrics = check_metrics(spec.metrics)
    runs = expand_grid(base, axes, spec.exclude)
    if not runs:
        raise ConfigError(
            f"Suite '{name}' has no runs: `exclude` removes every combination.",
            "Loosen the exclude entries.",
        )
    return Suite(name, path, text, axes, methods, metrics, parallel, runs)


# --------------------------------------------------------------------------- suite directories


def read_manifest(suite_dir: Path | str) -> dict[str, Any]:
    """The manifest of a suite directory; a ConfigError when it is not one this version reads."""
    suite_dir = Path(suite_dir)
    path = suite_dir / "manifest.json"
    if not suite_dir.is_dir():
        raise ConfigError(
            f"Suite directory '{suite_dir}' does not exist.",
            "Pass the folder `fedmetamal experiment run` wrote (default runs/suites/<name>).",
        )
    if not path.is_file():
        raise ConfigError(
            f"'{suite_dir}' is not a suite directory (it has no manifest.json).",
            "Pass the folder `fedmetamal experiment run` wrote (default runs/suites/<name>).",
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(
            f"'{path}' is not a readable suite manifest ({err}); this fedmetamal writes format "
            f"'{SUITE_FORMAT}'.",
            "Use a new suite directory (--out DIR), or the fedmetamal version that wrote it.",
        ) from None
    fmt = manifest.get("format") if isinstance(manifest, dict) else None
    if fmt != SUITE_FORMAT:
        raise ConfigError(
            f"Suite directory '{suite_dir}' has format {fmt!r}; this version of fedmetamal reads "
            f"and writes '{SUITE_FORMAT}'.",
            "Use a new suite directory (--out DIR), or re-run with a fedmetamal version that "
            "reads that format.",
        )
    return manifest


def check_suite_dir(suite: Suite, suite_dir: Path) -> None:
    """A ConfigError unless ``suite_dir`` is new, empty, or holds this same suite."""
    if suite_dir.exists() and not suite_dir.is_dir():
        raise ConfigError(f"'{suite_dir}' is a file, not a suite directory.", "Use --out DIR.")
    if not suite_dir.exists():
        return
    if not (suite_dir / "manifest.json").exists():
        if any(p.name != ".lock" for p in suite_dir.iterdir()):
            raise ConfigError(
                f"'{suite_dir}' is not empty and is not a suite directory (no manifest.json).",
                "Choose a new or empty folder with --out DIR.",
            )
        return
    manifest = read_manifest(suite_dir)
    if manifest.get("name") != suite.name:
        raise ConfigError(
            f"'{suite_dir}' holds suite '{manifest.get('name')}', not '{suite.name}'.",
            "Use another folder (--out DIR), or give the suite its old name.",
        )


def default_suite_dir(suite: Suite) -> Path:
    """Where a suite is written without ``--out``: ``runs/suites/<name>`` under the cwd."""
    return Path("runs") / "suites" / suite.name
