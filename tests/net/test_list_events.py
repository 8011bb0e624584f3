"""ListEvents over real gRPC: a log's stored history, newest first, paged back with before_seq,
filtered by run and kind, with clear refusals of bad arguments; and the `runs events` command."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest
from tests.net.harness import ServerThread, small_config

from fedmetamal.cli import run as run_cli
from fedmetamal.net.control_client import ControlClient, ControlError
from fedmetamal.v1 import control_pb2


@dataclass
class Fixture:
    server: ServerThread
    client: ControlClient
    run_a: str
    run_b: str
    seqs_a: list[int]  # every event of run A, oldest first


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fixture]:
    """Two runs with interleaved events (run A: 3 round_finished among 30 logs) and events of
    no run, stored through the server's own event bus."""
    server = ServerThread(tmp_path_factory.mktemp("list-events"))
    core = server.core
    cfg = small_config().model_dump_json()
    run_a = server.run_sync(lambda: core.create_run("a", cfg, []).run_id)
    run_b = server.run_sync(lambda: core.create_run("b", cfg, []).run_id)

    def fill() -> None:
        for i in range(30):
            core.bus.publish("log", f"a {i}", run_id=run_a)
            core.bus.publish("log", f"b {i}", run_id=run_b)
            if i % 10 == 9:
                core.bus.publish("round_finished", f"a round {i // 10 + 1}", run_id=run_a)
                core.bus.publish("participant_state", "p online", participant_id="p", state="on")

    server.run_sync(fill)
    seqs_a = [e.seq for e in server.run_sync(lambda: core.store.events_after(0, run_a, 1000))]
    client = server.control()
    try:
        yield Fixture(server, client, run_a, run_b, seqs_a)
    finally:
        client.close()
        server.stop()


def test_pages_go_back_newest_first_without_gaps(history: Fixture) -> None:
    c = history.client
    assert len(history.seqs_a) == 1 + 30 + 3  # "created", logs, round ends
    pages: list[list[int]] = []
    before = 0
    while True:
        reply = c.list_events(history.run_a, before_seq=before, limit=10)
        pages.append([e.seq for e in reply.events])
        if not reply.has_more:
            break
        before = reply.events[-1].seq
    assert [len(p) for p in pages] == [10, 10, 10, 4]
    assert [s for p in pages for s in p] == history.seqs_a[::-1]
    newest = c.list_events(history.run_a, limit=1).events[0]
    assert (newest.kind, newest.message, newest.run_id) == (
        "round_finished",
        "a round 3",
        history.run_a,
    )
    # exactly one page's worth left: no "more" promised
    last = c.list_events(history.run_a, before_seq=history.seqs_a[4], limit=4)
    assert [e.seq for e in last.events] == history.seqs_a[3::-1] and not last.has_more


def test_run_and_kind_filters(history: Fixture) -> None:
    c = history.client
    a = c.list_events(history.run_a, limit=1000).events
    assert {e.run_id for e in a} == {history.run_a}
    everything = c.list_events("", limit=1000).events
    assert {e.run_id for e in everything} == {history.run_a, history.run_b, ""}
    seqs = [e.seq for e in everything]
    assert seqs == sorted(seqs, reverse=True) and len(set(seqs)) == len(seqs)
    rounds = c.list_events(history.run_a, kinds=["round_finished"]).events
    assert [e.message for e in rounds] == ["a round 3", "a round 2", "a round 1"]
    both = c.list_events(history.run_a, kinds=["round_finished", "run_state"]).events
    assert [e.kind for e in both] == ["round_finished"] * 3 + ["run_state"]
    states = c.list_events("", kinds=["participant_state"], limit=2)
    assert [e.participant_id for e in states.events] == ["p", "p"] and states.has_more
    assert c.list_events(history.run_b, kinds=["round_finished"]).events == []


def test_limit_defaults_to_200_and_is_capped(history: Fixture) -> None:
    c = history.client
    server = history.server
    run_id = server.run_sync(
        lambda: server.core.create_run("many", small_config().model_dump_json(), []).run_id
    )
    server.run_sync(
        lambda: [server.core.bus.publish("log", f"{i}", run_id=run_id) for i in range(205)]
    )
    reply = c.list_events(run_id)
    assert len(reply.events) == 200 and reply.has_more
    assert reply.events[0].message == "204"
    assert len(c.list_events(run_id, limit=1000).events) == 206
    with pytest.raises(ControlError) as err:
        c.list_events(run_id, limit=1001)
    assert err.value.code == "INVALID_ARGUMENT"
    assert "at most 1000" in str(err.value) and "1001" in str(err.value)


def test_bad_arguments_are_refused_with_a_clear_message(history: Fixture) -> None:
    c = history.client
    with pytest.raises(ControlError) as err:
        c.list_events("no-such-run")
    assert err.value.code == "NOT_FOUND" and "No run 'no-such-run'" in str(err.value)
    with pytest.raises(ControlError) as err:
        c.list_events(history.run_a, kinds=["Round Finished; DROP TABLE"])
    assert err.value.code == "INVALID_ARGUMENT" and "not an event kind" in str(err.value)
    with pytest.raises(ControlError) as err:
        c.list_events(history.run_a, kinds=[f"k{i}" for i in range(33)])
    assert err.value.code == "INVALID_ARGUMENT" and "At most 32 kinds" in str(err.value)


@pytest.mark.parametrize("before", [2**63 - 1, 2**63, 2**64 - 1])
def test_a_huge_before_seq_means_from_the_newest(history: Fixture, before: int) -> None:
    """before_seq is uint64, the databases' integers signed 64-bit: no overflow, no crash."""
    reply = history.client.list_events(history.run_a, before_seq=before, limit=3)
    assert [e.seq for e in reply.events] == history.seqs_a[:-4:-1]


def test_the_operator_token_is_needed(history: Fixture) -> None:
    stub = history.client.stub
    with pytest.raises(grpc.RpcError) as err:
        stub.ListEvents(control_pb2.ListEventsRequest(), metadata=[("authorization", "Bearer x")])
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_runs_events_command_prints_the_history(
    history: Fixture, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from fedmetamal import cli_ops

    monkeypatch.setattr(cli_ops.console, "_width", 300)
    conn = [
        "--server",
        history.server.target,
        "--insecure",
        "--operator-token-file",
        str(history.server.server.operator_token_file),
    ]
    assert run_cli(["runs", "events", history.run_a, "--limit", "5", *conn]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if " a " in line or "a round" in line]
    # the newest last, as a terminal reads; the page is the 5 newest events
    assert "a round 3" in lines[-1] and "a 26" in lines[0], out
    assert f"older events: --before {history.seqs_a[-5]}" in out
    assert run_cli(["runs", "events", history.run_a, "--kind", "round_finished", *conn]) == 0
    out = capsys.readouterr().out
    assert out.count("round_finished") == 3 and "a 1" not in out and "older events" not in out
    assert run_cli(["runs", "events", history.run_a, "--limit", "0", *conn]) != 0
    captured = capsys.readouterr()
    assert "1 to 1000" in captured.err + captured.out
    assert run_cli(["runs", "events", "nope", *conn]) != 0
    captured = capsys.readouterr()
    assert "No run 'nope'" in captured.err + captured.out
