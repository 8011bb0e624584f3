"""Executing a suite's pending runs: in this process, or in a pool of spawned workers.

How many at once comes from the cores this process may use and the memory each run needs.
When a worker dies (killed, out of memory) its runs are recorded as failed and a fresh pool
takes the rest; Ctrl-C stops the workers and clears what their runs left half-written.
"""

from __future__ import annotations

import contextlib
import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fedmetamal.config import RunConfig
from fedmetamal.errors import ConfigError, FedMetaMalError
from fedmetamal.experiments.run_state import clear_attempt, record_failure
from fedmetamal.experiments.run_worker import execute_run, init_worker

if TYPE_CHECKING:
    from fedmetamal.experiments.suite import Suite
    from fedmetamal.experiments.suite_grid import PlannedRun

EventHandler = Callable[[dict[str, Any]], None]
Recorder = Callable[["PlannedRun", dict[str, Any]], None]

#: Memory a worker needs besides its data (Python, torch, model, buffers), for ``--jobs auto``.
_WORKER_BYTES = 768 * 2**20


# --------------------------------------------------------------------------- how many at once


def available_cores() -> int:
    """The cores this process may run on (its affinity where the platform tells it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _available_memory() -> int | None:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    with contextlib.suppress(AttributeError, ValueError, OSError):
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return None


def _data_bytes(cfg: RunConfig) -> int:
    """A rough size of a run's dataset in memory (float32 features)."""
    d = cfg.dataset
    if d.source == "synthetic":
        n = min(d.synthetic.n_samples, d.max_samples or d.synthetic.n_samples)
        return n * d.synthetic.n_features * 4
    from fedmetamal.data.sources import KNOWN_DATASETS, resolve_shared_data

    try:
        path = resolve_shared_data(d.source) if d.source in KNOWN_DATASETS else Path(d.source)
        if path.is_dir():
            return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        return path.stat().st_size * 2
    except (FedMetaMalError, OSError):
        return 0


def memory_per_run(cfg: RunConfig) -> int:
    """Bytes one worker needs for ``cfg``: the data, its client copies and preprocessed copies."""
    return _WORKER_BYTES + 4 * _data_bytes(cfg)


def resolve_jobs(jobs: int | str | None, suite: Suite, pending: list[PlannedRun]) -> int:
    """How many runs go at once: ``jobs`` (a number or "auto"), else the suite's ``parallel``.

    ``auto`` is the smallest of the cores this process may use, the pending runs, and what
    the available memory holds at the largest run's estimated footprint.
    """
    requested: int | str = suite.parallel if jobs is None else jobs
    if isinstance(requested, str) and requested != "auto":
        try:
            requested = int(requested)
        except ValueError:
            raise ConfigError(
                f"--jobs expects a number or 'auto', got '{requested}'.", "e.g. --jobs 4"
            ) from None
    if requested == "auto":
        n = available_cores()
        memory = _available_memory()
        if memory is not None and pending:
            per_run = max(memory_per_run(r.config) for r in pending)
            n = min(n, max(1, memory // per_run))
    else:
        n = int(requested)
        if n < 1:
            raise ConfigError(f"--jobs must be at least 1, got {n}.", "e.g. --jobs 4")
    return max(1, min(n, len(pending) or 1))


# --------------------------------------------------------------------------- running them


def run_inline(
    pending: list[PlannedRun],
    payloads: dict[str, dict[str, Any]],
    runs_dir: Path,
    record: Recorder,
    emit: EventHandler,
) -> None:
    """Run ``pending`` one after another in this process (``--jobs 1``)."""
    for run in pending:
        emit({"event": "start", "id": run.id, "settings": run.settings})
        try:
            result = execute_run(payloads[run.id])
        except KeyboardInterrupt:
            clear_attempt(runs_dir, run.id, failed_too=False)
            raise
        record(run, result)


def _crashed(run: PlannedRun, payload: dict[str, Any], runs_dir: Path) -> dict[str, Any]:
    failure = {
        "id": run.id,
        "status": "failed",
        "seconds": None,
        "error": "WorkerCrashed",
        "message": "the worker process running it died (killed, or out of memory?); "
        "rerun with --retry-failed and fewer --jobs",
    }
    record_failure(runs_dir, run.id, payload["config"], failure)
    return failure


def _terminate(pool: ProcessPoolExecutor) -> None:
    processes = list(getattr(pool, "_processes", {}).values())
    for proc in processes:
        if proc.is_alive():
            proc.terminate()
    for proc in processes:
        proc.join(timeout=10)


def run_in_pool(
    pending: list[PlannedRun],
    payloads: dict[str, dict[str, Any]],
    jobs: int,
    threads: int,
    runs_dir: Path,
    record: Recorder,
    emit: EventHandler,
) -> None:
    """Keep ``jobs`` runs going in spawned workers.

    When a worker dies (killed, out of memory) the pool breaks: the runs it held are recorded
    as failed and a new pool takes the rest; a pool that breaks before finishing any run
    stops the suite instead, since its workers cannot start or run at all.
    """
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    queue = deque(pending)
    while queue:
        pool = ProcessPoolExecutor(
            jobs, mp_context=ctx, initializer=init_worker, initargs=(threads,)
        )
        inflight: dict[Future[dict[str, Any]], PlannedRun] = {}
        completed = 0
        crashed: list[PlannedRun] = []
        try:
            while (queue or inflight) and not crashed:
                while queue and len(inflight) < jobs:
                    try:
                        future = pool.submit(execute_run, payloads[queue[0].id])
                    except BrokenProcessPool:
                        break
                    run = queue.popleft()
                    inflight[future] = run
                    emit({"event": "start", "id": run.id, "settings": run.settings})
                if not inflight:  # the pool broke while idle
                    break
                done, _ = wait(inflight, return_when=FIRST_COMPLETED)
                for future in done:
                    run = inflight.pop(future)
                    try:
                        result = future.result()
                    except BrokenProcessPool:
                        crashed.append(run)
                        continue
                    completed += 1
                    record(run, result)
            crashed += inflight.values()  # a broken pool fails every run it holds
            inflight.clear()
        except BaseException:
            _terminate(pool)
            for run in inflight.values():
                clear_attempt(runs_dir, run.id, failed_too=False)
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        if completed == 0 and (crashed or queue):
            for run in crashed:
                clear_attempt(runs_dir, run.id, failed_too=False)
            raise ConfigError(
                "The worker processes died before finishing any run (see their error above: "
                "out of memory, or they could not start). A script that calls run_suite with "
                "jobs > 1 must do so under `if __name__ == '__main__':`, because each worker "
                "imports the script.",
                "Fix that, or run with --jobs 1 (or fewer jobs).",
            )
        for run in crashed:
            record(run, _crashed(run, payloads[run.id], runs_dir))
