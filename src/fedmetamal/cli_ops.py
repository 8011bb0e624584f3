"""Operator commands against a running server: ``runs``, ``participants`` and ``token``.

Each is one ControlService call through :class:`fedmetamal.net.control_client.ControlClient`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from fedmetamal.cli_common import config_from_flags

#: Results go to stdout (pipe them); the shared console (stderr) is for progress and errors.
console = Console()

runs_app = typer.Typer(
    help="Create, start, watch and control runs on a server.", no_args_is_help=True
)
participants_app = typer.Typer(help="List, approve and revoke participants.", no_args_is_help=True)
models_app = typer.Typer(
    help="List a server's model versions and export them (ONNX, safetensors).",
    no_args_is_help=True,
)
token_app = typer.Typer(help="Create join tokens for new participants.", no_args_is_help=True)

ServerOpt = Annotated[str, typer.Option(help="HOST:PORT of the server.")]
TokenOpt = Annotated[
    str | None,
    typer.Option("--operator-token", help="Operator token (or FEDMETAMAL_OPERATOR_TOKEN)."),
]
TokenFileOpt = Annotated[
    Path | None, typer.Option("--operator-token-file", help="File holding the operator token.")
]
CaOpt = Annotated[Path | None, typer.Option(help="CA certificate of the server (TLS).")]
InsecureOpt = Annotated[bool, typer.Option("--insecure", help="Plaintext to a loopback server.")]
CertOpt = Annotated[
    Path | None, typer.Option("--client-cert", help="Client certificate (mutual TLS).")
]
KeyOpt = Annotated[Path | None, typer.Option("--client-key", help="Client key (mutual TLS).")]


def _client(
    server: str,
    token: str | None,
    token_file: Path | None,
    ca: Path | None,
    insecure: bool,
    client_cert: Path | None = None,
    client_key: Path | None = None,
):
    from fedmetamal.net.control_client import ControlClient, operator_token

    return ControlClient(
        server, operator_token(token, token_file), ca, insecure, client_cert, client_key
    )


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "-"


# -- runs ------------------------------------------------------------------------------------
@runs_app.command("list")
def runs_list(
    server: ServerOpt = "localhost:50051",
    operator_token: TokenOpt = None,
    operator_token_file: TokenFileOpt = None,
    ca: CaOpt = None,
    insecure: InsecureOpt = False,
    client_cert: CertOpt = None,
    client_key: KeyOpt = None,
) -> None:
    """Every run with its state and progress."""
    with _client(
        server, operator_token, operator_token_file, ca, insecure, client_cert, client_key
    ) as c:
        table = Table("run", "name", "state", "round", "participants", "roc_auc", "created")
        for r in c.list_runs():
            auc = r.latest_metrics.get("roc_auc")
            table.add_row(
                r.run_id,
                r.name,
                r.state,
                f"{r.round}/{r.rounds}",
                str(len(r.participant_ids)),
                f"{auc:.4f}" if auc is not None else "-",
                _when(r.created_unix),
            )
        console.print(table)


@runs_app.command("create")
def runs_create(
    config: Annotated[Path | None, typer.Option(help="Run configuration (YAML).")] = None,
    name: Annotated[str, typer.Option(help="Run name.")] = "",
    participant: Annotated[
        list[str] | None,
        typer.Option(
            "--participant", help="Participant id (repeat; order = slots). Default: all approved."
        ),
    ] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a setting: KEY=VALUE.")
    ] = None,
    start: Annotated[bool, typer.Option("--start", help="Start it at once.")] = False,
    simulated: Annotated[
        int,
        typer.Option(
            "--simulated",
            help="Run the simulation on the server with this many simulated participants "
            "instead of real ones.",
        ),
    ] = 0,
    server: ServerOpt = "localhost:50051",
    operator_token: TokenOpt = None,
    operator_token_file: TokenFileOpt = None,
    ca: CaOpt = None,
    insecure: InsecureOpt = False,
    client_cert: CertOpt = None,
    client_key: KeyOpt = None,
) -> None:
    """Create a run from a configuration (the server checks it)."""
    cfg = config_from_flags(config, {}, sets=set_ or [])
    with _client(
        server, operator_token, operator_token_file, ca, insecure, client_cert, client_key
    ) as c:
        run = c.create_run(
            name, cfg.model_dump_json(), participant or [], start, simulated_participants=simulated
        )
    console.print(f"{run.run_id} {run.state}")


def _action(
    action: str,
    run_id: str,
    server: str,
    token: str | None,
    token_file: Path | None,
    ca: Path | None,
    insecure: bool,
    client_cert: Path | None = None,
    client_key: Path | None = None,
) -> None:
    with _client(server, token, token_file, ca, insecure, client_cert, client_key) as c:
        run = c.run_action(action, run_id)
    console.print(f"{run.run_id} {run.state} (round {run.round}/{run.rounds})")


@runs_app.command("start")
def runs_start(
    run_id: str,
    server: ServerOpt = "localhost:50051",
    operator_token: TokenOpt = None,
    operator_token_file: TokenFileOpt = None,
    ca: CaOpt = None,
    insecure: InsecureOpt = False,
    client_cert: CertOpt = None,
    client_key: KeyOpt = None,
) -> None:
    """Start a created run."""
    _action(
        "Start",
        run_id,
        server,
        operator_token,
        operator_token_file,
        ca,
        insecure,
        client_cert,
        client_key,
    )


@runs_app.command("pause")
def runs_pause(
    run_id: str,
    server: ServerOpt = "localhost:50051",
    operator_token: TokenOpt = None,
    operator_token_file: TokenFileOpt = None,
    ca: CaOpt = None,
    insecure: InsecureOpt = False,
    client_cert: CertOpt = None,
    client_key: KeyOpt = None,
) -> None:
    """Pause a run after its current round."""
    _action(
        "Pause",
        run_id,
        server,
        operator_token,
        operator_token_file,
        ca,
        insecure,
        client_cert,
        client_key,
    )


@runs_app.command("resume")
def runs_resume(
    run_id: str,
    server: ServerOpt = "localhost:50051",
    operator_token: TokenOpt = None,
    operator_token_file: TokenFileOpt = None,
    ca: CaOpt = None,
    insecure: InsecureOpt = False,
    client_cert: CertOpt = None,
    client_key: KeyOpt = None,
) -> None:
    """Resume a paused run."""
    _action(
        "Resume",
        run_id,
        server,
        operator_token,
        operator_token_file,
        ca,
        insecure,
        client_cert,
        client_key,
    )


@runs_app.command("stop")
def runs_stop(
    run_id: str,
    server: ServerOpt = "localhost:50051",
    operator_token: TokenOpt = None,
    operator_token_file: TokenFileOpt = None,
    ca: CaOpt = None,
    insecure: InsecureOpt = False,
    client_cert: CertOpt = None,
    client_key: KeyOpt = None,
) -> None:
    """Stop a run (its completed rounds and models stay)."""
    _action(
        "Stop",
        run_id,
        server,
        operator_token,
        operator_token_file,
        ca,
        insecure,
        client_cert,
        client_key,
    )


@runs_app.command("watch")
def runs_watch(
    run_id: Annotated[str, typer.Argument(help="Run to watch; omit to watch everything.")] = "",
    after: Annotated[int, typer.Option(help="Replay events after this sequence number.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per event.")] = False,
    server: ServerOpt = "localhost:50051",
    operator_token: TokenOpt = None,
    operator_token_file: TokenFileOpt = None,
    ca: CaOpt = None,
    insecure: InsecureOpt = False,
    client_cert: CertOpt = None,
    client_key: KeyOpt = None,
) -> None:
    """Print a run's events as they happen (past ones first); ends when the run does."""
    from google.protobuf.json_format import MessageToDict

    with _client(
        server, operator_token, operator_token_file, ca, insecure, client_cert, client_key
    ) as c:
        for ev in c.watch(run_id, after):
            if as_json:
                print(json.dumps(MessageToDict(ev, preserving_proto_field_name=True)), flush=True)
            else:
                style = {"warning": "yellow", "error": "red"}.get(ev.level, "")
                line = f"{_when(ev.time_unix)} [{ev.kind}] {ev.message}"
                console.print(f"[{style}]{line}[/]" if style else line, highlight=False)


# -- participants ------------------------------------------------------------------------------
@participants_app.command("list")
def participants_list(
    server: ServerOpt = "localhost:50051",
    operator_token: TokenOpt = None,
    operator_token_file: TokenFileOpt = None,
    ca: CaOpt = None,
    insecure: InsecureOpt = False,
    client_cert: CertOpt = None,
    client_key: KeyOpt = None,
) -> None:
    """Enrolled participants: approval state, presence, data summary."""
    with _client(
        server, operator_token, operator_token_file, ca, insecure, client_cert, client_key
    ) as c:
        table = Table(
            "participant",
            "name",
            "state",
            "online",
            "activity",
            "train rows",
            "malware share",
            "last seen",
        )
        for p in c.list_participants():
            s = p.summary
            mal = s.label_counts.get("malware", 0)
            share = f"{mal / s.n_train:.1%}" if s.n_train else "-"
            table.add_row(
                p.participant_id,
                p.name,
                p.state,
                "yes" if p.online else "no",
                p.activity,
                str(s.n_train or "-"),
                share,
                _when(p.last_seen_unix),
            )
        console.print(table)


@participants_app.command("approve")
def participants_approve(
    participant_id: str,
    server: ServerOpt = "localhost:50051",
    operator_token: TokenOpt = None,
    operator_token_file: TokenFileOpt = None,
    ca: CaOpt = None,
    insecure: InsecureOpt = False,
    client_cert: CertOpt = None,
    client_key: KeyOpt = None,
) -> None:
    """Let a participant be sampled into rounds."""
    with _client(
        server, operator_token, operator_token_file, ca, insecure, client_cert, client_key
    ) as c:
        p = c.approve(participant_id)
    console.print(f"{p.participant_id} {p.state}")


@participants_app.command("revoke")
def participants_revoke(
    participant_id: str,
    server: ServerOpt = "localhost:50051",
    operator_token: TokenOpt = None,
    operator_token_file: TokenFileOpt = None,
    ca: CaOpt = None,
    insecure: InsecureOpt = False,
    client_cert: CertOpt = None,
    client_key: KeyOpt = None,
) -> None:
    """Refuse every further call of a participant (final)."""
    with _client(
        server, operator_token, operator_token_file, ca, insecure, client_cert, client_key
    ) as c:
        p = c.revoke(participant_id)
    console.print(f"{p.participant_id} {p.state}")


# -- tokens ------------------------------------------------------------------------------------
@token_app.command("create")
def token_create(
    ttl: Annotated[
        float, typer.Option(help="Seconds the token stays valid (0: server default, 24 h).")
    ] = 0.0,
    auto_approve: Annotated[
        bool, typer.Option("--auto-approve", help="Participants using it skip approval.")
    ] = False,
    note: Annotated[str, typer.Option(help="A note stored with the token.")] = "",
    server: ServerOpt = "localhost:50051",
    operator_token: TokenOpt = None,
    operator_token_file: TokenFileOpt = None,
    ca: CaOpt = None,
    insecure: InsecureOpt = False,
    client_cert: CertOpt = None,
    client_key: KeyOpt = None,
) -> None:
    """A single-use join token, and the exact command a participant runs with it."""
    with _client(
        server, operator_token, operator_token_file, ca, insecure, client_cert, client_key
    ) as c:
        t = c.create_token(ttl, auto_approve, note)
    console.print(f"token   {t.token}\nexpires {_when(t.expires_unix)}")
    console.print(f"run on the participant:\n  {t.command}", highlight=False, soft_wrap=True)


# -- models ------------------------------------------------------------------------------------
@models_app.command("list")
def models_list(
    run_id: Annotated[str, typer.Argument(help="Only this run's models.")] = "",
    server: ServerOpt = "localhost:50051",
    operator_token: TokenOpt = None,
    operator_token_file: TokenFileOpt = None,
    ca: CaOpt = None,
    insecure: InsecureOpt = False,
    client_cert: CertOpt = None,
    client_key: KeyOpt = None,
) -> None:
    """Model versions (one per completed round) with their metrics."""
    with _client(
        server, operator_token, operator_token_file, ca, insecure, client_cert, client_key
    ) as c:
        table = Table("model", "run", "round", "params", "roc_auc", "created")
        for m in c.list_models(run_id):
            auc = m.metrics.get("roc_auc")
            table.add_row(
                m.model_id,
                m.run_id,
                str(m.round),
                str(m.num_params),
                f"{auc:.4f}" if auc is not None else "-",
                _when(m.created_unix),
            )
        console.print(table)


@models_app.command("export")
def models_export(
    model_id: Annotated[str, typer.Argument(help="Model version (see `models list`).")],
    fmt: Annotated[
        str, typer.Option("--format", help="onnx (for scan and browsers) or safetensors.")
    ] = "onnx",
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="File to write (default: the server's name)."),
    ] = None,
    server: ServerOpt = "localhost:50051",
    operator_token: TokenOpt = None,
    operator_token_file: TokenFileOpt = None,
    ca: CaOpt = None,
    insecure: InsecureOpt = False,
    client_cert: CertOpt = None,
    client_key: KeyOpt = None,
) -> None:
    """Download a model version; an ONNX export is what `fedmetamal scan --model` reads."""
    from fedmetamal.net.identity import write_file_atomic

    with _client(
        server, operator_token, operator_token_file, ca, insecure, client_cert, client_key
    ) as c:
        header, data = c.export_model(model_id, fmt)
    path = output or Path(header.filename)
    write_file_atomic(path, data)
    console.print(f"wrote {path} ({len(data)} bytes)")
