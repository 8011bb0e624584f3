"""``fedmetamal demo``: the whole system on this machine, in one command.

Starts the gRPC server, partitions the embedded dataset, starts one ``fedmetamal join``
process per participant with its own share, runs a federated training to completion with a
progress bar, and leaves the server running for the operator tools (or exits, with
``--exit-when-done``, for CI).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Annotated

import typer

from fedmetamal.cli_common import ConfigOpt, SetOpt, config_from_flags, console, progress_bar
from fedmetamal.errors import FedMetaMalError


def demo(
    participants: Annotated[int, typer.Option(help="Participant processes to start.")] = 3,
    port: Annotated[int, typer.Option(help="Server port on 127.0.0.1 (0: any free port).")] = 50051,
    data_dir: Annotated[
        Path, typer.Option("--data-dir", help="Server data, partitions and logs.")
    ] = Path("fedmetamal-demo"),
    rounds: Annotated[int | None, typer.Option(help="Federated rounds.")] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    exit_when_done: Annotated[
        bool, typer.Option("--exit-when-done", help="Stop everything when training ends.")
    ] = False,
    web_port: Annotated[
        int | None,
        typer.Option(
            "--web-port",
            help="Dashboard port on 127.0.0.1 (0: any free port). Default 8080, or any free "
            "port when 8080 is taken.",
        ),
    ] = None,
    no_web: Annotated[bool, typer.Option("--no-web", help="Do not serve the dashboard.")] = False,
) -> None:
    """Run a federation on this machine over real gRPC: server + participant processes."""
    flags = {"partition.clients": participants, "training.rounds": rounds}
    cfg = config_from_flags(config, flags, sets=set_ or [])
    ok = asyncio.run(_demo(cfg, participants, port, data_dir, exit_when_done, web_port, no_web))
    if not ok:
        raise typer.Exit(1)


async def _demo(
    cfg,
    n: int,
    port: int,
    data_dir: Path,
    exit_when_done: bool,
    web_port: int | None = None,
    no_web: bool = False,
) -> bool:
    from fedmetamal.net.local_federation import (
        join_command,
        partition_for,
        spawn,
        stop_all,
        write_partitions,
    )
    from fedmetamal.net.server import FederationServer, ServeOptions

    console.print(f"partitioning {cfg.dataset.source} over {n} participants ({cfg.partition.kind})")
    fed = await asyncio.to_thread(partition_for, cfg)
    files = await asyncio.to_thread(write_partitions, fed, data_dir / "participants")
    server = FederationServer(
        ServeOptions(
            host="127.0.0.1",
            port=port,
            data_dir=data_dir / "server",
            insecure=True,
            auto_approve=True,
            heartbeat_interval_s=2.0,
            heartbeat_timeout_s=10.0,
            web_port=8080 if web_port is None else web_port,
            web_port_fallback=web_port is None,
            no_web=no_web,
        )
    )
    await server.start()
    core = server.core
    console.print(
        f"server on {server.address} (plaintext, loopback); operator token in "
        f"{server.operator_token_file}"
    )
    if server.web_url and server.web is not None:
        console.print(
            f"dashboard on {server.web_url} (user admin, password in "
            f"{server.web.admin_password_file})"
        )
        if server.web.notice:
            console.print(f"[yellow]{server.web.notice}[/]")
    procs = []
    try:
        names = []
        for i, (train, test) in enumerate(files, start=1):
            token, _, _ = core.create_join_token(note="demo")
            name = f"participant-{i}"
            names.append(name)
            cmd = join_command(
                f"127.0.0.1:{server.port}", token, train, test, data_dir / "state" / name, name
            )
            procs.append(spawn(cmd, data_dir / "logs" / f"{name}.log"))
        ids = await _wait_for(core, names, procs, data_dir)
        run = core.create_run("demo", cfg.model_dump_json(), ids, start=True)
        ok = await _watch(core, run.run_id, cfg.training.rounds)
        if exit_when_done:
            return ok
        console.print(
            f"\nserver still running on {server.address}; try\n"
            f"  fedmetamal runs list --server {server.address} --insecure "
            f"--operator-token-file {server.operator_token_file}\n"
            + (f"  or open the dashboard: {server.web_url}\n" if server.web_url else "")
            + "Ctrl-C stops it and the participants."
        )
        await asyncio.Event().wait()
        return ok
    finally:
        stop_all(procs)
        await server.stop()


async def _wait_for(core, names: list[str], procs, data_dir: Path) -> list[str]:
    """Participant ids in slot order, once every process enrolled and reported its summary."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        views = {v.record.name: v for v in core.registry.views()}
        ready = [
            views[n] for n in names if n in views and views[n].record.summary and views[n].online
        ]
        if len(ready) == len(names):
            console.print(f"{len(names)} participants online")
            return [v.record.participant_id for v in ready]
        for i, p in enumerate(procs, start=1):
            if p.poll() is not None:
                raise FedMetaMalError(
                    f"participant-{i} exited with status {p.returncode}.",
                    f"See {data_dir / 'logs' / f'participant-{i}.log'}.",
                )
        await asyncio.sleep(0.3)
    raise FedMetaMalError(
        "The participants did not come online within 180 s.",
        f"See the logs in {data_dir / 'logs'}.",
    )


async def _watch(core, run_id: str, rounds: int) -> bool:
    state = "running"
    last: dict[str, float] = {}
    with progress_bar(console, unit="rounds") as bar:
        task = bar.add_task("federated training", total=rounds, latest="")
        async for ev in core.bus.watch(run_id):
            if ev.kind == "round_finished":
                last = ev.metrics
                auc = ev.metrics.get("roc_auc")
                bar.update(
                    task,
                    completed=ev.round,
                    latest=f"ROC AUC {auc:.4f}" if auc == auc and auc is not None else "",
                )
            elif ev.kind in ("round_retried", "update_rejected") or ev.level != "info":
                bar.console.print(f"[yellow]{ev.message}[/]")
            elif ev.kind == "run_state":
                state = ev.state or state
    run = core.store.get_run(run_id)
    if run.state != "completed":
        console.print(f"[red]run {run.state}[/]: {run.error or ''}")
        return False
    shown = {
        k: v
        for k, v in last.items()
        if k in ("roc_auc", "accuracy", "tpr_at_1pct_fpr", "loss", "train_loss")
    }
    console.print(
        f"run {run_id} completed {run.round} rounds: "
        + ", ".join(f"{k} {v:.4f}" for k, v in shown.items())
    )
    models = core.store.list_models(run_id)
    if models:
        console.print(f"final model {models[-1].model_id}: {core.data_dir / models[-1].path}")
    return True
