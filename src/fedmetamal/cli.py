"""The ``fedmetamal`` command: parse, call the API, print. No logic of its own."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from fedmetamal import __version__
from fedmetamal.cli_common import (
    AlphaOpt,
    ClientsOpt,
    ConfigOpt,
    DatasetOpt,
    LabelColumnOpt,
    PartitionOpt,
    SeedOpt,
    SetOpt,
    config_from_flags,
    console,
)
from fedmetamal.cli_data import data_app
from fedmetamal.cli_demo import demo
from fedmetamal.cli_experiment import experiment_app
from fedmetamal.cli_extract import extract
from fedmetamal.cli_federation import federation_app
from fedmetamal.cli_ops import models_app, participants_app, runs_app, token_app
from fedmetamal.cli_scan import scan
from fedmetamal.cli_serve import join, serve
from fedmetamal.cli_users import users_app
from fedmetamal.config import ConfigError, build_config
from fedmetamal.errors import FedMetaMalError

app = typer.Typer(
    help="FedMetaMal: federated learning on malware data.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(data_app, name="data")
app.add_typer(federation_app, name="federation")
app.add_typer(experiment_app, name="experiment")
app.command()(extract)
app.command()(scan)
app.command()(serve)
app.command()(join)
app.command()(demo)
app.add_typer(runs_app, name="runs")
app.add_typer(participants_app, name="participants")
app.add_typer(token_app, name="token")
app.add_typer(models_app, name="models")
app.add_typer(users_app, name="users")

_state = {"debug": False}


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
) -> None:
    _state["debug"] = debug


@app.command()
def simulate(
    config: ConfigOpt = None,
    dataset: DatasetOpt = None,
    label_column: LabelColumnOpt = None,
    data_format: Annotated[
        str | None,
        typer.Option("--format", help="auto, csv, parquet, npz, ember or fedmetamal."),
    ] = None,
    metadata_column: Annotated[
        list[str] | None,
        typer.Option("--metadata-column", help="Extra column to keep as per-sample metadata."),
    ] = None,
    partition: PartitionOpt = None,
    alpha: AlphaOpt = None,
    clients: ClientsOpt = None,
    algorithm: Annotated[
        str | None, typer.Option(help="Algorithm (see `fedmetamal algorithms`).")
    ] = None,
    rounds: Annotated[int | None, typer.Option(help="Federated rounds.")] = None,
    local_epochs: Annotated[float | None, typer.Option(help="Local epochs per round.")] = None,
    local_steps: Annotated[int | None, typer.Option(help="Fixed local steps per round.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Local batch size.")] = None,
    client_lr: Annotated[float | None, typer.Option(help="Client learning rate.")] = None,
    server_lr: Annotated[float | None, typer.Option(help="Server learning rate.")] = None,
    client_fraction: Annotated[
        float | None, typer.Option(help="Share of clients sampled per round.")
    ] = None,
    model: Annotated[str | None, typer.Option(help="mlp or logreg.")] = None,
    hidden: Annotated[
        str | None, typer.Option(help="MLP hidden widths, comma-separated, e.g. 256,64.")
    ] = None,
    seed: SeedOpt = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="Algorithm parameter KEY=VALUE.")
    ] = None,
    set_: SetOpt = None,
    output: Annotated[Path | None, typer.Option(help="Parent folder of run directories.")] = None,
    name: Annotated[str | None, typer.Option(help="Run directory name.")] = None,
    no_outputs: Annotated[
        bool, typer.Option("--no-outputs", help="Write no run directory.")
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bar or tables.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Simulate a federation in one process and train a detector on it."""
    flags: dict[str, Any] = {
        "dataset.source": dataset,
        "dataset.label_column": label_column,
        "dataset.format": data_format,
        "dataset.metadata_columns": metadata_column or None,
        "partition.kind": partition,
        "partition.alpha": alpha,
        "partition.clients": clients,
        "algorithm.name": algorithm,
        "algorithm.server_lr": server_lr,
        "training.rounds": rounds,
        "training.local_epochs": local_epochs,
        "training.local_steps": local_steps,
        "training.batch_size": batch_size,
        "training.client_lr": client_lr,
        "training.client_fraction": client_fraction,
        "model.kind": model,
        "seed": seed,
        "output.dir": str(output) if output else None,
        "output.name": name,
    }
    if hidden is not None:
        try:
            flags["model.hidden"] = [int(w) for w in hidden.split(",") if w.strip()]
        except ValueError:
            raise ConfigError(f"--hidden expects integers like 256,64, got '{hidden}'.") from None
    cfg = config_from_flags(config, flags, param or [], set_ or [])

    from fedmetamal.api import simulate as run_simulation
    from fedmetamal.cli_output import Reporter

    reporter = Reporter(console, cfg, quiet=quiet or as_json)
    with reporter:
        result = run_simulation(
            cfg, on_round=reporter.round, on_stage=reporter.stage, write_outputs=not no_outputs
        )
    if as_json:
        print(json.dumps(result.summary(), default=str, indent=2))
    elif quiet:
        auc = result.final_metrics.get("roc_auc", float("nan"))
        print(f"done: ROC AUC {auc:.4f}" + (f", run {result.run_dir}" if result.run_dir else ""))
    else:
        reporter.final(result)


@app.command()
def algorithms() -> None:
    """List the federated algorithms and their parameters."""
    from rich.table import Table

    from fedmetamal.fl.registry import ALGORITHMS

    table = Table("name", "what it does", "parameters (default)", "reference")
    for name, cls in ALGORITHMS.items():
        params = ", ".join(f"{k}={f.default}" for k, f in cls.Params.model_fields.items())
        table.add_row(name, cls.summary, params or "-", cls.reference)
    Console().print(table)


@app.command("config")
def show_config(
    config: Annotated[Path | None, typer.Argument(help="Validate and resolve this file.")] = None,
) -> None:
    """Print a configuration with every default filled in (the defaults when no file given)."""
    from fedmetamal.config import dump_config, load_config

    cfg = load_config(config) if config else build_config({})
    print(dump_config(cfg), end="")


@app.command()
def version() -> None:
    """Print the version."""
    print(__version__)


def run(argv: Sequence[str]) -> int:
    """Run ``fedmetamal ARGV`` in this process and return its exit status (for embedding the
    command in another program, and for tests)."""
    saved = sys.argv
    sys.argv = ["fedmetamal", *argv]
    try:
        main()
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    finally:
        sys.argv = saved
    return 0


def main() -> None:
    try:
        app(standalone_mode=False)
    except FedMetaMalError as err:
        if _state["debug"]:
            raise
        console.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        console.print("interrupted")
        sys.exit(130)
    except (typer.Exit, typer.Abort) as exc:
        sys.exit(getattr(exc, "exit_code", 1))
    except SystemExit:
        raise
    except typer.exceptions.TyperException as err:  # usage errors: unknown option, bad type
        show = getattr(err, "show", None)
        if callable(show):
            show()
        else:
            console.print(f"[bold red]error:[/] {err.format_message()}", highlight=False)
        sys.exit(err.exit_code)
    except Exception as err:
        if _state["debug"]:
            raise
        console.print(f"[bold red]internal error:[/] {type(err).__name__}: {err}")
        console.print("Run again with --debug for the traceback, and please report it.")
        sys.exit(1)
