"""Operator commands against a running server: ``runs``, ``participants``, ``models`` and
``token``.

Each is one ControlService call through :class:`fedmetamal.net.control_client.ControlClient`;
:func:`connected` gives every command the same connection options (server, operator token,
TLS files) and hands it the open client.
"""

from __future__ import annotations

import functools
import inspect
import json
import time
import typing
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from fedmetamal.cli_common import config_from_flags

if TYPE_CHECKING:
    from fedmetamal.net.control_client import ControlClient

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

#: The connection options of every operator command: (parameter, type with its option, default).
CONNECTION: list[tuple[str, Any, Any]] = [
    ("server", Annotated[str, typer.Option(help="HOST:PORT of the server.")], "localhost:50051"),
    (
        "operator_token",
        Annotated[
            str | None,
            typer.Option("--operator-token", help="Operator token (or FEDMETAMAL_OPERATOR_TOKEN)."),
        ],
        None,
    ),
    (
        "operator_token_file",
        Annotated[
            Path | None,
            typer.Option("--operator-token-file", help="File holding the operator token."),
        ],
        None,
    ),
    ("ca", Annotated[Path | None, typer.Option(help="CA certificate of the server (TLS).")], None),
    (
        "insecure",
        Annotated[bool, typer.Option("--insecure", help="Plaintext to a loopback server.")],
        False,
    ),
    (
        "client_cert",
        Annotated[
            Path | None, typer.Option("--client-cert", help="Client certificate (mutual TLS).")
        ],
        None,
    ),
    (
        "client_key",
        Annotated[Path | None, typer.Option("--client-key", help="Client key (mutual TLS).")],
        None,
    ),
]


def connected(fn: Callable[..., None]) -> Callable[..., None]:
    """Add the connection options to a command taking ``client``, and open (and close) the
    client for it: the options are declared once, not once per command."""
    names = [name for name, _, _ in CONNECTION]
    # ``client`` is annotated with a name imported only for type checkers: stand it in
    hints = typing.get_type_hints(fn, localns={"ControlClient": object}, include_extras=True)
    # Typer reads each parameter's option from its annotation: give it the evaluated one
    own = [
        p.replace(annotation=hints[p.name])
        for p in inspect.signature(fn).parameters.values()
        if p.name != "client"
    ]
    extra = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=kind)
        for name, kind, default in CONNECTION
    ]

    @functools.wraps(fn)
    def command(*args: Any, **kwargs: Any) -> None:
        from fedmetamal.net.control_client import ControlClient, operator_token

        o = {name: kwargs.pop(name) for name in names}
        token = operator_token(o["operator_token"], o["operator_token_file"])
        with ControlClient(
            o["server"], token, o["ca"], o["insecure"], o["client_cert"], o["client_key"]
        ) as client:
            fn(*args, client=client, **kwargs)

    hints.pop("client", None)
    command.__annotations__ = {**hints, **{name: kind for name, kind, _ in CONNECTION}}
    command.__signature__ = inspect.Signature(own + extra)  # type: ignore[attr-defined]
    return command


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "-"


# -- runs ------------------------------------------------------------------------------------
@runs_app.command("list")
@connected
def runs_list(client: ControlClient) -> None:
    """Every run with its state and progress."""
    table = Table("run", "name", "mode", "state", "round", "participants", "roc_auc", "created")
    for r in client.list_runs():
        auc = r.latest_metrics.get("roc_auc")
        table.add_row(
            r.run_id,
            r.name,
            r.mode,
            r.state,
            f"{r.round}/{r.rounds}",
            str(len(r.participant_ids)),
            f"{auc:.4f}" if auc is not None else "-",
            _when(r.created_unix),
        )
    console.print(table)


@runs_app.command("create")
@connected
def runs_create(
    client: ControlClient,
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
) -> None:
    """Create a run from a configuration (the server checks it)."""
    cfg = config_from_flags(config, {}, sets=set_ or [])
    run = client.create_run(
        name, cfg.model_dump_json(), participant or [], start, simulated_participants=simulated
    )
    console.print(f"{run.run_id} {run.state}")


RunIdArg = Annotated[str, typer.Argument(help="The run (see `runs list`).")]


def _action(client: ControlClient, action: str, run_id: str) -> None:
    run = client.run_action(action, run_id)
    console.print(f"{run.run_id} {run.state} (round {run.round}/{run.rounds})")


@runs_app.command("start")
@connected
def runs_start(client: ControlClient, run_id: RunIdArg) -> None:
    """Start a created run."""
    _action(client, "Start", run_id)


@runs_app.command("pause")
@connected
def runs_pause(client: ControlClient, run_id: RunIdArg) -> None:
    """Pause a run after its current round."""
    _action(client, "Pause", run_id)


@runs_app.command("resume")
@connected
def runs_resume(client: ControlClient, run_id: RunIdArg) -> None:
    """Resume a paused run."""
    _action(client, "Resume", run_id)


@runs_app.command("stop")
@connected
def runs_stop(client: ControlClient, run_id: RunIdArg) -> None:
    """Stop a run (its completed rounds and models stay)."""
    _action(client, "Stop", run_id)


@runs_app.command("watch")
@connected
def runs_watch(
    client: ControlClient,
    run_id: Annotated[str, typer.Argument(help="Run to watch; omit to watch everything.")] = "",
    after: Annotated[int, typer.Option(help="Replay events after this sequence number.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per event.")] = False,
) -> None:
    """Print a run's events as they happen (past ones first); ends when the run does."""
    from google.protobuf.json_format import MessageToDict

    for ev in client.watch(run_id, after):
        if as_json:
            print(json.dumps(MessageToDict(ev, preserving_proto_field_name=True)), flush=True)
        else:
            style = {"warning": "yellow", "error": "red"}.get(ev.level, "")
            line = f"{_when(ev.time_unix)} [{ev.kind}] {ev.message}"
            console.print(f"[{style}]{line}[/]" if style else line, highlight=False)


@runs_app.command("events")
@connected
def runs_events(
    client: ControlClient,
    run_id: RunIdArg,
    limit: Annotated[int, typer.Option(help="Events to show (at most 1000).")] = 50,
    before: Annotated[
        int, typer.Option(help="Only events older than this sequence number (pages back).")
    ] = 0,
    kind: Annotated[
        list[str] | None,
        typer.Option("--kind", help="Only this kind, e.g. round_finished (repeat for more)."),
    ] = None,
) -> None:
    """A run's stored events, the newest last; unlike `watch` it returns at once."""
    if not 1 <= limit <= 1000:
        raise typer.BadParameter(f"must be 1 to 1000, not {limit}", param_hint="--limit")
    reply = client.list_events(run_id, before, limit, kind or [])
    table = Table("seq", "time", "kind", "round", "participant", "state", "message")
    for ev in reversed(reply.events):
        style = {"warning": "yellow", "error": "red"}.get(ev.level)
        table.add_row(
            str(ev.seq),
            _when(ev.time_unix),
            ev.kind,
            str(ev.round or ""),
            ev.participant_id,
            ev.state,
            ev.message,
            style=style,
        )
    console.print(table)
    if reply.has_more:
        oldest = reply.events[-1].seq
        console.print(f"older events: --before {oldest}", highlight=False)


# -- participants ------------------------------------------------------------------------------
ParticipantArg = Annotated[str, typer.Argument(help="The participant (see `participants list`).")]


@participants_app.command("list")
@connected
def participants_list(client: ControlClient) -> None:
    """Enrolled participants: approval state, presence, data summary."""
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
    for p in client.list_participants():
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
@connected
def participants_approve(client: ControlClient, participant_id: ParticipantArg) -> None:
    """Let a participant be sampled into rounds."""
    p = client.approve(participant_id)
    console.print(f"{p.participant_id} {p.state}")


@participants_app.command("revoke")
@connected
def participants_revoke(client: ControlClient, participant_id: ParticipantArg) -> None:
    """Refuse every further call of a participant (final)."""
    p = client.revoke(participant_id)
    console.print(f"{p.participant_id} {p.state}")


# -- tokens ------------------------------------------------------------------------------------
@token_app.command("create")
@connected
def token_create(
    client: ControlClient,
    ttl: Annotated[
        float, typer.Option(help="Seconds the token stays valid (0: server default, 24 h).")
    ] = 0.0,
    auto_approve: Annotated[
        bool, typer.Option("--auto-approve", help="Participants using it skip approval.")
    ] = False,
    note: Annotated[str, typer.Option(help="A note stored with the token.")] = "",
) -> None:
    """A single-use join token, and the exact command a participant runs with it."""
    t = client.create_token(ttl, auto_approve, note)
    console.print(f"token   {t.token}\nexpires {_when(t.expires_unix)}")
    console.print(f"run on the participant:\n  {t.command}", highlight=False, soft_wrap=True)


# -- models ------------------------------------------------------------------------------------
@models_app.command("list")
@connected
def models_list(
    client: ControlClient,
    run_id: Annotated[str, typer.Argument(help="Only this run's models.")] = "",
) -> None:
    """Model versions (one per completed round) with their metrics."""
    table = Table("model", "run", "round", "params", "roc_auc", "created")
    for m in client.list_models(run_id):
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
@connected
def models_export(
    client: ControlClient,
    model_id: Annotated[str, typer.Argument(help="Model version (see `models list`).")],
    fmt: Annotated[
        str, typer.Option("--format", help="onnx (for scan and browsers) or safetensors.")
    ] = "onnx",
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="File to write (default: the server's name)."),
    ] = None,
) -> None:
    """Download a model version; an ONNX export is what `fedmetamal scan --model` reads."""
    from fedmetamal.net.identity import write_file_atomic

    header, data = client.export_model(model_id, fmt)
    path = output or Path(header.filename)
    write_file_atomic(path, data)
    console.print(f"wrote {path} ({len(data)} bytes)")
