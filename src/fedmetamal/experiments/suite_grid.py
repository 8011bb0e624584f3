"""The runs of a grid: every combination of axis values not excluded, each validated and named.

Each run gets a readable id built from its settings plus a short hash of its resolved
configuration, so an id never points at results computed with other settings, and adding a value
to an axis leaves the ids (and results) of the existing runs as they are. A configuration that
does not validate is reported with the axis values that caused it.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from fedmetamal.config import RunConfig, format_validation_error
from fedmetamal.errors import ConfigError
from fedmetamal.experiments.dotted_keys import flatten, merge_at
from fedmetamal.experiments.naming import id_slug, stable_hash
from fedmetamal.experiments.suite_axes import Axis, is_excluded
from fedmetamal.experiments.suite_layout import SEED_AXIS

#: Config sections that say how a run executes, not what it computes: left out of the hash.
_NOT_HASHED = {"output", "runtime"}

_SLUG_MAX = 80


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


# --------------------------------------------------------------------------- ids and hashes


def _slug_part(axis: Axis, index: int) -> str:
    label, value = axis.labels[index], axis.values[index]
    if axis.key == SEED_AXIS:
        return id_slug(f"s{label}")
    leaf = axis.key.rsplit(".", 1)[-1]
    if isinstance(value, bool | int | float) or value is None:
        return id_slug(f"{leaf}{label}")
    if isinstance(value, list):
        return id_slug(leaf + "-".join(str(v) for v in value))
    return id_slug(label)


def run_id(axes: list[Axis], combo: tuple[int, ...], config_hash: str) -> str:
    """``fedprox-dirichlet-a0.1-s1-3fa2c19e``: settings, then the config hash (8 hex digits)."""
    parts = (_slug_part(a, i) for a, i in zip(axes, combo, strict=True))
    slug = "-".join(p for p in parts if p) or "run"
    if len(slug) > _SLUG_MAX:
        slug = slug[:_SLUG_MAX].rstrip("-._")
    return f"{slug}-{config_hash[:8]}"


def config_hash(cfg: RunConfig) -> str:
    """Hash of what a run computes: every setting except ``output`` and ``runtime``.

    Only settings that differ from their defaults enter it, so a new version that adds a
    setting (with a default that keeps the old behaviour) leaves existing run ids, and the
    finished runs behind them, valid.
    """
    return stable_hash(cfg.model_dump(mode="json", exclude=_NOT_HASHED, exclude_defaults=True))


# --------------------------------------------------------------------------- expansion


def _axis_leaves(key: str, value: Any) -> list[str]:
    if isinstance(value, dict) and value:
        return [f"{key}.{k}" for k, _ in flatten(value)]
    return [key]


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


def _validated(
    cfg_data: dict[str, Any], axes: list[Axis], combo: tuple[int, ...], settings: dict[str, str]
) -> RunConfig:
    """The run's config, or a ConfigError naming the axis values that made it invalid."""
    try:
        return RunConfig.model_validate(cfg_data)
    except ValidationError as err:
        blamed = _blame(err, axes, combo)
        shown = ", ".join(f"{k}={v}" for k, v in settings.items())
        if not blamed:
            where = f"run {shown}"
        else:
            where = " and ".join(blamed) + (f" (in run {shown})" if len(axes) > 1 else "")
        raise ConfigError(format_validation_error(err, where)) from None


def expand_grid(
    base: dict[str, Any], axes: list[Axis], excludes: list[dict[str, Any]]
) -> list[PlannedRun]:
    """Every combination of axis values over ``base`` (in grid order) that no entry excludes.

    Raises a ConfigError for a combination whose config is invalid, and for two runs whose
    configs are equal (an axis or value that changes nothing).
    """
    by_key = {a.key: a for a in axes}
    base_algorithm = base.get("algorithm", {}).get("name", "fedavg")
    runs: list[PlannedRun] = []
    seen: dict[str, str] = {}
    for combo in itertools.product(*(range(len(a.values)) for a in axes)):
        if is_excluded(excludes, by_key, {a.key: i for a, i in zip(axes, combo, strict=True)}):
            continue
        cfg_data = copy.deepcopy(base)
        leaves: list[str] = []
        for axis, i in zip(axes, combo, strict=True):
            merge_at(cfg_data, axis.key, axis.values[i])
            leaves += _axis_leaves(axis.key, axis.values[i])
        _drop_foreign_params(cfg_data, leaves, base_algorithm)
        settings = {a.key: a.labels[i] for a, i in zip(axes, combo, strict=True)}
        cfg = _validated(cfg_data, axes, combo, settings)
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
    return runs
