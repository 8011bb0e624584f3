"""Parallel extraction in worker processes, with a time and memory bound per file.

The parser itself only reads a few header bytes, but a file on a stalled mount, a future schema
with a slow path, or a bug on a malformed input could still hang or balloon. Each worker gets a
batch of files, notes in shared memory which file of the batch it is on, and sends the batch's
records back in one message (one wake-up of the parent per batch, not per file). A worker whose
position has not moved for longer than the per-file timeout is killed: the file it was on is
recorded as a timeout, and the rest of its batch goes to a fresh worker. A worker that dies does
the same with "worker crashed". Workers run with an address-space limit, so a memory blow-up
becomes a MemoryError (a failure record), not a machine swapping.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path

from fedmetamal.features.extract_file import extract_file
from fedmetamal.features.outcome import Failure, FileRecord
from fedmetamal.features.schema import FeatureSchema

#: (absolute path to open, path to record)
Item = tuple[str, str]
#: Most files handed to a worker at once.
BATCH = 64
#: How often the parent looks at workers' positions while waiting (seconds, at most).
POLL_S = 0.5


def _limit_memory(max_mb: int) -> None:
    try:
        import resource

        limit = max_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ImportError, ValueError, OSError):  # not on this platform: the timeout still holds
        pass


def _serve(
    conn: Connection,
    position: Synchronized[int],
    schema: FeatureSchema,
    max_bytes: int,
    memory_mb: int,
) -> None:
    """Worker loop: receive a batch, extract it file by file, send the records, stop on None."""
    _limit_memory(memory_mb)
    while True:
        batch = conn.recv()
        if batch is None:
            return
        records = []
        for i, (path, shown) in enumerate(batch):
            position.value = i
            records.append(extract_file(path, schema, max_bytes, shown))
        position.value = -1
        conn.send(records)


@dataclass
class _Worker:
    process: mp.process.BaseProcess
    conn: Connection
    position: Synchronized[int]
    batch: list[Item] = field(default_factory=list)
    seen: int = -1
    since: float = 0.0


def _size(path: str) -> int:
    try:
        return Path(path).stat().st_size
    except OSError:
        return 0


class WorkerPool:
    """``jobs`` worker processes extracting files with ``schema``; see the module doc.

    The schema travels to the workers by reference (its extractor must be a module-level
    function), so test schemas work as well as registered ones.
    """

    def __init__(
        self,
        jobs: int,
        schema: FeatureSchema,
        max_bytes: int,
        timeout_s: float,
        memory_mb: int = 1024,
    ) -> None:
        self.jobs = max(1, jobs)
        self.args = (schema, max_bytes, memory_mb)
        self.timeout_s = timeout_s
        self._ctx = mp.get_context("spawn")

    def _start(self) -> _Worker:
        parent, child = self._ctx.Pipe()
        position = self._ctx.Value("i", -1, lock=False)
        process = self._ctx.Process(target=_serve, args=(child, position, *self.args), daemon=True)
        process.start()
        child.close()
        return _Worker(process, parent, position)

    @staticmethod
    def _stop(worker: _Worker, kill: bool) -> None:
        if kill:
            worker.process.kill()
        else:
            try:
                worker.conn.send(None)
            except OSError:
                worker.process.kill()
        worker.process.join(timeout=5)
        worker.conn.close()

    def _give(self, worker: _Worker, pending: deque[Item], n_workers: int) -> None:
        take = min(BATCH, max(1, len(pending) // (2 * n_workers)), len(pending))
        worker.batch = [pending.popleft() for _ in range(take)]
        worker.seen, worker.since = -1, time.monotonic()
        worker.conn.send(worker.batch)

    @staticmethod
    def _abandon(worker: _Worker, reason: str, pending: deque[Item]) -> FileRecord:
        """Record the file ``worker`` was on and give the others of its batch back."""
        at = max(worker.position.value, 0)
        path, shown = worker.batch[at]
        pending.extendleft(reversed(worker.batch[:at] + worker.batch[at + 1 :]))
        worker.batch = []
        return FileRecord(shown, _size(path), None, Failure(reason))

    def run(self, items: Iterable[Item]) -> Iterator[FileRecord]:
        """One record per item, in completion order."""
        pending: deque[Item] = deque(items)
        workers = [self._start() for _ in range(min(self.jobs, max(len(pending), 1)))]
        try:
            while pending or any(w.batch for w in workers):
                for w in workers:
                    if not w.batch and pending:
                        self._give(w, pending, len(workers))
                busy = [w for w in workers if w.batch]
                ready = wait([w.conn for w in busy], timeout=min(POLL_S, self.timeout_s))
                now = time.monotonic()
                for i, w in enumerate(workers):
                    if not w.batch:
                        continue
                    if w.conn in ready:
                        try:
                            records = w.conn.recv()
                        except (EOFError, OSError):
                            w.process.join(timeout=2)
                            why = f"worker crashed: exit code {w.process.exitcode}"
                            yield self._abandon(w, why, pending)
                            self._stop(w, kill=True)
                            workers[i] = self._start()
                            continue
                        w.batch = []
                        yield from records
                    elif w.position.value != w.seen:
                        w.seen, w.since = w.position.value, now
                    elif now - w.since > self.timeout_s:
                        why = f"timeout: extraction took longer than {self.timeout_s:g} s"
                        yield self._abandon(w, why, pending)
                        self._stop(w, kill=True)
                        workers[i] = self._start()
        finally:
            for w in workers:
                self._stop(w, kill=bool(w.batch))
