"""The network benchmark's moving parts: a `fedmetamal serve` process, participant worker
processes (many asyncio `Participant`s each), tiny local datasets, and /proc readings.

bench_network.py drives these; run as a script this module is one worker process:

    python benchmarks/network_workload.py worker SPEC.json

where SPEC.json names the server, and for each participant its join token, data files and state
directory. The worker runs until SIGTERM, then writes what it measured (each local training's
thread CPU time and wall time) next to the spec. ``network_workload.py rounds DB RUN_ID``
prints a run's stored rounds as JSON.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import json
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


# -- /proc readings (no psutil here) ----------------------------------------------------------
def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` (VmRSS), in bytes."""
    return _status_kb(pid, "VmRSS") * 1024


def peak_rss_bytes(pid: int) -> int:
    """Peak resident set size of ``pid`` (VmHWM), in bytes."""
    return _status_kb(pid, "VmHWM") * 1024


def _status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {key} in /proc/{pid}/status")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time ``pid`` has used so far (all its threads)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- data ------------------------------------------------------------------------------------
def write_datasets(
    folder: Path, n: int, rows: int, test_rows: int, features: int, seed: int = 0
) -> list[tuple[Path, Path]]:
    """``n`` participants' train and test ``.npz`` files: Gaussian features, labels from one
    fixed linear rule plus noise, the same column names everywhere."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    w = rng.normal(size=features)
    names = np.array([f"f{i}" for i in range(features)])
    out = []
    for i in range(n):
        paths = []
        for part, m in (("train", rows), ("test", test_rows)):
            X = rng.normal(size=(m, features)).astype(np.float32)
            y = ((X @ w + rng.normal(scale=0.5, size=m)) > 0).astype(np.int8)
            y[:2] = (0, 1)  # both classes in every file
            p = folder / f"p{i:04d}-{part}.npz"
            np.savez(p, X=X, y=y, feature_names=names)
            paths.append(p)
        out.append((paths[0], paths[1]))
    return out


def run_config_json(rounds: int, hidden: int, batch: int, timeout_s: float) -> str:
    """FedAvg, everyone every round, one local epoch; evaluation only after the last round."""
    from fedmetamal.config import build_config

    cfg = build_config(
        {
            "seed": 0,
            "dataset": {"source": "synthetic"},
            "model": {"hidden": [hidden]},
            "algorithm": {"name": "fedavg"},
            "training": {
                "rounds": rounds,
                "local_epochs": 1,
                "batch_size": batch,
                "client_fraction": 1.0,
            },
            "evaluation": {"every": rounds},
            "network": {
                "round_timeout_s": timeout_s,
                "start_timeout_s": timeout_s,
                "retry_delay_s": 1.0,
            },
            "output": {"onnx": False},
        }
    )
    return cfg.model_dump_json()


# -- processes -------------------------------------------------------------------------------
def _env() -> dict[str, str]:
    src = str(REPO / "src")
    path = os.environ.get("PYTHONPATH", "")
    return {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": f"{src}{os.pathsep}{path}" if path else src,
    }


def start_server(
    data_dir: Path, port: int, log: Path, profile: Path | None = None
) -> subprocess.Popen[bytes]:
    """``fedmetamal serve`` (plaintext on loopback, auto-approve), optionally under cProfile."""
    data_dir.mkdir(parents=True, exist_ok=True)
    prefix = ["-m", "cProfile", "-o", str(profile)] if profile else []
    cmd = [
        sys.executable,
        *prefix,
        "-m",
        "fedmetamal",
        "serve",
        "--insecure",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        "--auto-approve",
        "--no-web",
        "--heartbeat-interval",
        "5",
        "--heartbeat-timeout",
        "60",
    ]
    with log.open("ab") as fh:
        return subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=_env())


def start_worker(spec: dict[str, Any], path: Path, log: Path) -> subprocess.Popen[bytes]:
    path.write_text(json.dumps(spec))
    cmd = [sys.executable, str(Path(__file__).resolve()), "worker", str(path)]
    with log.open("ab") as fh:
        return subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=_env())


def stop(proc: subprocess.Popen[bytes], timeout: float = 60.0) -> int:
    """SIGTERM, then SIGKILL if it does not exit within ``timeout``; the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


# -- the worker ------------------------------------------------------------------------------
@dataclass
class TrainTiming:
    """One local training as the worker saw it: CPU of the training thread and its wall time."""

    round: int
    cpu_s: float
    wall_s: float


@dataclass
class WorkerReport:
    trainings: list[TrainTiming] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _instrument(report: WorkerReport) -> None:
    """Time every LocalWork.train call from inside its thread (the participants' own
    ``compute_seconds`` also counts the wait for a free thread of the event loop's pool)."""
    from fedmetamal.net.local_work import LocalWork

    original = LocalWork.train

    def timed(self: LocalWork, *args: Any, **kwargs: Any) -> Any:
        c0, w0 = time.thread_time(), time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            report.trainings.append(
                TrainTiming(int(args[1]), time.thread_time() - c0, time.perf_counter() - w0)
            )

    LocalWork.train = timed  # type: ignore[method-assign]


async def _worker(spec: dict[str, Any], report: WorkerReport) -> None:
    import asyncio

    from fedmetamal.net.participant import JoinOptions, Participant
    from fedmetamal.net.participant_data import load_local_data

    stop_ev = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop_ev.set)
    loop.add_signal_handler(signal.SIGINT, stop_ev.set)

    def log(msg: str) -> None:
        if "refused" in msg or "unreachable" in msg or "withdrawn" in msg:
            report.errors.append(msg)

    async def one(p: dict[str, Any]) -> None:
        data = load_local_data(Path(p["data"]), Path(p["test"]))
        opts = JoinOptions(
            server=spec["server"],
            data=Path(p["data"]),
            state_dir=Path(p["state_dir"]),
            token=p["token"],
            insecure=True,
            name=p["name"],
        )
        try:
            await Participant(opts, data, log=log).run(stop_ev)
        except Exception as err:  # one participant's failure is a result, not a crash
            report.errors.append(f"{p['name']}: {type(err).__name__}: {err}")

    tasks = []
    for i, p in enumerate(spec["participants"]):
        tasks.append(asyncio.create_task(one(p)))
        if i % 25 == 24:  # enroll in small waves rather than one burst
            await asyncio.sleep(0.05)
    await asyncio.gather(*tasks)


def worker_main(spec_path: Path) -> int:
    import asyncio

    import torch

    torch.set_num_threads(1)
    spec = json.loads(spec_path.read_text())
    report = WorkerReport()
    _instrument(report)
    asyncio.run(_worker(spec, report))
    out = {
        "trainings": [t.__dict__ for t in report.trainings],
        "errors": report.errors[:50],
        "n_errors": len(report.errors),
    }
    spec_path.with_suffix(".out.json").write_text(json.dumps(out))
    return 0


def read_worker_report(spec_path: Path) -> dict[str, Any]:
    path = spec_path.with_suffix(".out.json")
    if not path.is_file():
        return {"trainings": [], "errors": [f"worker wrote no report ({path.name})"], "n_errors": 1}
    return json.loads(path.read_text())


def stored_rounds(db: Path, run_id: str) -> list[dict[str, Any]]:
    """The run's stored rounds, read by a fresh process (so with the same fedmetamal code as the
    server process that wrote them, even if the source changed since this one started)."""
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "rounds", str(db), run_id],
        capture_output=True,
        text=True,
        env=_env(),
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"reading the rounds from {db} failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout)


def _print_rounds(db: Path, run_id: str) -> int:
    from fedmetamal.service.store import Store

    store = Store(f"sqlite:///{db}")
    try:
        rows = [
            {
                "round": r.round,
                "started_at": r.started_at,
                "finished_at": r.finished_at,
                "reported": list(r.reported),
                "rejected": dict(r.rejected),
                "client_metrics": {k: dict(v) for k, v in r.client_metrics.items()},
            }
            for r in store.list_rounds(run_id)
        ]
    finally:
        store.close()
    print(json.dumps(rows))
    return 0


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "worker":
        sys.exit(worker_main(Path(sys.argv[2])))
    if len(sys.argv) == 4 and sys.argv[1] == "rounds":
        sys.exit(_print_rounds(Path(sys.argv[2]), sys.argv[3]))
    sys.exit("usage: network_workload.py worker SPEC.json | rounds DB RUN_ID")
