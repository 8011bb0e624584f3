"""Runs a suite: every planned run once, in this process or in worker processes, resumably.

The state of a run is its directory, nothing else: ``runs/<id>/summary.json`` with status
finished means done (``api.simulate`` renames a run directory only once it is complete), a
``runs/<id>.failed*`` directory means it failed, and a ``runs/<id>.partial`` left by a killed
process is removed and redone. So a suite can be stopped at any moment (Ctrl-C, a crash, a full
disk) and resumed by running the same command again; finished runs are never touched.

The manifest and the suite file copy are written atomically before anything runs, and
``status.jsonl`` gets one fsynced line per outcome. Worker processes are started with "spawn"
(never forked from a process that has loaded torch); each keeps the datasets it loaded, keyed
by their settings, so a grid over algorithms reads a CSV once per worker.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import signal
import time
import traceback
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from fedmetamal.config import RunConfig, build_config, dump_config
from fedmetamal.errors import ConfigError, FedMetaMalError
from fedmetamal.experiments.suite import (
    PlannedRun,
    Suite,
    check_suite_dir,
    default_suite_dir,
    load_suite,
    read_manifest,
)

if TYPE_CHECKING:
    from fedmetamal.data.dataset import Dataset

EventHandler = Callable[[dict[str, Any]], None]
RunStatus = Literal["finished", "failed", "incomplete", "running", "pending"]

#: Errors that mean "stopped", not "failed": such a run is redone on resume.
_INTERRUPTS = {"KeyboardInterrupt", "SystemExit"}

#: Memory a worker needs besides its data (Python, torch, model, buffers), for ``--jobs auto``.
_WORKER_BYTES = 768 * 2**20

#: Datasets a process keeps loaded (runs are ordered so that equal datasets come together).
_CACHE_SIZE = 2
_DATASETS: OrderedDict[str, Dataset] = OrderedDict()


# --------------------------------------------------------------------------- files


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``path`` so that it holds either its old or its new content, never a torn file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise ConfigError(
            f"Cannot write '{path}': {err.strerror or err}.",
            "Free disk space or choose a writable folder with --out.",
        ) from None


class _StatusLog:
    """``status.jsonl``: appended one fsynced line at a time."""

    def __init__(self, path: Path) -> None:
        torn = path.exists() and path.stat().st_size > 0 and not _ends_with_newline(path)
        self._file = path.open("a", encoding="utf-8")
        if torn:  # a line cut short by a killed process: start a fresh line
            self._file.write("\n")

    def write(self, row: dict[str, Any]) -> None:
        row = {**row, "time": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        self._file.write(json.dumps(row, default=str) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@contextlib.contextmanager
def _suite_lock(suite_dir: Path) -> Iterator[None]:
    """Hold ``<suite_dir>/.lock`` so that two processes never run one suite at once."""
    try:
        import fcntl
    except ImportError:  # no advisory locks on this platform
        yield
        return
    handle = (suite_dir / ".lock").open("a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(
                f"Suite directory '{suite_dir}' is being run by another process.",
                "Wait for it to finish, or use another folder with --out.",
            ) from None
        except OSError:  # a file system without locks: go on unlocked
            pass
        yield
    finally:
        handle.close()


def _is_locked(suite_dir: Path) -> bool:
    try:
        import fcntl
    except ImportError:
        return False
    lock = suite_dir / ".lock"
    if not lock.exists():
        return False
    with lock.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        except OSError:
            return False
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


# --------------------------------------------------------------------------- run states


@dataclass
class RunState:
    """What a run's directories say about it."""

    id: str
    status: RunStatus
    path: Path | None = None
    seconds: float | None = None
    metrics: dict[str, float | None] = field(default_factory=dict)
    error: str | None = None
    message: str | None = None


def _failed_dirs(runs_dir: Path, run_id: str) -> list[Path]:
    found = runs_dir.glob(glob.escape(run_id) + ".failed*")
    return sorted((p for p in found if p.is_dir()), key=lambda p: p.stat().st_mtime)


def inspect_run(runs_dir: Path, run_id: str) -> RunState:
    """The state of run ``run_id`` under ``runs_dir`` (finished, failed, incomplete, pending)."""
    final = runs_dir / run_id
    summary = _read_json(final / "summary.json")
    if summary is not None and summary.get("status") == "finished":
        metrics = summary.get("final_metrics") or {}
        return RunState(run_id, "finished", final, summary.get("seconds"), metrics)
    failed = _failed_dirs(runs_dir, run_id)
    if failed:
        info = _read_json(failed[-1] / "error.json") or {}
        error = str(info.get("error") or "unknown error")
        message = str(info.get("message") or "the run stopped before saying why")
        status: RunStatus = "incomplete" if error in _INTERRUPTS else "failed"
        return RunState(run_id, status, failed[-1], error=error, message=message)
    partial = runs_dir / f"{run_id}.partial"
    if partial.exists() or final.exists():
        return RunState(run_id, "incomplete", partial if partial.exists() else final)
    return RunState(run_id, "pending")


def _clear(runs_dir: Path, run_id: str, failed_too: bool) -> None:
    """Remove what an unfinished attempt of ``run_id`` left (and its failures, if asked)."""
    for path in (runs_dir / f"{run_id}.partial", runs_dir / run_id):
        if path.exists():
            shutil.rmtree(path)
    for path in _failed_dirs(runs_dir, run_id):
        info = _read_json(path / "error.json") or {}
        if failed_too or info.get("error") in _INTERRUPTS:
            shutil.rmtree(path)


def _record_failure(runs_dir: Path, run_id: str, config: dict[str, Any], result: dict) -> None:
    """Make sure a failed run has a ``<id>.failed`` directory with ``error.json``.

    ``api.simulate`` writes one for errors during training; errors before its run directory
    exists (loading data, partitioning) and crashed workers get theirs here.
    """
    if _failed_dirs(runs_dir, run_id):
        return
    failed = runs_dir / f"{run_id}.failed"
    partial = runs_dir / f"{run_id}.partial"
    if partial.exists():
        partial.rename(failed)
    else:
        failed.mkdir(parents=True)
        (failed / "config.yaml").write_text(dump_config(build_config(config)), encoding="utf-8")
    info = {"status": "failed", "error": result["error"], "message": result["message"]}
    (failed / "error.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    if result.get("traceback"):
        (failed / "traceback.txt").write_text(result["traceback"], encoding="utf-8")


# --------------------------------------------------------------------------- one run


def dataset_key(cfg: RunConfig) -> str:
    """Runs with equal keys load the same dataset (the loaders are seeded by ``cfg.seed``)."""
    return json.dumps([cfg.dataset.model_dump(mode="json"), cfg.seed], sort_keys=True)


def _dataset(cfg: RunConfig) -> Dataset:
    from fedmetamal.api import load_data

    key = dataset_key(cfg)
    if key in _DATASETS:
        _DATASETS.move_to_end(key)
        return _DATASETS[key]
    ds = load_data(cfg)
    _DATASETS[key] = ds
    while len(_DATASETS) > _CACHE_SIZE:
        _DATASETS.popitem(last=False)
    return ds


def execute_run(payload: dict[str, Any]) -> dict[str, Any]:
    """Run one planned run (``{"id", "config", "threads"}``); never raises for a failed run.

    Returns ``{"id", "status": "finished"|"failed", "seconds", ...}``: final metrics when it
    finished, error class and message when it failed. Runs in a worker process or in-process.
    """
    import torch

    from fedmetamal.api import simulate

    run_id, config = payload["id"], payload["config"]
    runs_dir = Path(config["output"]["dir"])
    t0 = time.perf_counter()
    previous = torch.get_num_threads()
    try:
        cfg = build_config(config)
        threads = cfg.runtime.threads or payload.get("threads")
        if threads:
            torch.set_num_threads(threads)
        result = simulate(cfg, dataset=_dataset(cfg))
        metrics = {k: (v if v == v else None) for k, v in result.final_metrics.items()}
        return {
            "id": run_id,
            "status": "finished",
            "seconds": round(time.perf_counter() - t0, 3),
            "metrics": metrics,
        }
    except Exception as err:
        failure = {
            "id": run_id,
            "status": "failed",
            "seconds": round(time.perf_counter() - t0, 3),
            "error": type(err).__name__,
            "message": str(err),
        }
        if not isinstance(err, FedMetaMalError):  # a bug, not a setting: keep the traceback
            failure["traceback"] = traceback.format_exc()
        _record_failure(runs_dir, run_id, config, failure)
        return failure
    finally:
        torch.set_num_threads(previous)


def _init_worker(threads: int) -> None:
    """Worker set-up: the parent handles Ctrl-C; ``threads`` torch/BLAS threads each."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)


# --------------------------------------------------------------------------- parallelism


def available_cores() -> int:
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


def _terminate(pool: ProcessPoolExecutor) -> None:
    processes = list(getattr(pool, "_processes", {}).values())
    for proc in processes:
        if proc.is_alive():
            proc.terminate()
    for proc in processes:
        proc.join(timeout=10)


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
    with _suite_lock(suite_dir):
        atomic_write_text(suite_dir / "suite.yaml", suite.text)
        manifest = json.dumps(suite.manifest(), indent=2, ensure_ascii=False, default=str)
        atomic_write_text(suite_dir / "manifest.json", manifest + "\n")
        log = _StatusLog(suite_dir / "status.jsonl")
        try:
            _run_all(suite, runs_dir, jobs, retry_failed, emit, log, outcome)
        finally:
            log.close()
            _DATASETS.clear()
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


def _run_all(
    suite: Suite,
    runs_dir: Path,
    jobs: int | str | None,
    retry_failed: bool,
    emit: EventHandler,
    log: _StatusLog,
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
    # equal datasets next to each other, so each process loads a dataset once
    first: dict[str, int] = {}
    for i, run in enumerate(pending):
        first.setdefault(dataset_key(run.config), i)
    pending.sort(key=lambda r: first[dataset_key(r.config)])
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
        _clear(runs_dir, run.id, failed_too=True)
    payloads = {r.id: {"id": r.id, "config": r.resolved(runs_dir)} for r in pending}
    try:
        if n_jobs == 1:
            _run_inline(pending, payloads, runs_dir, record, emit)
        else:
            threads = max(1, available_cores() // n_jobs)
            _run_pool(pending, payloads, n_jobs, threads, runs_dir, record, emit)
    except KeyboardInterrupt:
        emit(
            {
                "event": "interrupted",
                "finished": outcome.finished,
                "remaining": len(pending) - recorded,
            }
        )
        raise


def _run_inline(
    pending: list[PlannedRun],
    payloads: dict[str, dict[str, Any]],
    runs_dir: Path,
    record: Callable[[PlannedRun, dict[str, Any]], None],
    emit: EventHandler,
) -> None:
    for run in pending:
        emit({"event": "start", "id": run.id, "settings": run.settings})
        try:
            result = execute_run(payloads[run.id])
        except KeyboardInterrupt:
            _clear(runs_dir, run.id, failed_too=False)
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
    _record_failure(runs_dir, run.id, payload["config"], failure)
    return failure


def _run_pool(
    pending: list[PlannedRun],
    payloads: dict[str, dict[str, Any]],
    jobs: int,
    threads: int,
    runs_dir: Path,
    record: Callable[[PlannedRun, dict[str, Any]], None],
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
            jobs, mp_context=ctx, initializer=_init_worker, initargs=(threads,)
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
                _clear(runs_dir, run.id, failed_too=False)
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        if completed == 0 and (crashed or queue):
            for run in crashed:
                _clear(runs_dir, run.id, failed_too=False)
            raise ConfigError(
                "The worker processes died before finishing any run (see their error above: "
                "out of memory, or they could not start). A script that calls run_suite with "
                "jobs > 1 must do so under `if __name__ == '__main__':`, because each worker "
                "imports the script.",
                "Fix that, or run with --jobs 1 (or fewer jobs).",
            )
        for run in crashed:
            record(run, _crashed(run, payloads[run.id], runs_dir))


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
    active = _is_locked(suite_dir)
    rows = []
    for entry in manifest.get("runs", []):
        state = inspect_run(runs_dir, str(entry.get("id")))
        if active and state.status == "incomplete" and state.error is None:
            state.status = "running"
        rows.append((entry, state))
    return SuiteStatus(suite_dir, manifest, rows)
