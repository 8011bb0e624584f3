"""The task board hands a participant's open task out again after a restart, and forgets
withdrawn ones; the event bus replays stored events and then streams live ones in order."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from fedmetamal.service.events import EventBus
from fedmetamal.service.store import Store
from fedmetamal.service.tasks import TaskBoard, TaskRefused, TaskResult, TaskSpec


def _spec(pid: str = "p-1", run_id: str = "run-1") -> TaskSpec:
    return TaskSpec(
        run_id=run_id,
        round=0,
        kind="train",
        participant_id=pid,
        slot=0,
        n_slots=1,
        config_json="{}",
        deadline=0.0,
        lr=0.1,
        tensors={"params": np.zeros(3, np.float32)},
        expected={"delta": ("float32", (3,))},
    )


def test_an_open_task_is_handed_out_again_until_its_result_arrives() -> None:
    async def scenario() -> None:
        board = TaskBoard()
        assert await board.pull("p-1", 0.05) is None  # nothing yet: waits, then None
        spec = _spec()
        fut = board.post(spec)
        first = await board.pull("p-1", 1)
        again = await board.pull("p-1", 1)  # the participant restarted mid-task
        assert first is spec and again is spec and spec.delivered == 2
        assert await board.pull("p-2", 0.01) is None  # not someone else's
        board.complete(TaskResult(spec.task_id, "p-1", 10, 2, 0.5, {}, {}))
        assert (await fut).num_samples == 10
        assert await board.pull("p-1", 0.01) is None

    asyncio.run(scenario())


def test_a_waiting_pull_wakes_when_a_task_is_posted() -> None:
    async def scenario() -> None:
        board = TaskBoard()
        waiter = asyncio.create_task(board.pull("p-1", 5))
        await asyncio.sleep(0.05)
        spec = _spec()
        board.post(spec)
        assert await asyncio.wait_for(waiter, 1) is spec

    asyncio.run(scenario())


def test_withdrawn_and_failed_tasks() -> None:
    async def scenario() -> None:
        board = TaskBoard()
        a, b = _spec(), _spec()
        fa, fb = board.post(a), board.post(b)
        board.withdraw([a.task_id])
        assert fa.cancelled() and board.get(a.task_id) is None
        board.withdraw_participant("p-1", "participant revoked")
        with pytest.raises(TaskRefused, match="revoked"):
            await fb
        assert board.open_tasks() == []

    asyncio.run(scenario())


def test_watch_replays_then_streams_live_events_and_ends_with_the_run(tmp_path: Path) -> None:
    from fedmetamal.service.records import RunRecord

    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    store.add_run(RunRecord("run-1", "r", "running", "{}", [], 0.0, 0.0))
    bus = EventBus(store)

    async def scenario() -> list[str]:
        bus.attach(asyncio.get_running_loop())
        bus.publish("round_started", "one", run_id="run-1", round=1)
        bus.publish("log", "elsewhere", run_id="run-2")
        seen: list[str] = []

        async def watcher() -> None:
            async for ev in bus.watch("run-1"):
                seen.append(ev.message)

        task = asyncio.create_task(watcher())
        await asyncio.sleep(0.05)
        # from another thread, as the run engine's worker threads do
        await asyncio.to_thread(bus.publish, "round_finished", "two", run_id="run-1", round=1)
        store.update_run("run-1", state="completed")
        await asyncio.to_thread(bus.publish, "run_state", "done", run_id="run-1", state="completed")
        await asyncio.wait_for(task, 2)
        return seen

    assert asyncio.run(scenario()) == ["one", "two", "done"]
    store.close()


def test_client_state_file_restarts_a_repeated_round_from_the_state_before_it(
    tmp_path: Path,
) -> None:
    import torch

    from fedmetamal.net.local_work import ClientStateFile

    files = ClientStateFile(tmp_path)
    assert files.load_for(0) is None
    before, after = {"c": torch.zeros(2)}, {"c": torch.ones(2)}
    files.save(3, before, after)
    assert torch.equal(files.load_for(3)["c"], before["c"])  # round 3 again (server crashed)
    assert torch.equal(files.load_for(4)["c"], after["c"])  # the next round


def test_last_event_seq_names_the_newest_event(tmp_path: Path) -> None:
    from fedmetamal.service.records import EventRecord

    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    assert store.last_event_seq() == 0
    seqs = [
        store.add_event(EventRecord(kind="log", time=0.0, message=str(i))).seq for i in range(3)
    ]
    assert store.last_event_seq() == max(seqs)
    assert store.events_after(store.last_event_seq()) == []
    store.close()
