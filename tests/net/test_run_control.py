"""Operators pause, resume and stop runs; a stopped run keeps its completed rounds."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from tests.net.harness import (
    ServerThread,
    federation_files,
    participant_ids,
    small_config,
    start_participants,
    wait_until,
)

pytestmark = pytest.mark.slow


def test_pause_resume_and_stop(tmp_path: Path) -> None:
    cfg = small_config(**{"training.rounds": 5, "training.local_epochs": 2})
    files = federation_files(cfg, tmp_path / "data")
    server = ServerThread(tmp_path / "server")
    tokens = [server.token() for _ in files]
    c = server.control()

    def state(run_id: str) -> tuple[str, int]:
        run = c.run_action("Get", run_id)
        return run.state, run.round

    def operator(ids: list[str]) -> None:
        run_id = c.create_run("control", cfg.model_dump_json(), ids, start=True).run_id
        wait_until(lambda: state(run_id)[1] >= 1, 60, "round 1")
        c.run_action("Pause", run_id)
        paused_at = wait_until(
            lambda: state(run_id)[1] if state(run_id)[0] == "paused" else None, 60, "pause"
        )
        time.sleep(1.0)
        assert state(run_id) == ("paused", paused_at)  # nothing moves while paused
        c.run_action("Resume", run_id)
        wait_until(lambda: state(run_id)[0] == "completed", 120, "completion")
        assert [r.round for r in c.list_rounds(run_id)] == [1, 2, 3, 4, 5]

        second = c.create_run("stopped", cfg.model_dump_json(), ids, start=True).run_id
        wait_until(lambda: state(second)[1] >= 1, 60, "round 1 of the second run")
        c.run_action("Stop", second)
        _, done = wait_until(
            lambda: state(second) if state(second)[0] == "stopped" else None, 60, "stop"
        )
        assert 1 <= done < 5
        assert [m.round for m in c.list_models(second)] == list(range(1, done + 1))
        with pytest.raises(Exception, match="stopped"):
            c.run_action("Resume", second)

    async def scenario() -> None:
        stop = asyncio.Event()
        tasks = start_participants(server, files, tmp_path, stop, tokens)
        pids = await participant_ids(server, len(files))
        try:
            await asyncio.to_thread(operator, pids)
        finally:
            stop.set()
            await asyncio.gather(*tasks)

    try:
        asyncio.run(scenario())
    finally:
        c.close()
        server.stop()
