"""The federation over real TLS on loopback, as `fedmetamal serve` runs it by default: a generated
CA, participants that trust it (and only it), mutual TLS with client certificates, and the
refusal of plaintext on a non-loopback address."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from tests.net.harness import ServerThread, federation_files, small_config, wait_until

from fedmetamal.cli import run as run_cli
from fedmetamal.net.control_client import ControlClient
from fedmetamal.net.identity import IDENTITY_FILE
from fedmetamal.net.participant import JoinOptions, Participant
from fedmetamal.net.participant_data import load_local_data
from fedmetamal.net.tls import ensure_server_tls, issue_client_certificate


def _tls_server(data_dir: Path, **opts: Any) -> ServerThread:
    """A server with TLS on (no --insecure), its certificate for "localhost"."""
    return ServerThread(data_dir, insecure=False, tls_hosts=["localhost"], **opts)


def _target(server: ServerThread) -> str:
    return f"localhost:{server.server.port}"


def _participant(
    server: ServerThread, data: tuple[Path, Path], state_dir: Path, logs: list[str], **tls: Any
) -> Participant:
    train, test = data
    opts = JoinOptions(
        server=_target(server),
        data=train,
        state_dir=state_dir,
        token=server.token(),
        name=state_dir.name,
        max_backoff_s=0.5,
        **tls,
    )
    return Participant(opts, load_local_data(train, test), log=logs.append)


async def _refused(participant: Participant, logs: list[str]) -> None:
    """Run a participant until its connection has failed twice; it never gets past TLS."""
    stop = asyncio.Event()
    task = asyncio.create_task(participant.run(stop))
    await asyncio.to_thread(
        wait_until,
        lambda: sum("unreachable (UNAVAILABLE)" in m for m in logs) >= 2,
        30,
        "two failed connection attempts",
    )
    stop.set()
    await asyncio.wait_for(task, 30)


def _enrolled(server: ServerThread) -> list[Any]:
    return server.run_sync(lambda: server.core.registry.views())


def test_a_run_completes_over_tls(tmp_path: Path) -> None:
    cfg = small_config(**{"training.rounds": 1, "partition.clients": 2})
    files = federation_files(cfg, tmp_path / "data")
    server = _tls_server(tmp_path / "server")
    try:
        ca = server.server.ca_path
        assert ca is not None and ca.is_file() and server.server.tls
        logs: list[str] = []
        participants = [
            _participant(server, f, tmp_path / f"p{i}", logs, ca=ca) for i, f in enumerate(files)
        ]
        token = server.server.operator_token_file.read_text().strip()

        async def main() -> tuple[Any, Any, list[Any]]:
            stop = asyncio.Event()
            tasks = [asyncio.create_task(p.run(stop)) for p in participants]
            with ControlClient(_target(server), token, ca=ca) as c:

                def ready() -> list[str] | None:
                    ok = [p for p in c.list_participants() if p.online and p.summary.n_train]
                    return [p.participant_id for p in ok] if len(ok) == len(files) else None

                ids = await asyncio.to_thread(wait_until, ready, 60, "participants over TLS")
                run = c.create_run("tls", cfg.model_dump_json(), sorted(ids), start=True)
                await asyncio.to_thread(lambda: list(c.watch(run.run_id)))
                info = c.server_info()
                result = (info, c.run_action("Get", run.run_id), c.list_rounds(run.run_id))
            stop.set()
            await asyncio.gather(*tasks)
            return result

        info, run, rounds = asyncio.run(main())
        assert info.tls
        assert run.state == "completed", run.error
        assert [r.round for r in rounds] == [1]
        assert sorted(rounds[0].reported) == sorted(rounds[0].sampled)
        assert len(rounds[0].reported) == 2
    finally:
        server.stop()


def test_a_participant_trusting_another_ca_never_enrolls(tmp_path: Path) -> None:
    cfg = small_config(**{"partition.clients": 1})
    (data,) = federation_files(cfg, tmp_path / "data")
    other_ca = ensure_server_tls(tmp_path / "other-ca", ["localhost"]).ca_cert
    server = _tls_server(tmp_path / "server")
    try:
        assert other_ca.read_bytes() != server.server.ca_path.read_bytes()
        logs: list[str] = []
        stranger = _participant(server, data, tmp_path / "stranger", logs, ca=other_ca)
        asyncio.run(_refused(stranger, logs))
        assert _enrolled(server) == []
        assert not (tmp_path / "stranger" / IDENTITY_FILE).exists()

        # the same token, unused, works with the right CA
        logs2: list[str] = []
        ok = _participant(server, data, tmp_path / "ok", logs2, ca=server.server.ca_path)
        ok.opts.token = stranger.opts.token
        asyncio.run(_enroll_once(server, ok))
        assert [v.record.name for v in _enrolled(server)] == ["ok"]
    finally:
        server.stop()


async def _enroll_once(server: ServerThread, participant: Participant) -> None:
    """Run a participant until the server lists it with its summary, then stop it."""
    stop = asyncio.Event()
    task = asyncio.create_task(participant.run(stop))

    def listed() -> bool:
        return any(v.record.summary for v in _enrolled(server))

    try:
        await asyncio.to_thread(wait_until, listed, 30, "the participant to enroll")
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


def test_mutual_tls_needs_a_client_certificate(tmp_path: Path) -> None:
    cfg = small_config(**{"partition.clients": 1})
    (data,) = federation_files(cfg, tmp_path / "data")
    tls_dir = tmp_path / "server" / "tls"
    ca = ensure_server_tls(tls_dir, ["localhost"]).ca_cert  # the server reuses this CA
    cert, key = issue_client_certificate(tls_dir, "participant-1")
    server = _tls_server(tmp_path / "server", client_ca=ca)
    try:
        assert server.server.ca_path == ca
        logs: list[str] = []
        bare = _participant(server, data, tmp_path / "bare", logs, ca=ca)
        asyncio.run(_refused(bare, logs))
        assert _enrolled(server) == []

        with_cert = _participant(
            server, data, tmp_path / "with-cert", [], ca=ca, client_cert=cert, client_key=key
        )
        asyncio.run(_enroll_once(server, with_cert))
        assert [v.record.name for v in _enrolled(server)] == ["with-cert"]
    finally:
        server.stop()


def test_serve_refuses_plaintext_off_loopback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "server"
    status = run_cli(
        ["serve", "--insecure", "--host", "0.0.0.0", "--port", "0", "--data-dir", str(data_dir)]
    )
    err = " ".join(capsys.readouterr().err.split())
    assert status != 0
    assert "only allowed on a loopback address" in err
    assert "'0.0.0.0'" in err
    assert not data_dir.exists()  # refused before anything was created
