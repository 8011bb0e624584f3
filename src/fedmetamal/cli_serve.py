"""``fedmetamal serve`` and ``fedmetamal join``: the two sides of a real federation.

Parsing and printing only; the server is :mod:`fedmetamal.net.server`, the participant
:mod:`fedmetamal.net.participant`.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from pathlib import Path
from typing import Annotated

import typer

from fedmetamal.cli_common import console
from fedmetamal.errors import ConfigError

DATABASE_ENV = "FEDMETAMAL_DATABASE_URL"
#: The dashboard's port unless --web-port says otherwise.
DEFAULT_WEB_PORT = 8080


def serve(
    host: Annotated[
        str, typer.Option(help="Address to listen on (0.0.0.0: every interface).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (0: any free port).")] = 50051,
    data_dir: Annotated[
        Path,
        typer.Option("--data-dir", help="Folder for the database, checkpoints and certificates."),
    ] = Path("fedmetamal-server"),
    database: Annotated[
        str | None,
        typer.Option(help=f"SQLAlchemy URL (sqlite:///..., postgresql://...); env {DATABASE_ENV}."),
    ] = None,
    tls_cert: Annotated[
        Path | None, typer.Option("--tls-cert", help="Server certificate (PEM).")
    ] = None,
    tls_key: Annotated[
        Path | None, typer.Option("--tls-key", help="Server private key (PEM).")
    ] = None,
    tls_hosts: Annotated[
        str,
        typer.Option(
            "--tls-hosts", help="Comma-separated names participants use to reach the server."
        ),
    ] = "",
    client_ca: Annotated[
        Path | None,
        typer.Option("--client-ca", help="Require client certificates from this CA (mutual TLS)."),
    ] = None,
    insecure: Annotated[
        bool, typer.Option("--insecure", help="Plaintext, allowed only on a loopback address.")
    ] = False,
    auto_approve: Annotated[
        bool, typer.Option("--auto-approve", help="Approve participants as they enroll.")
    ] = False,
    issue_tokens: Annotated[
        int, typer.Option("--issue-tokens", help="Write N single-use join tokens at start.")
    ] = 0,
    token_dir: Annotated[
        Path | None,
        typer.Option("--token-dir", help="Where --issue-tokens writes token-1..N and ca.pem."),
    ] = None,
    test_data: Annotated[
        Path | None, typer.Option("--test-data", help="A labelled dataset the server evaluates on.")
    ] = None,
    heartbeat_interval: Annotated[float, typer.Option(help="Seconds between heartbeats.")] = 5.0,
    heartbeat_timeout: Annotated[
        float, typer.Option(help="Silence after which a participant is offline.")
    ] = 20.0,
    web_port: Annotated[
        int | None,
        typer.Option(
            "--web-port",
            help="Dashboard (HTTP) port (0: any free port). Default 8080, or any free port "
            "when 8080 is taken.",
        ),
    ] = None,
    web_host: Annotated[
        str | None,
        typer.Option("--web-host", help="Address the dashboard listens on (default: --host)."),
    ] = None,
    no_web: Annotated[bool, typer.Option("--no-web", help="Do not serve the dashboard.")] = False,
    max_upload_mb: Annotated[
        float,
        typer.Option("--max-upload-mb", help="Largest file the dashboard's Detect page accepts."),
    ] = 32.0,
    admin_password_file: Annotated[
        Path | None,
        typer.Option(
            "--admin-password-file",
            help="Set the dashboard's admin password from this file (default: a random one, "
            "written to <data-dir>/admin.password at first start).",
        ),
    ] = None,
) -> None:
    """Run the federation server (gRPC): participants join it, operators control runs."""
    from fedmetamal.net.server import FederationServer, ServeOptions, run_server

    if issue_tokens and token_dir is None:
        raise ConfigError("--issue-tokens needs --token-dir.", "Say where to write the tokens.")
    opts = ServeOptions(
        host=host,
        port=port,
        data_dir=data_dir,
        database_url=database or os.environ.get(DATABASE_ENV) or None,
        tls_cert=tls_cert,
        tls_key=tls_key,
        tls_hosts=[h.strip() for h in tls_hosts.split(",") if h.strip()],
        client_ca=client_ca,
        insecure=insecure,
        auto_approve=auto_approve,
        heartbeat_interval_s=heartbeat_interval,
        heartbeat_timeout_s=heartbeat_timeout,
        web_port=DEFAULT_WEB_PORT if web_port is None else web_port,
        web_port_fallback=web_port is None,
        web_host=web_host,
        no_web=no_web,
        max_upload_mb=max_upload_mb,
        admin_password_file=admin_password_file,
    )
    test = _load_test_data(test_data)
    server = FederationServer(opts, test)

    def started(s: FederationServer) -> None:
        console.print(
            f"[bold]FedMetaMal server[/] listening on {host}:{s.port} "
            f"({'TLS' if s.tls else 'plaintext, loopback only'})"
        )
        console.print(
            f"  database       {s.core.store.dialect}: {_masked(s.core.store.url)}", soft_wrap=True
        )
        console.print(f"  operator token {s.operator_token_file}", soft_wrap=True)
        if s.ca_path:
            console.print(
                f"  CA certificate {s.ca_path} (participants pass it with --ca)", soft_wrap=True
            )
        print_dashboard(s)
        if issue_tokens:
            assert token_dir is not None
            _write_tokens(s, issue_tokens, token_dir)
        console.print(
            "  join tokens    fedmetamal token create --server "
            f"{s.address} --operator-token-file {s.operator_token_file}"
            + (f" --ca {s.ca_path}" if s.ca_path else " --insecure"),
            soft_wrap=True,  # a command to copy: the terminal wraps it, rich must not
        )

    asyncio.run(run_server(server, on_started=started))


def print_dashboard(s) -> None:
    """The dashboard's URL and where its admin password is (shared with the demo)."""
    if s.web is None or not s.web_url:
        return
    console.print(f"  dashboard      {s.web_url}")
    if s.web.notice:
        console.print(f"  [yellow]{s.web.notice}[/]")
    if s.web.admin_password_file is not None:
        console.print(f"  admin password {s.web.admin_password_file} (user admin)", soft_wrap=True)
    if not s.web.app.built:
        console.print(
            "  [yellow]the dashboard's pages are not built: run bash scripts/install.sh[/]"
        )


def _masked(url: str) -> str:
    import re

    return re.sub(r"://([^:/@]+):[^@]+@", r"://\1:***@", url)


def _load_test_data(path: Path | None):
    if path is None:
        return None
    from fedmetamal.config import DatasetConfig
    from fedmetamal.data.sources import load_dataset

    ds = load_dataset(DatasetConfig(source=str(path)), seed=0)
    keep = ds.y >= 0
    return ds.subset(keep.nonzero()[0]) if not keep.all() else ds


def _write_tokens(server, n: int, token_dir: Path) -> None:
    from fedmetamal.net.identity import write_file_atomic

    token_dir.mkdir(parents=True, exist_ok=True)
    written = 0
    for i in range(1, n + 1):
        path = token_dir / f"token-{i}"
        if path.is_file():  # a restart: the token was issued (and maybe used) already
            continue
        token, _, _ = server.core.create_join_token(note=f"issued at start ({i}/{n})")
        write_file_atomic(path, (token + "\n").encode(), private=True)
        written += 1
    if server.ca_path:
        shutil.copyfile(server.ca_path, token_dir / "ca.pem")
    console.print(f"  wrote {written} new join token(s) to {token_dir} ({n - written} kept)")


def join(
    server: Annotated[str, typer.Option(help="HOST:PORT of the federation server.")],
    data: Annotated[
        Path, typer.Option(help="This participant's training data (any format the loaders read).")
    ],
    token: Annotated[
        str | None, typer.Option(help="Join token from the operator (first start only).")
    ] = None,
    token_file: Annotated[
        Path | None, typer.Option("--token-file", help="Read the join token from a file.")
    ] = None,
    name: Annotated[str, typer.Option(help="Name shown to the operator.")] = "",
    state_dir: Annotated[
        Path | None,
        typer.Option(
            "--state-dir", help="Identity and client state (default ~/.fedmetamal/participant)."
        ),
    ] = None,
    ca: Annotated[
        Path | None, typer.Option(help="CA certificate that signed the server's certificate.")
    ] = None,
    client_cert: Annotated[
        Path | None, typer.Option("--client-cert", help="Client certificate (mutual TLS).")
    ] = None,
    client_key: Annotated[
        Path | None, typer.Option("--client-key", help="Client key (mutual TLS).")
    ] = None,
    insecure: Annotated[
        bool, typer.Option("--insecure", help="Plaintext to a loopback server.")
    ] = False,
    test_data: Annotated[
        Path | None,
        typer.Option("--test-data", help="Local evaluation data (default: a 20% holdout)."),
    ] = None,
    holdout: Annotated[
        float, typer.Option(help="Share of labelled rows held out for local evaluation.")
    ] = 0.2,
    threads: Annotated[int | None, typer.Option(help="Torch threads for local training.")] = None,
) -> None:
    """Join a federation: enroll (once), report a dataset summary, train when asked."""
    from fedmetamal.net.identity import default_state_dir
    from fedmetamal.net.participant import JoinOptions, Participant
    from fedmetamal.net.participant_data import load_local_data

    if token_file is not None:
        if not token_file.is_file():
            raise ConfigError(f"Token file '{token_file}' does not exist.")
        token = token_file.read_text().strip()
    if threads:
        import torch

        torch.set_num_threads(threads)
    local = load_local_data(data, test_data, holdout)
    opts = JoinOptions(
        server=server,
        data=data,
        state_dir=state_dir or default_state_dir(),
        token=token,
        name=name,
        ca=ca,
        client_cert=client_cert,
        client_key=client_key,
        insecure=insecure,
    )

    def log(msg: str) -> None:
        console.print(f"[dim]{time.strftime('%H:%M:%S')}[/] {msg}")

    log(
        f"{len(local.y)} training and {len(local.y_test)} test rows, {local.n_features} features "
        f"from {data}; connecting to {server}"
    )
    participant = Participant(opts, local, log)
    try:
        asyncio.run(participant.run())
    except KeyboardInterrupt:
        log("stopped; start again with the same --state-dir to carry on without a new token")
