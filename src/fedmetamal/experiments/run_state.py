"""A run's state is its directory, nothing else; this module reads and tidies those directories.

``runs/<id>/summary.json`` with status finished means done (``api.simulate`` renames a run
directory only once it is complete), a ``runs/<id>.failed*`` directory means it failed, and a
``runs/<id>.partial`` left by a killed process is removed and redone. The suite-level files the
runner keeps beside the runs are here too: the suite and manifest copies (written atomically),
``status.jsonl`` (one fsynced line per outcome, repaired after a torn write) and the lock that
keeps two processes from running one suite at once.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from fedmetamal.config import build_config, dump_config
from fedmetamal.errors import ConfigError
from fedmetamal.experiments.atomic_write import write_atomic
from fedmetamal.experiments.suite_layout import INTERRUPTS, failed_dirs

RunStatus = Literal["finished", "failed", "incomplete", "running", "pending"]


# --------------------------------------------------------------------------- suite files


def write_suite_file(path: Path, text: str) -> None:
    """Write a suite-level file atomically; a failed write is a ConfigError saying what to do."""
    try:
        write_atomic(path, text)
    except OSError as err:
        raise ConfigError(
            f"Cannot write '{path}': {err.strerror or err}.",
            "Free disk space or choose a writable folder with --out.",
        ) from None


class StatusLog:
    """``status.jsonl``: appended one fsynced line at a time."""

    def __init__(self, path: Path) -> None:
        torn = path.exists() and path.stat().st_size > 0 and not _ends_with_newline(path)
        self._file = path.open("a", encoding="utf-8")
        if torn:  # a line cut short by a killed process: start a fresh line
            self._file.write("\n")

    def write(self, row: dict[str, Any]) -> None:
        row = {**row, "time": datetime.now(UTC).isoformat(timespec="seconds")}
        self._file.write(json.dumps(row, default=str) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


@contextlib.contextmanager
def suite_lock(suite_dir: Path) -> Iterator[None]:
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


def is_locked(suite_dir: Path) -> bool:
    """Whether a process holds the suite's lock now (its runs without outcome are running)."""
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


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def inspect_run(runs_dir: Path, run_id: str) -> RunState:
    """The state of run ``run_id`` under ``runs_dir`` (finished, failed, incomplete, pending)."""
    final = runs_dir / run_id
    summary = _read_json(final / "summary.json")
    if summary is not None and summary.get("status") == "finished":
        metrics = summary.get("final_metrics") or {}
        return RunState(run_id, "finished", final, summary.get("seconds"), metrics)
    failed = failed_dirs(runs_dir, run_id)
    if failed:
        info = _read_json(failed[-1] / "error.json") or {}
        error = str(info.get("error") or "unknown error")
        message = str(info.get("message") or "the run stopped before saying why")
        status: RunStatus = "incomplete" if error in INTERRUPTS else "failed"
        return RunState(run_id, status, failed[-1], error=error, message=message)
    partial = runs_dir / f"{run_id}.partial"
    if partial.exists() or final.exists():
        return RunState(run_id, "incomplete", partial if partial.exists() else final)
    return RunState(run_id, "pending")


def clear_attempt(runs_dir: Path, run_id: str, failed_too: bool) -> None:
    """Remove what an unfinished attempt of ``run_id`` left (and its failures, if asked)."""
    for path in (runs_dir / f"{run_id}.partial", runs_dir / run_id):
        if path.exists():
            shutil.rmtree(path)
    for path in failed_dirs(runs_dir, run_id):
        info = _read_json(path / "error.json") or {}
        if failed_too or info.get("error") in INTERRUPTS:
            shutil.rmtree(path)


def record_failure(runs_dir: Path, run_id: str, config: dict[str, Any], result: dict) -> None:
    """Make sure a failed run has a ``<id>.failed`` directory with ``error.json``.

    ``api.simulate`` writes one for errors during training; errors before its run directory
    exists (loading data, partitioning) and crashed workers get theirs here.
    """
    if failed_dirs(runs_dir, run_id):
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
