"""The suite file: its schema, reading it, and checking its suite-level settings.

Unknown keys are errors, as in run configs. The base configuration (``base:`` file, then the
inline ``config:`` merged over it) is validated on its own first, so a mistake there is reported
as such rather than once per run.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fedmetamal.config import build_config, format_validation_error, read_yaml_mapping
from fedmetamal.errors import ConfigError
from fedmetamal.experiments.dotted_keys import deep_merge, expand_dotted
from fedmetamal.experiments.suite_layout import SEED_AXIS

#: Metrics a suite reports when its file names none.
DEFAULT_METRICS: tuple[str, ...] = ("roc_auc", "accuracy", "f1", "tpr_at_1pct_fpr")


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


def read_spec(path: Path) -> SuiteSpec:
    """The suite file at ``path``, checked against the schema."""
    data = read_yaml_mapping(path, "Suite file")
    try:
        return SuiteSpec.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, f"suite file '{path}'")) from None


def suite_name(spec: SuiteSpec, path: Path) -> str:
    """The suite's name (default: the file's stem); it names a folder, so it must be one."""
    name = (spec.name if spec.name is not None else path.stem).strip()
    if not name or name in (".", "..") or any(c in name for c in "/\\\0"):
        raise ConfigError(
            f"Suite name {name!r} (in '{path}') cannot name a folder.",
            "Use letters, digits, '-', '_' or '.', e.g. name: noniid.",
        )
    return name


def check_parallel(value: int | str) -> int | Literal["auto"]:
    """``parallel``: a number of runs at once (>= 1) or ``auto``."""
    if value == "auto":
        return "auto"
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    raise ConfigError(
        f"parallel must be a number of runs at once (>= 1) or 'auto', got {value!r}.",
        "e.g. parallel: auto",
    )


def check_grid(spec: SuiteSpec, path: Path) -> None:
    """A ConfigError for an empty grid or an axis without values."""
    if not spec.grid:
        raise ConfigError(
            f"Suite file '{path}' has an empty grid.",
            "Give at least one axis, e.g. seed: [0, 1, 2].",
        )
    for key, values in spec.grid.items():
        if not values:
            raise ConfigError(f"Grid axis '{key}' has no values.", "Give it at least one value.")


def base_config(spec: SuiteSpec, path: Path) -> dict[str, Any]:
    """The base file (relative to the suite file) with ``config`` merged over it, validated."""
    base: dict[str, Any] = {}
    if spec.base is not None:
        base_path = (path.parent / spec.base).resolve()
        base = expand_dotted(read_yaml_mapping(base_path, "Base config file"))
        build_config(base, f"base config file '{base_path}'")
    base = deep_merge(base, expand_dotted(spec.config))
    build_config(base, f"suite 'config' (merged over base) in '{path}'")
    return base


def method_axis(requested: str | None, keys: list[str]) -> str:
    """The axis compared side by side: ``methods``, else the algorithm axis, else the first
    axis that is not the seed."""
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


def check_metrics(metrics: list[str]) -> list[str]:
    """The suite's metrics, each a known one, without repeats (order kept)."""
    from fedmetamal.fl.metrics import METRIC_NAMES, SEMI_METRIC_NAMES
    from fedmetamal.privacy.accountant import PRIVACY_METRIC_NAMES
    from fedmetamal.sim.attacks import ATTACK_METRIC_NAMES

    known = (*METRIC_NAMES, *SEMI_METRIC_NAMES, *ATTACK_METRIC_NAMES, *PRIVACY_METRIC_NAMES)
    if not metrics:
        raise ConfigError("metrics is empty.", f"Name at least one of: {', '.join(known)}.")
    for m in metrics:
        if m not in known:
            close = difflib.get_close_matches(m, known, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ConfigError(
                f"metrics: '{m}' is not a metric.{hint}", f"Known: {', '.join(known)}."
            )
    return list(dict.fromkeys(metrics))
