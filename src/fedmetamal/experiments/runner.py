"""Runs a suite: every planned run once, in this process or in worker processes, resumably.

The state of a run is its directory, nothing else (see :mod:`run_state`), so a suite can be
stopped at any moment (Ctrl-C, a crash, a full disk) and resumed by running the same command
again; finished runs are never touched. The manifest and the suite file copy are written
atomically before anything runs, and ``status.jsonl`` gets one fsynced line per outcome.
How runs execute (in-process or in spawned workers) is :mod:`run_pool`'s business; this module
plans, orders, records and reports events.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedmetamal.errors import ConfigError
from fedmetamal.experiments.run_pool import (
    EventHandler,
    available_cores,
    resolve_jobs,
    run_in_pool,
    run_inline,
)
from fedmetamal.experiments.run_state import (
    RunState,
    RunStatus,
    StatusLog,
    clear_attempt,
    inspect_run,
    is_locked,
    suite_lock,
    write_suite_file,
)
from fedmetamal.experiments.run_worker import clear_dataset_cache, dataset_key
from fedmetamal.experiments.suite import (
    PlannedRun,
    Suite,
    check_suite_dir,
    default_suite_dir,
    load_suite,
    read_manifest,
)

# --------------------------------------------------------------------------- the suite


@dataclass
class SuiteOutcome:
    """What ``run_suite`` did: counts of this session's outcomes and where the suite is."""

    suite_dir: Path
    name: str
    total: int
    jobs: int = 1
    finished: int = 0  # run (and finished) now
    skipped: int = 0  # finished in an earlier session
    failed: int = 0  # failed now, or earlier and not retried
    seconds: float = 0.0
    failures: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class SuitePlan:
    """A validated suite, where it goes, and what each run's directories say (writes nothing)."""

    suite: Suite
    suite_dir: Path
    states: dict[str, RunState]

    def count(self, status: RunStatus) -> int:
        return sum(s.status == status for s in self.states.values())


def plan_suite(suite_path: Path | str, out_dir: Path | str | None = None) -> SuitePlan:
    """Validate a suite and its directory and look at each run's state, writing nothing."""
    suite = load_suite(suite_path)
    suite_dir = Path(out_dir) if out_dir is not None else default_suite_dir(suite)
    check_suite_dir(suite, suite_dir)
    runs_dir = suite_dir.resolve() / "runs"
    states = {r.id: inspect_run(runs_dir, r.id) for r in suite.runs}
    return SuitePlan(suite, suite_dir.resolve(), states)


def run_suite(
    suite_path: Path | str,
    out_dir: Path | str | None = None,
    jobs: int | str | None = None,
    retry_failed: bool = False,
    on_event: EventHandler | None = None,
) -> SuiteOutcome:
    """Run every run of a suite that has not finished; return the session's counts.

    Everything is validated before anything is written. Events passed to ``on_event``:
    ``plan`` (once: total, done, pending, jobs), then per run ``skip`` (finished earlier),
    ``start``, ``finish`` or ``fail`` (``previous`` when it failed in an earlier session and
    ``retry_failed`` is off), and ``interrupted`` before a KeyboardInterrupt is re-raised.
    """
    _refuse_in_worker_start()
    t0 = time.perf_counter()
    plan = plan_suite(suite_path, out_dir)
    suite, suite_dir = plan.suite, plan.suite_dir
    emit = on_event or (lambda _event: None)
    runs_dir = suite_dir / "runs"
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(
            f"Cannot create suite directory '{suite_dir}': {err.strerror or err}.",
            "Choose a writable folder with --out.",
        ) from None
    outcome = SuiteOutcome(suite_dir, suite.name, len(suite.runs))
    with suite_lock(suite_dir):
        write_suite_file(suite_dir / "suite.yaml", suite.text)
        manifest = json.dumps(suite.manifest(), indent=2, ensure_ascii=False, default=str)
        write_suite_file(suite_dir / "manifest.json", manifest + "\n")
        log = StatusLog(suite_dir / "status.jsonl")
        try:
            _run_all(suite, runs_dir, jobs, retry_failed, emit, log, outcome)
        finally:
            log.close()
            clear_dataset_cache()
    outcome.seconds = time.perf_counter() - t0
    return outcome


def _refuse_in_worker_start() -> None:
    """A spawned worker re-imports the parent's script; running the suite there would recurse."""
    import sys

    frame = sys._getframe()
    while frame is not None and frame.f_code.co_name != "_fixup_main_from_path":
        frame = frame.f_back
    if frame is not None:
        raise ConfigError(
            "run_suite was called while a worker process imported the calling script.",
            "Put the script's call under `if __name__ == '__main__':`.",
        )


def _group_by_dataset(runs: list[PlannedRun]) -> None:
    """Reorder ``runs`` in place so that equal datasets are next to each other (else in grid
    order): each process then loads a dataset once."""
    first: dict[str, int] = {}
    for i, run in enumerate(runs):
        first.setdefault(dataset_key(run.config), i)
    runs.sort(key=lambda r: first[dataset_key(r.config)])


def _run_all(
    suite: Suite,
    runs_dir: Path,
    jobs: int | str | None,
    retry_failed: bool,
    emit: EventHandler,
    log: StatusLog,
    outcome: SuiteOutcome,
) -> None:
    states = {r.id: inspect_run(runs_dir, r.id) for r in suite.runs}  # fresh, under the lock
    pending: list[PlannedRun] = []
    done_before: list[tuple[PlannedRun, RunState]] = []
    for run in suite.runs:
        state = states[run.id]
        if state.status == "finished" or (state.status == "failed" and not retry_failed):
            done_before.append((run, state))
        else:
            pending.append(run)
    _group_by_dataset(pending)
    n_jobs = resolve_jobs(jobs, suite, pending)
    outcome.jobs = n_jobs
    emit(
        {
            "event": "plan",
            "suite": suite.name,
            "suite_dir": str(runs_dir.parent),
            "metric_names": list(suite.metrics),
            "total": len(suite.runs),
            "done": sum(s.status == "finished" for _, s in done_before),
            "failed_before": sum(s.status == "failed" for _, s in done_before),
            "pending": len(pending),
            "jobs": n_jobs,
        }
    )
    for run, state in done_before:
        row: dict[str, Any] = {"id": run.id, "seconds": state.seconds}
        if state.status == "finished":
            outcome.skipped += 1
            log.write({**row, "status": "skipped"})
            emit({"event": "skip", **row, "settings": run.settings, "metrics": state.metrics})
        else:
            failure = {**row, "error": state.error, "message": state.message, "previous": True}
            outcome.failed += 1
            outcome.failures.append(failure)
            log.write({**failure, "status": "failed"})
            emit({"event": "fail", **failure, "settings": run.settings})

    recorded = 0

    def record(run: PlannedRun, result: dict[str, Any]) -> None:
        nonlocal recorded
        recorded += 1
        row = {k: result[k] for k in ("id", "seconds", "error", "message") if k in result}
        if result["status"] == "finished":
            outcome.finished += 1
            log.write({**row, "status": "finished"})
            emit({"event": "finish", **row, "settings": run.settings, "metrics": result["metrics"]})
        else:
            outcome.failed += 1
            outcome.failures.append({**row, "previous": False})
            log.write({**row, "status": "failed"})
            emit({"event": "fail", **row, "settings": run.settings, "previous": False})

    for run in pending:
        clear_attempt(runs_dir, run.id, failed_too=True)
    payloads = {r.id: {"id": r.id, "config": r.resolved(runs_dir)} for r in pending}
    try:
        if n_jobs == 1:
            run_inline(pending, payloads, runs_dir, record, emit)
        else:
            threads = max(1, available_cores() // n_jobs)
            run_in_pool(pending, payloads, n_jobs, threads, runs_dir, record, emit)
    except KeyboardInterrupt:
        emit(
            {
                "event": "interrupted",
                "finished": outcome.finished,
                "remaining": len(pending) - recorded,
            }
        )
        raise


# --------------------------------------------------------------------------- status


@dataclass
class SuiteStatus:
    """Each run of a suite directory's manifest with its state."""

    suite_dir: Path
    manifest: dict[str, Any]
    runs: list[tuple[dict[str, Any], RunState]]

    def counts(self) -> dict[str, int]:
        out = {k: 0 for k in ("finished", "failed", "running", "incomplete", "pending")}
        for _, state in self.runs:
            out[state.status] += 1
        return out


def suite_status(suite_dir: Path | str) -> SuiteStatus:
    """The state of every run a suite directory's manifest lists."""
    suite_dir = Path(suite_dir)
    manifest = read_manifest(suite_dir)
    runs_dir = suite_dir / "runs"
    active = is_locked(suite_dir)
    rows = []
    for entry in manifest.get("runs", []):
        state = inspect_run(runs_dir, str(entry.get("id")))
        if active and state.status == "incomplete" and state.error is None:
            state.status = "running"
        rows.append((entry, state))
    return SuiteStatus(suite_dir, manifest, rows)
