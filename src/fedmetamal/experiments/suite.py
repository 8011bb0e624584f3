"""A suite file: one base configuration and a grid of axes whose product is the set of runs.

Everything is checked here, before any run starts: the suite's own keys, that each axis names a
config field, that every run's resolved configuration is valid (an error names the axis and the
value), the metrics and the method axis. A study that would fail on its 40th run because of a
typo fails in a second instead, having written nothing.

Each run gets a readable id built from its settings plus a short hash of its resolved
configuration, so an id never points at results computed with other settings, and adding a value
to an axis leaves the ids (and results) of the existing runs as they are.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import itertools
import json
import re
import typing
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fedmetamal.config import RunConfig, format_validation_error
from fedmetamal.errors import ConfigError

#: The suite directory layout version written to (and required in) ``manifest.json``.
SUITE_FORMAT = "fedmetamal-suite/1"

#: Metrics a suite reports when its file names none.
DEFAULT_METRICS: tuple[str, ...] = ("roc_auc", "accuracy", "f1", "tpr_at_1pct_fpr")

#: The replicate axis: tables aggregate over it (mean ± std).
SEED_AXIS = "seed"

#: Config sections that say how a run executes, not what it computes: left out of the hash.
_NOT_HASHED = {"output", "runtime"}

#: Settings the runner sets itself (each run's directory).
_RUNNER_KEYS = {"output.dir", "output.name"}

_GREEK = {"alpha": "α"}
_SLUG_MAX = 80


class SuiteSpec(BaseModel):
    """The suite file's schema. Unknown keys are errors, as in run configs."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, description="suite name (default: the file name's stem)")
    base: str | None = Field(None, description="run config file, relative to the suite file")
    config: dict[str, Any] = Field(
        default_factory=dict, description="inline config, merged over `base`"
    )
    grid: dict[str, list[Any]] = Field(description="axes: dotted config key -> list of values")
    methods: str | None = Field(None, description="the axis compared side by side")
    metrics: list[str] = Field(default_factory=lambda: list(DEFAULT_METRICS))
    parallel: int | str = Field("auto", description="runs at once, or auto")
    exclude: list[dict[str, Any]] = Field(
        default_factory=list, description="combinations to drop (partial matches)"
    )


@dataclass(frozen=True)
class Axis:
    """One grid axis: a dotted config key, its values and their display labels."""

    key: str
    values: tuple[Any, ...]
    labels: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "labels": list(self.labels), "values": list(self.values)}


@dataclass
class PlannedRun:
    """One point of the grid, with its resolved configuration (output settings not yet set)."""

    id: str
    settings: dict[str, str]  # axis key -> display label
    values: dict[str, Any]  # axis key -> raw grid value
    config: RunConfig
    config_hash: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "settings": self.settings,
            "values": self.values,
            "config_hash": self.config_hash,
        }

    def resolved(self, runs_dir: Path) -> dict[str, Any]:
        """The run's full configuration (JSON-ready) writing to ``runs_dir / id``."""
        data = self.config.model_dump(mode="json")
        data["output"] = {**data["output"], "dir": str(runs_dir), "name": self.id}
        return data


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
        return _hash(
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


# --------------------------------------------------------------------------- labels and ids


def _flat(mapping: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for k, v in mapping.items():
        if isinstance(v, dict) and v:
            out += _flat(v, f"{prefix}{k}.")
        else:
            out.append((f"{prefix}{k}", v))
    return out


def auto_label(value: Any) -> str:
    """A compact display label: ``dirichlet α=0.05``, ``label-quantity k=1``, ``mu=0.01``."""
    if not isinstance(value, dict):
        return str(value)
    items = _flat(value)
    head = next((v for k, v in items if k in ("kind", "name") and isinstance(v, str)), None)
    rest = []
    for key, v in items:
        if head is not None and key in ("kind", "name") and v == head:
            continue
        leaf = key.rsplit(".", 1)[-1]
        rest.append(f"{_GREEK.get(leaf, leaf)}={v}")
    if head is None:
        return ", ".join(rest) or "{}"
    return " ".join([head, *rest])


def _slugify(text: str) -> str:
    text = text.lower().replace("α", "a").replace("=", "")
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    text = re.sub(r"[^a-z0-9._]+", "-", text)
    return re.sub(r"-{2,}", "-", text).strip("-._")


def _slug_part(axis: Axis, index: int) -> str:
    label, value = axis.labels[index], axis.values[index]
    if axis.key == SEED_AXIS:
        return _slugify(f"s{label}")
    leaf = axis.key.rsplit(".", 1)[-1]
    if isinstance(value, bool | int | float) or value is None:
        return _slugify(f"{leaf}{label}")
    if isinstance(value, list):
        return _slugify(leaf + "-".join(str(v) for v in value))
    return _slugify(label)


def run_id(axes: list[Axis], combo: tuple[int, ...], config_hash: str) -> str:
    """``fedprox-dirichlet-a0.1-s1-3fa2c19e``: settings, then the config hash (8 hex digits)."""
    parts = (_slug_part(a, i) for a, i in zip(axes, combo, strict=True))
    slug = "-".join(p for p in parts if p) or "run"
    if len(slug) > _SLUG_MAX:
        slug = slug[:_SLUG_MAX].rstrip("-._")
    return f"{slug}-{config_hash[:8]}"


def _hash(obj: Any) -> str:
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def config_hash(cfg: RunConfig) -> str:
    """Hash of what a run computes: every setting except ``output`` and ``runtime``."""
    return _hash(cfg.model_dump(mode="json", exclude=_NOT_HASHED))


# --------------------------------------------------------------------------- merging


def _merge(dst: dict[str, Any], src: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``src`` into ``dst`` (mappings merge, anything else replaces)."""
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _merge(dst[k], v)
        else:
            dst[k] = copy.deepcopy(v)
    return dst


def _expand_dotted(data: dict[str, Any]) -> dict[str, Any]:
    """``{"training.rounds": 5}`` -> ``{"training": {"rounds": 5}}`` (nested keys kept)."""
    out: dict[str, Any] = {}
    for k, v in data.items():
        v = _expand_dotted(v) if isinstance(v, dict) else v
        parts = str(k).split(".")
        nested: Any = v
        for part in reversed(parts[1:]):
            nested = {part: nested}
        _merge(out, {parts[0]: nested})
    return out


def _apply(data: dict[str, Any], key: str, value: Any) -> None:
    """Set axis ``key`` to ``value``; a mapping value is merged at that prefix."""
    *parents, leaf = key.split(".")
    cur = data
    for part in parents:
        if not isinstance(cur.get(part), dict):
            cur[part] = {}
        cur = cur[part]
    if isinstance(value, dict) and isinstance(cur.get(leaf), dict):
        _merge(cur[leaf], value)
    else:
        cur[leaf] = copy.deepcopy(value)


def _axis_leaves(key: str, value: Any) -> list[str]:
    if isinstance(value, dict) and value:
        return [f"{key}.{k}" for k, _ in _flat(value)]
    return [key]


# --------------------------------------------------------------------------- validation


def check_axis_key(key: str) -> None:
    """A ConfigError unless ``key`` is a dotted path of a run config field."""
    if key in _RUNNER_KEYS:
        raise ConfigError(
            f"Grid axis '{key}' cannot be varied: the suite runner sets it (each run writes "
            "to <suite dir>/runs/<run id>).",
            "Remove that axis; use --out to choose where the suite is written.",
        )
    model: type[BaseModel] = RunConfig
    parts = key.split(".")
    for i, part in enumerate(parts):
        fields = model.model_fields
        where = ".".join(parts[:i]) or "the run config"
        if part not in fields:
            close = difflib.get_close_matches(part, list(fields), n=1)
            hint = f" Did you mean '{'.'.join([*parts[:i], close[0]])}'?" if close else ""
            raise ConfigError(
                f"Grid axis '{key}' is not a config field: {where} has no field '{part}'.{hint}",
                f"Fields of {where}: {', '.join(fields)}.",
            )
        annotation = fields[part].annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
            continue
        if i < len(parts) - 1 and typing.get_origin(annotation) is not dict:
            raise ConfigError(
                f"Grid axis '{key}' is not a config field: '{'.'.join(parts[: i + 1])}' is a "
                "setting, not a section.",
                f"Use '{'.'.join(parts[: i + 1])}' as the axis key.",
            )
        return


def _axis(key: str, raw_values: list[Any]) -> Axis:
    check_axis_key(key)
    values: list[Any] = []
    labels: list[str] = []
    for raw in raw_values:
        if isinstance(raw, dict):
            value = {k: v for k, v in raw.items() if k != "label"}
            value = _expand_dotted(value)
            label = str(raw["label"]) if raw.get("label") is not None else auto_label(value)
        else:
            value, label = raw, auto_label(raw)
        values.append(value)
        labels.append(label)
    seen: dict[str, int] = {}
    for i, label in enumerate(labels):
        if label in seen:
            raise ConfigError(
                f"Grid axis '{key}' has two values labelled '{label}' (values "
                f"{_show(values[seen[label]])} and {_show(values[i])}).",
                "Remove the duplicate, or give mapping values distinct `label:` entries.",
            )
        seen[label] = i
    return Axis(key, tuple(values), tuple(labels))


def _show(value: Any) -> str:
    return json.dumps(value, default=str) if isinstance(value, dict | list) else repr(value)


def _value_matches(axis: Axis, index: int, wanted: Any) -> bool:
    label, value = axis.labels[index], axis.values[index]
    if isinstance(wanted, str) and wanted == label:
        return True
    if wanted == value and type(wanted) is type(value):
        return True
    if isinstance(wanted, int | float) and isinstance(value, int | float):
        return not isinstance(wanted, bool) and not isinstance(value, bool) and wanted == value
    if isinstance(wanted, dict) and isinstance(value, dict):
        flat = dict(_flat(value))
        return all(flat.get(k) == v for k, v in _flat(_expand_dotted(wanted)))
    return False


def _matches(axis: Axis, index: int, wanted: Any) -> bool:
    if _value_matches(axis, index, wanted):
        return True
    return isinstance(wanted, list) and any(_value_matches(axis, index, w) for w in wanted)


def _check_excludes(excludes: list[dict[str, Any]], axes: dict[str, Axis]) -> None:
    for n, entry in enumerate(excludes, 1):
        if not entry:
            raise ConfigError(f"exclude entry {n} is empty.", "Name at least one axis and value.")
        for key, wanted in entry.items():
            if key not in axes:
                raise ConfigError(
                    f"exclude entry {n} names '{key}', which is not a grid axis.",
                    f"Grid axes: {', '.join(axes)}.",
                )
            axis = axes[key]
            if not any(_matches(axis, i, wanted) for i in range(len(axis.values))):
                raise ConfigError(
                    f"exclude entry {n}: {_show(wanted)} matches no value of grid axis '{key}'.",
                    f"Use a label ({', '.join(repr(lb) for lb in axis.labels)}) or a value.",
                )


def _excluded(excludes: list[dict[str, Any]], axes: dict[str, Axis], combo: dict[str, int]) -> bool:
    return any(
        all(_matches(axes[k], combo[k], wanted) for k, wanted in entry.items())
        for entry in excludes
    )


def _blame(err: ValidationError, axes: list[Axis], combo: tuple[int, ...]) -> list[str]:
    """The axes whose keys overlap the fields the validation error names."""
    locs = [".".join(str(p) for p in e["loc"]) for e in err.errors()]
    blamed = []
    for axis, i in zip(axes, combo, strict=True):
        for loc in locs:
            if loc and (
                loc.startswith(axis.key + ".") or axis.key.startswith(loc) or loc == axis.key
            ):
                blamed.append(f"value {axis.labels[i]!r} of grid axis '{axis.key}'")
                break
    return blamed


def _read_yaml(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{what} '{path}' does not exist.", "Check the path.")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"{what} '{path}' is not valid YAML: {err}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{what} '{path}' must hold a mapping of settings at the top level.")
    return data


def _check_name(name: str, path: Path) -> str:
    name = name.strip()
    if not name or name in (".", "..") or any(c in name for c in "/\\\0"):
        raise ConfigError(
            f"Suite name {name!r} (in '{path}') cannot name a folder.",
            "Use letters, digits, '-', '_' or '.', e.g. name: noniid.",
        )
    return name


def _check_parallel(value: int | str) -> int | Literal["auto"]:
    if value == "auto":
        return "auto"
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    raise ConfigError(
        f"parallel must be a number of runs at once (>= 1) or 'auto', got {value!r}.",
        "e.g. parallel: auto",
    )


def _method_axis(requested: str | None, keys: list[str]) -> str:
    if requested is not None:
        if requested not in keys:
            raise ConfigError(
                f"methods: '{requested}' is not a grid axis.",
                f"Use one of: {', '.join(keys)}.",
            )
        if requested == SEED_AXIS and len(keys) > 1:
            raise ConfigError(
                "methods: 'seed' is the replicate axis (tables average over it).",
                f"Use one of: {', '.join(k for k in keys if k != SEED_AXIS)}.",
            )
        return requested
    for key in ("algorithm.name", "algorithm"):
        if key in keys:
            return key
    return next((k for k in keys if k != SEED_AXIS), keys[0])


def _check_metrics(metrics: list[str]) -> list[str]:
    from fedmetamal.fl.metrics import METRIC_NAMES

    if not metrics:
        raise ConfigError("metrics is empty.", f"Name at least one of: {', '.join(METRIC_NAMES)}.")
    for m in metrics:
        if m not in METRIC_NAMES:
            close = difflib.get_close_matches(m, METRIC_NAMES, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ConfigError(
                f"metrics: '{m}' is not a metric.{hint}", f"Known: {', '.join(METRIC_NAMES)}."
            )
    return list(dict.fromkeys(metrics))


def load_suite(path: Path | str) -> Suite:
    """Read, validate and expand a suite file. Writes nothing; raises ConfigError on any problem."""
    path = Path(path)
    data = _read_yaml(path, "Suite file")
    try:
        spec = SuiteSpec.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, f"suite file '{path}'")) from None
    text = path.read_text(encoding="utf-8")
    name = _check_name(spec.name if spec.name is not None else path.stem, path)
    parallel = _check_parallel(spec.parallel)
    if not spec.grid:
        raise ConfigError(
            f"Suite file '{path}' has an empty grid.",
            "Give at least one axis, e.g. seed: [0, 1, 2].",
        )
    for key, values in spec.grid.items():
        if not values:
            raise ConfigError(f"Grid axis '{key}' has no values.", "Give it at least one value.")

    base: dict[str, Any] = {}
    if spec.base is not None:
        base_path = (path.parent / spec.base).resolve()
        base = _expand_dotted(_read_yaml(base_path, "Base config file"))
        _build(base, f"base config file '{base_path}'")
    base = _merge(base, _expand_dotted(spec.config))
    _build(base, f"suite 'config' (merged over base) in '{path}'")

    axes = [_axis(key, values) for key, values in spec.grid.items()]
    by_key = {a.key: a for a in axes}
    _check_excludes(spec.exclude, by_key)
    method_axis = _method_axis(spec.methods, list(by_key))
    metrics = _check_metrics(spec.metrics)
    base_algorithm = base.get("algorithm", {}).get("name", "fedavg")

    runs: list[PlannedRun] = []
    seen: dict[str, str] = {}
    for combo in itertools.product(*(range(len(a.values)) for a in axes)):
        if _excluded(spec.exclude, by_key, {a.key: i for a, i in zip(axes, combo, strict=True)}):
            continue
        cfg_data = copy.deepcopy(base)
        leaves: list[str] = []
        for axis, i in zip(axes, combo, strict=True):
            _apply(cfg_data, axis.key, axis.values[i])
            leaves += _axis_leaves(axis.key, axis.values[i])
        _drop_foreign_params(cfg_data, leaves, base_algorithm)
        settings = {a.key: a.labels[i] for a, i in zip(axes, combo, strict=True)}
        try:
            cfg = RunConfig.model_validate(cfg_data)
        except ValidationError as err:
            blamed = _blame(err, axes, combo)
            shown = ", ".join(f"{k}={v}" for k, v in settings.items())
            if not blamed:
                where = f"run {shown}"
            else:
                where = " and ".join(blamed) + (f" (in run {shown})" if len(axes) > 1 else "")
            raise ConfigError(format_validation_error(err, where)) from None
        digest = config_hash(cfg)
        rid = run_id(axes, combo, digest)
        if digest in seen:
            raise ConfigError(
                f"Runs '{seen[digest]}' and '{rid}' have the same configuration (they differ at "
                "most in runtime/output settings, which do not change results).",
                "Remove the axis or value that makes no difference.",
            )
        seen[digest] = rid
        values = {a.key: a.values[i] for a, i in zip(axes, combo, strict=True)}
        runs.append(PlannedRun(rid, settings, values, cfg, digest))
    if not runs:
        raise ConfigError(
            f"Suite '{name}' has no runs: `exclude` removes every combination.",
            "Loosen the exclude entries.",
        )
    return Suite(name, path, text, axes, method_axis, metrics, parallel, runs)


def _drop_foreign_params(data: dict[str, Any], leaves: list[str], base_algorithm: str) -> None:
    """Base ``algorithm.params`` belong to the base's algorithm: drop them for another one
    that an axis picks, unless an axis gives params too (as ``simulate --algorithm`` does)."""
    algorithm = data.get("algorithm")
    if not isinstance(algorithm, dict) or "algorithm.name" not in leaves:
        return
    if any(k.startswith("algorithm.params") for k in leaves):
        return
    if algorithm.get("name") != base_algorithm:
        algorithm.pop("params", None)


def _build(data: dict[str, Any], origin: str) -> RunConfig:
    try:
        return RunConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, origin)) from None


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
