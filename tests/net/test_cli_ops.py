"""The operator commands against a real server: tokens, participants, runs, models."""

from __future__ import annotations

import asyncio
from pathlib import Path

import onnx
import pytest
from tests.net.harness import ServerThread, federation_files, small_config, wait_until

from fedmetamal.cli import run as run_cli
from fedmetamal.net.participant import JoinOptions, Participant
from fedmetamal.net.participant_data import load_local_data

pytestmark = pytest.mark.slow


def test_operator_commands(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from fedmetamal import cli_ops

    monkeypatch.setattr(cli_ops.console, "_width", 300)  # whole ids in the tables
    cfg = small_config(**{"training.rounds": 1, "partition.clients": 2})
    files = federation_files(cfg, tmp_path / "data")
    server = ServerThread(tmp_path / "server")
    conn = [
        "--server",
        server.target,
        "--insecure",
        "--operator-token-file",
        str(server.server.operator_token_file),
    ]
    try:
        assert run_cli(["token", "create", "--auto-approve", *conn]) == 0
        out = capsys.readouterr().out
        assert "fedmetamal join --server" in out and "--data PATH" in out
        token = out.split("token", 1)[1].split()[0]
        tokens = [token, server.token()]
        config = tmp_path / "run.yaml"
        config.write_text(cfg.model_dump_json())  # JSON is YAML

        async def scenario() -> None:
            stop = asyncio.Event()
            tasks = [
                asyncio.create_task(
                    Participant(
                        JoinOptions(
                            server=server.target,
                            data=train,
                            state_dir=tmp_path / f"p{i}",
                            token=tok,
                            name=f"participant-{i}",
                            insecure=True,
                        ),
                        load_local_data(train, test),
                        log=lambda _m: None,
                    ).run(stop)
                )
                for i, ((train, test), tok) in enumerate(zip(files, tokens, strict=True))
            ]
            with server.control() as c:
                await asyncio.to_thread(
                    wait_until,
                    lambda: (
                        sum(p.online and p.summary.n_train > 0 for p in c.list_participants()) == 2
                    ),
                    60,
                    "participants",
                )
            rc = await asyncio.to_thread(
                run_cli, ["runs", "create", "--config", str(config), "--start", *conn]
            )
            assert rc == 0
            with server.control() as c:
                run_id = c.list_runs()[0].run_id
                await asyncio.to_thread(
                    wait_until,
                    lambda: c.run_action("Get", run_id).state == "completed",
                    60,
                    "the run",
                )
            stop.set()
            await asyncio.gather(*tasks)

        asyncio.run(scenario())
        capsys.readouterr()
        assert run_cli(["participants", "list", *conn]) == 0
        assert "participant-0" in capsys.readouterr().out
        assert run_cli(["runs", "list", *conn]) == 0
        assert "completed" in capsys.readouterr().out
        assert run_cli(["models", "list", *conn]) == 0
        model_id = next(w for w in capsys.readouterr().out.split() if "-r00001" in w)
        target = tmp_path / "model.onnx"
        assert run_cli(["models", "export", model_id, "-o", str(target), *conn]) == 0
        assert onnx.load(str(target)).graph.input[0].name == "features"
        # a run the server simulates (no participants needed)
        assert (
            run_cli(
                ["runs", "create", "--config", str(config), "--simulated", "3", "--start", *conn]
            )
            == 0
        )
        with server.control() as c:
            sim_run = next(r for r in c.list_runs() if r.mode == "simulated")
            wait_until(
                lambda: c.run_action("Get", sim_run.run_id).state == "completed",
                60,
                "the simulated run",
            )
        assert run_cli(["runs", "start", "run-does-not-exist", *conn]) != 0
        captured = capsys.readouterr()
        assert "No run" in captured.err + captured.out
    finally:
        server.stop()
