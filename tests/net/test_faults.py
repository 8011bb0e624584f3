"""Faults a real federation meets: the server dies, a participant dies, a network drops."""

from __future__ import annotations

import os
import signal
import time

import pytest
from tests.net.federation_processes import ProcessFederation
from tests.net.harness import federation_files, small_config, wait_until

from fedmetamal.api import build_federation, simulate

pytestmark = pytest.mark.slow

NAMES = ["participant-1", "participant-2", "participant-3"]


def _start(
    tmp_path, processes, cfg, heartbeat_timeout: float = 3.0
) -> tuple[ProcessFederation, list[str]]:
    files = federation_files(cfg, tmp_path / "data")
    fed = ProcessFederation(tmp_path, processes, heartbeat_timeout=heartbeat_timeout)
    fed.start_server()
    for name, (train, test) in zip(NAMES, files, strict=True):
        fed.start_participant(name, train, test)
    return fed, fed.participant_ids(NAMES)


def _wait_round(fed: ProcessFederation, run_id: str, n: int) -> None:
    def reached() -> bool:
        with fed.control() as c:
            return c.run_action("Get", run_id).round >= n

    wait_until(reached, 120, f"round {n} of {run_id}")


def test_server_killed_mid_run_resumes_without_losing_a_round(tmp_path, processes) -> None:
    """SIGKILL the server during a SCAFFOLD run, restart it on the same data dir: the run
    completes, every round is there exactly once, and the model is the uninterrupted one
    (participants restart the interrupted round from the client state they had before it)."""
    cfg = small_config(
        **{"training.rounds": 6, "algorithm.name": "scaffold", "training.local_epochs": 3}
    )
    fed, ids = _start(tmp_path, processes, cfg)
    run_id = fed.run(cfg, ids)
    _wait_round(fed, run_id, 2)
    time.sleep(0.3)  # into round 3
    assert fed.server is not None
    fed.server.send_signal(signal.SIGKILL)
    fed.server.wait(10)
    fed.start_server()  # same port and data dir; participants reconnect on their own
    assert fed.wait_finished(run_id) == "completed", fed.logs()
    with fed.control() as c:
        rounds = [r.round for r in c.list_rounds(run_id)]
    assert rounds == [1, 2, 3, 4, 5, 6]
    expected = simulate(cfg, write_outputs=False, federation=build_federation(cfg)).params
    assert float((fed.final_params(run_id, 6) - expected).abs().max()) < 1e-5


def test_participant_killed_mid_round_the_others_finish(tmp_path, processes) -> None:
    """Kill a participant between rounds (the run paused there, so the kill cannot miss):
    the next round's task to it goes unanswered, it drops offline after the heartbeat
    timeout, and the rounds complete with the two others."""
    cfg = small_config(
        **{"training.rounds": 6, "network.min_participants": 2, "training.local_epochs": 3}
    )
    fed, ids = _start(tmp_path, processes, cfg)
    run_id = fed.run(cfg, ids)
    _wait_round(fed, run_id, 1)
    with fed.control() as c:
        c.run_action("Pause", run_id)
        killed_at = wait_until(
            lambda: (run := c.run_action("Get", run_id)).state == "paused" and run.round,
            120,
            "the run to pause",
        )
        assert killed_at < 6
        fed.participants["participant-3"].kill()
        c.run_action("Resume", run_id)
    assert fed.wait_finished(run_id) == "completed", fed.logs()
    with fed.control() as c:
        rounds = c.list_rounds(run_id)
    assert [r.round for r in rounds] == [1, 2, 3, 4, 5, 6]
    gone = ids[2]
    after = rounds[killed_at:]
    assert all(gone not in r.reported for r in after)
    assert any("offline" in r.rejected.get(gone, "") for r in after), [r.rejected for r in after]
    assert all(len(r.reported) >= 2 for r in rounds)


def test_a_silent_participant_is_offline_within_the_heartbeat_timeout(tmp_path, processes) -> None:
    """SIGSTOP freezes a participant as a lost network would: no more heartbeats."""
    cfg = small_config()
    fed, ids = _start(tmp_path, processes, cfg, heartbeat_timeout=2.0)
    frozen = fed.participants["participant-2"]

    def online(pid: str) -> bool:
        with fed.control() as c:
            return next(p.online for p in c.list_participants() if p.participant_id == pid)

    os.kill(frozen.pid, signal.SIGSTOP)
    t0 = time.monotonic()
    try:
        wait_until(lambda: not online(ids[1]), 10, "participant-2 to be marked offline", every=0.1)
        took = time.monotonic() - t0
        # timeout 2 s plus one sweep (0.5 s) and one heartbeat interval of slack
        assert took < 2.0 + 0.5 + 0.5 + 1.0
    finally:
        os.kill(frozen.pid, signal.SIGCONT)
    wait_until(lambda: online(ids[1]), 10, "participant-2 to come back online")
    assert online(ids[0]) and online(ids[2])
