"""Tasks waiting for participants, and the results they send back.

Participants pull (they may sit behind NAT): a task posted for a participant waits here until
its next ``PullTask``. A delivered task stays until its result arrives or the round gives up on
it, so a participant that restarts mid-round is handed the same task again. Everything here
runs on the server's event loop.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class TaskSpec:
    """One unit of work for one participant, with the tensors it downloads."""

    run_id: str
    round: int
    kind: str  # "train", "evaluate" or a secure-aggregation stage ("secagg_advertise", ...)
    participant_id: str
    slot: int
    n_slots: int
    config_json: str
    deadline: float
    lr: float
    tensors: dict[str, np.ndarray]
    #: Name -> (dtype, shape) of the tensors the result must carry.
    expected: dict[str, tuple[str, tuple[int, ...]]]
    #: Secure-aggregation tasks: the stage's input (a ``SecAggMessage``).
    secagg: Any = None
    task_id: str = field(default_factory=lambda: f"t-{uuid.uuid4().hex[:16]}")
    delivered: int = 0


@dataclass
class TaskResult:
    task_id: str
    participant_id: str
    num_samples: int
    steps: int
    train_loss: float
    metrics: dict[str, float]
    tensors: dict[str, np.ndarray]
    #: Secure-aggregation tasks: the stage's output (a ``SecAggMessage``).
    secagg: Any = None


class TaskRefused(Exception):
    """A result the server will not use; the message says why (sent to the participant)."""


class TaskBoard:
    def __init__(self) -> None:
        self._tasks: dict[str, TaskSpec] = {}
        self._futures: dict[str, asyncio.Future[TaskResult]] = {}
        self._queues: dict[str, list[str]] = {}
        self._wake: dict[str, asyncio.Event] = {}

    def post(self, spec: TaskSpec) -> asyncio.Future[TaskResult]:
        fut: asyncio.Future[TaskResult] = asyncio.get_running_loop().create_future()
        self._tasks[spec.task_id] = spec
        self._futures[spec.task_id] = fut
        self._queues.setdefault(spec.participant_id, []).append(spec.task_id)
        self._event(spec.participant_id).set()
        return fut

    def _event(self, participant_id: str) -> asyncio.Event:
        return self._wake.setdefault(participant_id, asyncio.Event())

    def _next(self, participant_id: str) -> TaskSpec | None:
        for task_id in self._queues.get(participant_id, []):
            spec = self._tasks.get(task_id)
            if spec is not None:
                return spec
        return None

    async def pull(self, participant_id: str, wait_s: float) -> TaskSpec | None:
        """The participant's oldest open task, waiting up to ``wait_s`` for one."""
        loop = asyncio.get_running_loop()
        end = loop.time() + max(0.0, wait_s)
        while True:
            spec = self._next(participant_id)
            if spec is not None:
                spec.delivered += 1
                return spec
            left = end - loop.time()
            if left <= 0:
                return None
            ev = self._event(participant_id)
            ev.clear()
            try:
                await asyncio.wait_for(ev.wait(), left)
            except TimeoutError:
                return None

    def get(self, task_id: str) -> TaskSpec | None:
        return self._tasks.get(task_id)

    def complete(self, result: TaskResult) -> None:
        fut = self._futures.get(result.task_id)
        self._remove(result.task_id)
        if fut is not None and not fut.done():
            fut.set_result(result)

    def fail(self, task_id: str, reason: str) -> None:
        fut = self._futures.get(task_id)
        self._remove(task_id)
        if fut is not None and not fut.done():
            fut.set_exception(TaskRefused(reason))

    def withdraw(self, task_ids: list[str]) -> None:
        """Forget tasks the round no longer waits for (deadline passed, run paused)."""
        for task_id in task_ids:
            fut = self._futures.get(task_id)
            self._remove(task_id)
            if fut is not None and not fut.done():
                fut.cancel()

    def withdraw_participant(self, participant_id: str, reason: str) -> None:
        for task_id in list(self._queues.get(participant_id, [])):
            self.fail(task_id, reason)

    def _remove(self, task_id: str) -> None:
        spec = self._tasks.pop(task_id, None)
        self._futures.pop(task_id, None)
        if spec is not None:
            queue = self._queues.get(spec.participant_id, [])
            if task_id in queue:
                queue.remove(task_id)

    def open_tasks(self) -> list[dict[str, Any]]:
        return [
            {"task_id": t.task_id, "run_id": t.run_id, "participant_id": t.participant_id}
            for t in self._tasks.values()
        ]
