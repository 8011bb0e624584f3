"""``fedmetamal federation``: look at a federation's heterogeneity, and test the measures.

``inspect`` builds one federation as ``simulate`` would and shows how skewed it is (tables and a
figure); ``validate-measure`` runs the study that relates the measures to FedAvg's accuracy drop.
Both are thin: parse flags, call :mod:`fedmetamal.api` / :mod:`fedmetamal.experiments`, print.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

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
    progress_bar,
    titled_table,
)

federation_app = typer.Typer(
    help="Measure how non-IID a federation is, and validate the measures.",
    no_args_is_help=True,
)

#: With more clients than this, ``inspect`` shows only the first and last rows (unless --all).
MAX_ROWS = 100
HEAD_ROWS, TAIL_ROWS = 10, 5


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "dataset"


def _num(v: Any) -> str:
    f = float("nan") if v is None else float(v)
    return "n/a" if f != f else f"{f:.3f}"


def _defined(clients: list[dict[str, Any]], key: str) -> bool:
    return any(c.get(key) is not None and c[key] == c[key] for c in clients)


def client_table(clients: list[dict[str, Any]], measures: list[str], show_all: bool) -> Table:
    """Per-client rows; with more than ``MAX_ROWS`` clients the middle rows are elided.
    Measures undefined for every client (family ones without metadata) are left out."""
    shown = [m for m in measures if _defined(clients, m)]
    hidden = [m for m in measures if m not in shown]
    caption = f"not defined for this data: {', '.join(hidden)}" if hidden else None
    table = Table(title="clients", title_justify="left", caption=caption, caption_justify="left")
    table.add_column("client", justify="right")
    table.add_column("size", justify="right")
    table.add_column("malware\nshare", justify="right")
    table.add_column("top families", min_width=24)
    for m in shown:
        table.add_column(m.replace("_", "\n", 1), justify="right")
    rows = clients
    elided = 0
    if not show_all and len(clients) > MAX_ROWS:
        rows = clients[:HEAD_ROWS] + clients[-TAIL_ROWS:]
        elided = len(clients) - len(rows)
    for i, c in enumerate(rows):
        if elided and i == HEAD_ROWS:
            table.add_row("…", "", "", f"[dim]{elided} clients elided (--all shows them)[/]")
        fams = ", ".join(f"{name} ({count})" for name, count in c.get("top_families") or [])
        table.add_row(
            str(c["client"]),
            str(c["size"]),
            _num(c.get("malware_share")),
            fams or "-",
            *(_num(c.get(m)) for m in shown),
        )
    return table


def federation_table(values: dict[str, float], descriptions: dict[str, str]) -> Table:
    """One row per federation-level measure: its value and what it measures."""
    table = titled_table("federation", ["measure", "value", "what it measures"], {"value"})
    for name, text in descriptions.items():
        table.add_row(name, _num(values.get(name)), text)
    return table


@federation_app.command()
def inspect(
    config: ConfigOpt = None,
    dataset: DatasetOpt = None,
    label_column: LabelColumnOpt = None,
    partition: PartitionOpt = None,
    alpha: AlphaOpt = None,
    clients: ClientsOpt = None,
    k: Annotated[
        int | None, typer.Option("--k", help="label-quantity: classes per client.")
    ] = None,
    seed: SeedOpt = None,
    set_: SetOpt = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Figure path without suffix (default runs/inspect/<data>-<partition>)."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the measures as JSON (only that on stdout).")
    ] = False,
    no_figure: Annotated[bool, typer.Option("--no-figure", help="Write no figure.")] = False,
    show_all: Annotated[
        bool, typer.Option("--all", help=f"Show every client, even beyond {MAX_ROWS}.")
    ] = False,
) -> None:
    """Build a federation as `simulate` would and show how non-IID it is."""
    from fedmetamal.api import build_federation, load_data
    from fedmetamal.data.heterogeneity import (
        CLIENT_MEASURES,
        FEDERATION_MEASURES,
        measure_federation,
    )
    from fedmetamal.data.semi import reveal_labels
    from fedmetamal.experiments.noniid_study_plan import partition_label, partition_slug

    flags: dict[str, Any] = {
        "dataset.source": dataset,
        "dataset.label_column": label_column,
        "partition.kind": partition,
        "partition.alpha": alpha,
        "partition.clients": clients,
        "partition.k": k,
        "seed": seed,
    }
    cfg = config_from_flags(config, flags, [], set_ or [])
    console.print(f"loading {cfg.dataset.source} …", highlight=False)
    ds = load_data(cfg)
    console.print(f"partitioning {ds.n_samples} samples over {cfg.partition.clients} clients …")
    fed = build_federation(cfg, ds)
    # measure the partition: labels a semi-supervised scenario hid still shape the data
    report = measure_federation(reveal_labels(fed))

    paths: list[Path] = []
    if not no_figure:
        from fedmetamal.experiments.noniid_figure import plot_federation

        stem = out or Path("runs/inspect") / (
            f"{_slug(ds.name)}-{partition_slug(cfg.partition, cfg.seed)}"
        )
        title = (
            f"{ds.name}: {partition_label(cfg.partition)}, {fed.n_clients} clients, seed {cfg.seed}"
        )
        paths = plot_federation(report, stem, title)

    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
        for p in paths:
            console.print(f"figure: {p}", highlight=False)
        return
    stdout = Console()
    stdout.print(client_table(report.clients, list(CLIENT_MEASURES), show_all))
    stdout.print(federation_table(report.federation, FEDERATION_MEASURES))
    for p in paths:
        stdout.print(f"figure: [bold]{p}[/]", highlight=False)


@federation_app.command("validate-measure")
def validate_measure(
    config: ConfigOpt = None,
    dataset: Annotated[
        str | None,
        typer.Option(
            help="'synthetic', 'pe-headers', or a CSV/Parquet/NPZ/EMBER path "
            "[default: the config's, else synthetic]."
        ),
    ] = None,
    clients: Annotated[
        int | None,
        typer.Option(help="Clients of every federation [default: the config's, else 10]."),
    ] = None,
    rounds: Annotated[
        int | None, typer.Option(help="Federated rounds (default: the config's).")
    ] = None,
    preset: Annotated[
        str,
        typer.Option(
            help="full (52 federations, 48 without family metadata) or quick (9 or 8, a smoke "
            "check; a subset of full, so a full study in the same folder reuses it)."
        ),
    ] = "full",
    seeds: Annotated[int, typer.Option("--seeds", help="Seeds of the IID baseline.", min=1)] = 3,
    out: Annotated[
        Path | None,
        typer.Option(help="Study folder (default runs/noniid-validation/<dataset>)."),
    ] = None,
    set_: SetOpt = None,
    jobs: Annotated[int, typer.Option(help="Federations trained in parallel.", min=1)] = 1,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Train FedAvg on many federations and test whether the measures predict its AUC drop."""
    from fedmetamal.experiments.noniid_study_plan import PRESETS
    from fedmetamal.experiments.noniid_validation import StudyEvent, run_validation

    if preset not in PRESETS:
        from fedmetamal.errors import ConfigError

        raise ConfigError(f"Unknown preset '{preset}'.", f"Use one of: {', '.join(PRESETS)}.")
    flags = {"dataset.source": dataset, "partition.clients": clients, "training.rounds": rounds}
    cfg = config_from_flags(config, flags, [], set_ or [])
    source = cfg.dataset.source
    folder = out or Path("runs/noniid-validation") / _slug(Path(source).stem or source)

    progress = progress_bar(console, disable=quiet)
    task = progress.add_task("loading data", total=None, latest="")
    waiting = f"training ({jobs} workers)" if jobs > 1 else None

    def on_progress(ev: StudyEvent) -> None:
        progress.update(task, total=ev.total, completed=ev.done)
        if ev.status == "start":
            progress.update(task, description=ev.description)
        elif waiting:
            progress.update(task, description=waiting)
        elif ev.status == "trained" and ev.roc_auc is not None:
            progress.update(task, latest=f"last AUC {ev.roc_auc:.4f}")
        elif ev.status in ("skipped", "failed"):
            progress.console.print(
                f"[yellow]{ev.status}[/] {ev.description}: {ev.reason}", highlight=False
            )

    t0 = time.perf_counter()
    with progress:
        result = run_validation(cfg, preset, folder, seeds, on_progress=on_progress, jobs=jobs)
    seconds = time.perf_counter() - t0
    _print_study(result, seconds)


def _print_study(result: Any, seconds: float) -> None:
    stdout = Console()
    corr, base = result.correlations, result.baseline
    title = (
        f"measures vs FedAvg's drop ({len(result.federations)} federations, "
        f"{len(result.skipped)} skipped; IID AUC {base['roc_auc_mean']:.4f} ± "
        f"{base['roc_auc_std']:.4f})"
    )
    heads = ["ρ AUC", "p", "τ AUC", "p", "ρ acc", "τ acc"]
    table = titled_table(title, ["measure", "n", *heads], {"n", *heads})
    for r in corr.to_dict("records"):
        keys = (
            "spearman_auc",
            "spearman_auc_p",
            "kendall_auc",
            "kendall_auc_p",
            "spearman_accuracy",
            "kendall_accuracy",
        )
        cells = ["n/a"] * len(keys) if r["note"] == "n/a" else [_num(r[k]) for k in keys]
        table.add_row(r["measure"], str(r["n"]), *cells)
    stdout.print(table)
    stdout.print(f"target: [bold]{result.summary['verdict']}[/]", highlight=False)
    stdout.print(
        f"{result.trained} trainings run now, {result.reused} results reused from "
        f"results.jsonl; {seconds:.1f} s",
        highlight=False,
    )
    stdout.print(f"outputs in [bold]{result.out_dir}[/]:", highlight=False)
    for f in result.files:
        stdout.print(f"  {f}", highlight=False, soft_wrap=True)
