"""Pieces every command group shares: the error console, the options that build a federation,
``KEY=VALUE`` flag parsing, and the look of progress bars and tables.

An option used by several commands is defined once here, so its name and help cannot drift
apart between ``simulate`` and ``federation inspect``.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from fedmetamal.config import ConfigError, RunConfig, build_config, load_config, set_dotted

console = Console(stderr=True)

# --------------------------------------------------------------------------- shared options

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="YAML run configuration.")]
DatasetOpt = Annotated[
    str | None,
    typer.Option("--dataset", help="'synthetic', 'pe-headers', or a CSV/Parquet/NPZ/EMBER path."),
]
LabelColumnOpt = Annotated[
    str | None, typer.Option("--label-column", help="Label column of a table.")
]
PartitionOpt = Annotated[
    str | None,
    typer.Option(
        "--partition",
        help="iid, dirichlet, label-quantity, family-dirichlet, quantity, "
        "feature-noise, feature-subset, temporal, natural.",
    ),
]
AlphaOpt = Annotated[float | None, typer.Option("--alpha", help="Dirichlet concentration.")]
ClientsOpt = Annotated[int | None, typer.Option("--clients", help="Number of clients.")]
SeedOpt = Annotated[int | None, typer.Option("--seed", help="Seed of every random choice.")]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="Any config field, dotted: --set partition.min_client_size=5"),
]


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


# --------------------------------------------------------------------------- how output looks


def progress_bar(
    out: Console, unit: str | None = None, disable: bool = False, transient: bool = False
) -> Progress:
    """The progress bar every long command shows: what it does, done/total ``unit``, time, ETA,
    and a free text field ``latest`` (last result, or what is running)."""
    columns: list[ProgressColumn | str] = [
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
    ]
    if unit:
        columns.append(TextColumn(unit))
    columns += [
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[latest]}"),
    ]
    return Progress(*columns, console=out, disable=disable, transient=transient)


def titled_table(
    title: str, columns: Sequence[str], numeric: Collection[str] = (), caption: str | None = None
) -> Table:
    """A table titled on the left, with the ``numeric`` columns right-aligned, as all commands
    print them."""
    table = Table(title=title, title_justify="left", caption=caption, caption_justify="left")
    for name in columns:
        table.add_column(name, justify="right" if name in numeric else "left")
    return table
