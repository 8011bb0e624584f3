"""Pieces every command group shares: the error console and ``KEY=VALUE`` flag parsing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from fedmetamal.config import ConfigError, RunConfig, build_config, load_config, set_dotted

console = Console(stderr=True)


def parse_value(raw: str) -> Any:
    """A flag value as YAML would read it (numbers, booleans, lists), else the string."""
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def overrides(pairs: list[str], flag: str) -> dict[str, Any]:
    """``["a.b=1", ...]`` as ``{"a.b": 1}``; a clear error for an item without ``=``."""
    out: dict[str, Any] = {}
    for item in pairs:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{flag} expects KEY=VALUE, got '{item}'.", f"e.g. {flag} mu=0.01")
        out[key.strip()] = parse_value(value)
    return out


def config_from_flags(
    config: Path | None,
    flags: dict[str, Any],
    params: list[str] | None = None,
    sets: list[str] | None = None,
) -> RunConfig:
    """One run config from a YAML file, then command flags (``None`` = not given), then
    ``--param`` algorithm parameters, then ``--set`` dotted overrides, in that order."""
    data: dict[str, Any] = {}
    if config is not None:
        data = load_config(config).model_dump(exclude_unset=True)
    algorithm = flags.get("algorithm.name")
    if algorithm is not None and data.get("algorithm", {}).get("name") not in (None, algorithm):
        data["algorithm"].pop("params", None)  # the file's parameters belong to its algorithm
    for key, value in flags.items():
        if value is not None:
            set_dotted(data, key, value)
    for key, value in overrides(params or [], "--param").items():
        set_dotted(data, f"algorithm.params.{key}", value)
    for key, value in overrides(sets or [], "--set").items():
        set_dotted(data, key, value)
    return build_config(data, origin="settings")
