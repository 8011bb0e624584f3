"""ControlService over Connect: the same server core as the gRPC port, browser credentials."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from fedmetamal.v1 import control_pb2
from net.harness import small_config

from .conftest import VIEWER, Browser, StreamError, Web, start_web


def _call(b: Browser, method: str, req: Any, out: Any) -> Any:
    reply = b.call("ControlService", method, req, out)
    assert isinstance(reply, out), getattr(reply, "body", reply)
    return reply


def test_server_info_and_participants_match_the_core(web: Web) -> None:
    admin = web.login()
    info = _call(admin, "GetServerInfo", control_pb2.GetServerInfoRequest(), control_pb2.ServerInfo)
    assert info.address == web.thread.server.address
    assert info.database == "sqlite" and info.protocol_version == 1 and not info.tls
    last = web.thread.run_sync(lambda: web.thread.core.bus.publish("log", "probe"))
    info = _call(admin, "GetServerInfo", control_pb2.GetServerInfoRequest(), control_pb2.ServerInfo)
    assert info.last_event_seq == last.seq
    parts = _call(
        admin,
        "ListParticipants",
        control_pb2.ListParticipantsRequest(),
        control_pb2.ListParticipantsReply,
    )
    assert len(parts.participants) == len(web.thread.run_sync(web.thread.core.registry.views))


def test_join_tokens_work_like_the_grpc_ones(web: Web) -> None:
    admin = web.login()
    tok = _call(
        admin,
        "CreateJoinToken",
        control_pb2.CreateJoinTokenRequest(ttl_s=60, note="web"),
        control_pb2.JoinToken,
    )
    assert tok.token and tok.token in tok.command
    assert f"--server {web.thread.server.address}" in tok.command
    # the token enrolls a participant over gRPC
    from net.harness import RawParticipant

    raw = RawParticipant(web.thread.target)
    try:
        reply = raw.enroll(tok.token, name="from-web")
    finally:
        raw.close()
    parts = _call(
        admin,
        "ListParticipants",
        control_pb2.ListParticipantsRequest(),
        control_pb2.ListParticipantsReply,
    )
    assert reply.participant_id in {p.participant_id for p in parts.participants}


def test_runs_created_listed_and_stopped(web: Web) -> None:
    admin = web.login()
    cfg = small_config().model_dump_json()
    run = _call(
        admin,
        "CreateRun",
        control_pb2.CreateRunRequest(name="web-run", config_json=cfg),
        control_pb2.Run,
    )
    assert run.state == "created" and run.name == "web-run" and run.rounds == 3
    got = _call(admin, "GetRun", control_pb2.RunRef(run_id=run.run_id), control_pb2.Run)
    assert json.loads(got.config_json)["training"]["rounds"] == 3
    runs = _call(admin, "ListRuns", control_pb2.ListRunsRequest(), control_pb2.ListRunsReply)
    assert run.run_id in {r.run_id for r in runs.runs}
    rounds = _call(
        admin, "ListRounds", control_pb2.RunRef(run_id=run.run_id), control_pb2.ListRoundsReply
    )
    assert list(rounds.rounds) == []
    stopped = _call(admin, "StopRun", control_pb2.RunRef(run_id=run.run_id), control_pb2.Run)
    assert stopped.state == "stopped"
    # user errors keep their message and get the gRPC port's codes
    r = admin.call(
        "ControlService", "StartRun", control_pb2.RunRef(run_id=run.run_id), control_pb2.Run
    )
    assert r.error["code"] == "failed_precondition" and "stopped" in r.error["message"]
    r = admin.call("ControlService", "GetRun", control_pb2.RunRef(run_id="nope"), control_pb2.Run)
    assert r.error["code"] == "not_found"
    bad = control_pb2.CreateRunRequest(config_json='{"training": {"rounds": -1}}')
    r = admin.call("ControlService", "CreateRun", bad, control_pb2.Run)
    assert r.error["code"] == "invalid_argument" and "training.rounds" in r.error["message"]
    net_only = control_pb2.CreateRunRequest(
        config_json=small_config(**{"attack.kind": "label-flip"}).model_dump_json()
    )
    r = admin.call("ControlService", "CreateRun", net_only, control_pb2.Run)
    assert r.error["code"] == "invalid_argument" and "attack.kind" in r.error["message"]


def test_watch_run_replays_stored_events_then_live_ones(web: Web) -> None:
    admin = web.login()
    run = _call(
        admin,
        "CreateRun",
        control_pb2.CreateRunRequest(name="watched", config_json=small_config().model_dump_json()),
        control_pb2.Run,
    )
    core = web.thread.core
    stored = web.thread.run_sync(lambda: core.bus.publish("log", "stored one", run_id=run.run_id))
    got: list[control_pb2.Event] = []
    seen_stored = threading.Event()
    errors: list[BaseException] = []

    def watch() -> None:
        try:
            for ev in admin.stream(
                "ControlService",
                "WatchRun",
                control_pb2.WatchRunRequest(run_id=run.run_id),
                control_pb2.Event,
            ):
                got.append(ev)
                if ev.seq == stored.seq:
                    seen_stored.set()
        except BaseException as err:  # reported below
            errors.append(err)
            seen_stored.set()

    t = threading.Thread(target=watch)
    t.start()
    assert seen_stored.wait(30)
    live = web.thread.run_sync(lambda: core.bus.publish("log", "live one", run_id=run.run_id))
    web.thread.run_sync(lambda: core.stop_run(run.run_id))  # a final state ends the stream
    t.join(30)
    assert not t.is_alive() and not errors, errors
    kinds = [(e.kind, e.message) for e in got]
    assert kinds[0] == ("run_state", "run 'watched' created")
    assert ("log", "stored one") in kinds and ("log", "live one") in kinds
    assert got[-1].kind == "run_state" and got[-1].state == "stopped"
    seqs = [e.seq for e in got]
    assert seqs == sorted(seqs) and live.seq in seqs
    # after_seq skips what the page has already seen
    again = list(
        admin.stream(
            "ControlService",
            "WatchRun",
            control_pb2.WatchRunRequest(run_id=run.run_id, after_seq=live.seq),
            control_pb2.Event,
        )
    )
    assert [e.seq for e in again] == [s for s in seqs if s > live.seq]
    with pytest.raises(StreamError) as err:
        list(
            admin.stream(
                "ControlService",
                "WatchRun",
                control_pb2.WatchRunRequest(run_id="missing"),
                control_pb2.Event,
            )
        )
    assert err.value.code == "not_found"


def test_stopping_the_server_ends_open_watch_streams(tmp_path) -> None:
    w = start_web(tmp_path)
    admin = w.login()
    first = threading.Event()
    ended: list[str] = []
    marker = w.thread.run_sync(lambda: w.thread.core.bus.publish("log", "before"))

    def watch() -> None:
        try:
            for ev in admin.stream(
                "ControlService",
                "WatchRun",
                control_pb2.WatchRunRequest(after_seq=marker.seq - 1),
                control_pb2.Event,
                timeout=60,
            ):
                assert ev.seq >= marker.seq
                first.set()
            ended.append("ended")
        except BaseException as err:
            ended.append(f"error: {err!r}")
            first.set()

    t = threading.Thread(target=watch)
    t.start()
    try:
        assert first.wait(30)
        assert w.thread.server.web is not None
        assert w.thread.server.web.closing.event.is_set() is False
    finally:
        w.thread.stop()  # must not wait for the endless all-runs stream
    t.join(30)
    assert not t.is_alive()
    assert ended == ["ended"]
    assert w.thread.core.bus.watchers == 0


def test_generated_connect_client_works_with_the_session(web: Web) -> None:
    from fedmetamal.v1.control_connect import ControlServiceClientSync

    admin = web.login()
    headers = {
        "cookie": "; ".join(f"{k}={v}" for k, v in admin.cookies.items()),
        "x-csrf-token": admin.cookies["fmm_csrf"],
    }
    client = ControlServiceClientSync(f"http://127.0.0.1:{web.port}")
    try:
        info = client.get_server_info(control_pb2.GetServerInfoRequest(), headers=headers)
        assert info.address == web.thread.server.address
        from connectrpc.errors import ConnectError

        with pytest.raises(ConnectError) as err:
            client.list_runs(control_pb2.ListRunsRequest())
        assert err.value.code.name == "UNAUTHENTICATED"
    finally:
        client.close()


def test_simulated_runs_are_created_through_the_same_call(web: Web) -> None:
    admin = web.login()
    req = control_pb2.CreateRunRequest(
        name="sim", config_json=small_config().model_dump_json(), simulated_participants=2
    )
    run = _call(admin, "CreateRun", req, control_pb2.Run)
    assert run.state == "created" and run.mode == "simulated"
    assert _call(
        admin, "StopRun", control_pb2.RunRef(run_id=run.run_id), control_pb2.Run
    ).state == ("stopped")
    viewer = web.login(*VIEWER)
    assert viewer.code("ControlService", "CreateRun", req, control_pb2.Run) == "permission_denied"


def test_list_events_pages_the_history_for_admins_and_viewers(web: Web) -> None:
    admin = web.login()
    core = web.thread.core
    cfg = small_config().model_dump_json()
    run_id = web.thread.run_sync(lambda: core.create_run("history", cfg, []).run_id)
    other = web.thread.run_sync(lambda: core.create_run("other", cfg, []).run_id)

    def fill() -> list[int]:
        seqs = []
        for i in range(12):
            seqs.append(core.bus.publish("log", f"h {i}", run_id=run_id).seq)
            core.bus.publish("log", f"o {i}", run_id=other)
            if i % 4 == 3:
                seqs.append(core.bus.publish("round_finished", f"r {i}", run_id=run_id).seq)
        return seqs

    made = web.thread.run_sync(fill)
    viewer = web.login(*VIEWER)  # a viewer reads the log too
    for who in (admin, viewer):
        got: list[int] = []
        before = 0
        while True:
            page = _call(
                who,
                "ListEvents",
                control_pb2.ListEventsRequest(run_id=run_id, before_seq=before, limit=5),
                control_pb2.ListEventsReply,
            )
            assert {e.run_id for e in page.events} == {run_id}
            got += [e.seq for e in page.events]
            if not page.has_more:
                break
            before = page.events[-1].seq
        assert got[:-1] == made[::-1] and len(got) == len(made) + 1  # + "created"
    rounds = _call(
        viewer,
        "ListEvents",
        control_pb2.ListEventsRequest(run_id=run_id, kinds=["round_finished"]),
        control_pb2.ListEventsReply,
    )
    assert [e.message for e in rounds.events] == ["r 11", "r 7", "r 3"] and not rounds.has_more
    everything = _call(
        viewer, "ListEvents", control_pb2.ListEventsRequest(), control_pb2.ListEventsReply
    )
    assert {run_id, other} <= {e.run_id for e in everything.events}
    r = viewer.call(
        "ControlService",
        "ListEvents",
        control_pb2.ListEventsRequest(run_id=run_id, limit=5000),
        control_pb2.ListEventsReply,
    )
    assert r.error["code"] == "invalid_argument" and "at most 1000" in r.error["message"]
    r = viewer.call(
        "ControlService",
        "ListEvents",
        control_pb2.ListEventsRequest(run_id="gone"),
        control_pb2.ListEventsReply,
    )
    assert r.error["code"] == "not_found" and "No run 'gone'" in r.error["message"]
    assert (
        web.browser().code(
            "ControlService",
            "ListEvents",
            control_pb2.ListEventsRequest(),
            control_pb2.ListEventsReply,
        )
        == "unauthenticated"
    )
