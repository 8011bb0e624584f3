"""Round overhead of Flower's deployment engine next to fedmetamal's network runtime, one run.

The same workload as bench_network.py (N participants on loopback, FedAvg, every participant
every round, 64 features, an MLP 64-16-1, 100 rows each, one epoch of batch 64, no evaluation
in the timed rounds) goes through both systems in the same run:

- **Flower**: one `flower-superlink` (plaintext, in-memory state), N `flower-supernode`
  processes (one per participant, the way Flower deploys; each runs its ClientApp in a
  subprocess), and a Flower App submitted with `flwr run`. Its ServerApp sends a train message
  to every node, waits for all replies, takes the sample-weighted mean, and records per round
  the wall time and the largest ``compute_seconds`` a ClientApp reported (the ClientApp trains
  the MLP in NumPy, a few tenths of a millisecond).
- **fedmetamal**: bench_network.py's measurement for the same N (a `fedmetamal serve` process
  and the participants in worker processes).

Overhead = round s - slowest local training s, median over the timed rounds, for both; the
ratio is Flower's overhead over fedmetamal's. Memory: the SuperLink's RSS with the nodes
connected against the fedmetamal server's.

Flower lives in its own virtual environment so that it cannot change fedmetamal's
dependencies: `python3 -m venv .cache/flower-venv && .cache/flower-venv/bin/pip install flwr`
(or pass `--flower-venv`). Without it the script says so and exits 0.

    .venv/bin/python benchmarks/bench_flower.py --participants 10,100 --json flower.json
    .venv/bin/python benchmarks/bench_flower.py --quick
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_network
from network_workload import free_port, rss_bytes, stop

REPO = Path(__file__).resolve().parents[1]
DEFAULT_VENV = REPO / ".cache" / "flower-venv"
MB = 1024 * 1024

PYPROJECT = """\
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "fmmflowerbench"
version = "1.0.0"
description = "fedmetamal's network benchmark workload as a Flower App"
license = "Apache-2.0"
dependencies = []

[tool.hatch.build.targets.wheel]
packages = ["."]

[tool.flwr.app]
publisher = "fedmetamal"

[tool.flwr.app.components]
serverapp = "fmmflowerbench.server_app:app"
clientapp = "fmmflowerbench.client_app:app"

[tool.flwr.app.config]
rounds = 6
nodes = 2
features = 64
hidden = 16
batch = 64
lr = 0.01
out = "rounds.json"
"""

SERVER_APP = '''\
"""ServerApp: train messages to every node, wait for all, weighted mean, time each round."""

import json
import time

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.serverapp import Grid, ServerApp

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    cfg = context.run_config
    rounds, nodes = int(cfg["rounds"]), int(cfg["nodes"])
    d, h = int(cfg["features"]), int(cfg["hidden"])
    while len(list(grid.get_node_ids())) < nodes:
        time.sleep(0.2)
    rng = np.random.default_rng(0)
    params = [
        (rng.normal(size=(d, h)) / np.sqrt(d)).astype(np.float32),
        np.zeros(h, np.float32),
        (rng.normal(size=(h, 1)) / np.sqrt(h)).astype(np.float32),
        np.zeros(1, np.float32),
    ]
    progress = open(str(cfg["out"]) + ".partial", "a")  # one line per round, as it ends
    out = []
    for r in range(1, rounds + 1):
        t0 = time.time()
        node_ids = sorted(grid.get_node_ids())
        record = RecordDict(
            {"arrays": ArrayRecord(numpy_ndarrays=params), "config": ConfigRecord({"round": r})}
        )
        msgs = [Message(content=record, message_type="train", dst_node_id=n) for n in node_ids]
        replies = [m for m in grid.send_and_receive(msgs, timeout=600) if m.has_content()]
        weights = np.array([float(m.content["metrics"]["num-examples"]) for m in replies])
        arrays = [m.content["arrays"].to_numpy_ndarrays() for m in replies]
        params = [
            (sum(w * a[i] for w, a in zip(weights, arrays)) / weights.sum()).astype(np.float32)
            for i in range(len(params))
        ]
        t1 = time.time()
        compute = [float(m.content["metrics"]["compute_seconds"]) for m in replies]
        out.append(
            {
                "round": r,
                "started": t0,
                "finished": t1,
                "round_s": t1 - t0,
                "slowest_training_s": max(compute) if compute else float("nan"),
                "replies": len(replies),
                "sent": len(msgs),
            }
        )
        progress.write(json.dumps(out[-1]) + "\\n")
        progress.flush()
    with open(str(cfg["out"]), "w") as fh:
        json.dump(out, fh)
'''

CLIENT_APP = '''\
"""ClientApp: one epoch of minibatch SGD on the MLP in NumPy, timed."""

import time

import numpy as np
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

app = ClientApp()
_DATA = {}


def _data(pid, rows, d):
    if pid not in _DATA:
        rng = np.random.default_rng(1000 + pid)
        w = np.random.default_rng(0).normal(size=d)
        X = rng.normal(size=(rows, d)).astype(np.float32)
        y = ((X @ w + rng.normal(scale=0.5, size=rows)) > 0).astype(np.float32)
        _DATA[pid] = (X, y)
    return _DATA[pid]


@app.train()
def train(msg: Message, context: Context) -> Message:
    t0 = time.perf_counter()
    cfg, node = context.run_config, context.node_config
    X, y = _data(int(node["partition-id"]), int(node["rows"]), int(cfg["features"]))
    W1, b1, W2, b2 = msg.content["arrays"].to_numpy_ndarrays()
    lr, batch = float(cfg["lr"]), int(cfg["batch"])
    order = np.random.default_rng(int(msg.content["config"]["round"])).permutation(len(y))
    for s in range(0, len(y), batch):
        idx = order[s : s + batch]
        xb, yb = X[idx], y[idx]
        a = xb @ W1 + b1
        hdn = np.maximum(a, 0)
        z = (hdn @ W2 + b2)[:, 0]
        g = (1 / (1 + np.exp(-z)) - yb) / len(yb)
        gW2, gb2 = hdn.T @ g[:, None], g.sum(keepdims=True)
        gh = (g[:, None] @ W2.T) * (a > 0)
        gW1, gb1 = xb.T @ gh, gh.sum(0)
        W1, b1, W2, b2 = W1 - lr * gW1, b1 - lr * gb1, W2 - lr * gW2, b2 - lr * gb2
    new = [a.astype(np.float32) for a in (W1, b1, W2, b2)]
    metrics = MetricRecord(
        {"num-examples": len(y), "compute_seconds": time.perf_counter() - t0}
    )
    return Message(
        content=RecordDict({"arrays": ArrayRecord(numpy_ndarrays=new), "metrics": metrics}),
        reply_to=msg,
    )
'''


def flower_bin(venv: Path, name: str) -> Path:
    return venv / "bin" / name


def flower_version(venv: Path) -> str | None:
    """flwr's version in ``venv``; None when it is not installed there."""
    py = venv / "bin" / "python"
    if not py.is_file():
        return None
    proc = subprocess.run(
        [str(py), "-c", "import flwr; print(flwr.__version__)"],
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.stdout.strip() if proc.returncode == 0 else None


def write_app(folder: Path) -> Path:
    app = folder / "fmmflowerbench"
    pkg = app / "fmmflowerbench"
    pkg.mkdir(parents=True)
    (app / "pyproject.toml").write_text(PYPROJECT)
    (pkg / "__init__.py").write_text("")
    (pkg / "server_app.py").write_text(SERVER_APP)
    (pkg / "client_app.py").write_text(CLIENT_APP)
    return app


def _env(home: Path, venv: Path) -> dict[str, str]:
    """Flower's own tools first on PATH (the SuperLink and SuperNodes start more of them)."""
    path = f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
    return {
        **os.environ,
        "PATH": path,
        "FLWR_HOME": str(home),
        "OMP_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
    }


def bench_flower(n: int, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """SuperLink + ``n`` SuperNodes + ``flwr run``; per-round times from the ServerApp."""
    folder = root / f"flower-n{n}"
    folder.mkdir(parents=True)
    home = folder / "flwr-home"
    home.mkdir()
    port = free_port()
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "local"\n\n[superlink.local]\n'
        f'address = "127.0.0.1:{port}"\ninsecure = true\n'
    )
    app = write_app(folder)
    venv = args.flower_venv
    env = _env(home, venv)
    logs = folder / "logs"
    logs.mkdir()
    procs: list[subprocess.Popen[bytes]] = []

    def spawn(cmd: list[str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("ab") as fh:
            p = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=folder)
        procs.append(p)
        return p

    try:
        link = spawn(
            [
                str(flower_bin(venv, "flower-superlink")),
                "--insecure",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--disable-runtime-dependency-installation",
            ],
            logs / "superlink.log",
        )
        time.sleep(args.settle)
        if link.poll() is not None:
            raise RuntimeError(f"flower-superlink exited; see {logs / 'superlink.log'}")
        rss_idle = bench_network.settled_rss(link.pid)
        t_join = time.perf_counter()
        for i in range(n):
            spawn(
                [
                    str(flower_bin(venv, "flower-supernode")),
                    "--insecure",
                    "--superlink",
                    f"127.0.0.1:{port}",
                    "--port",
                    str(free_port()),
                    "--node-config",
                    f"partition-id={i} rows={args.rows}",
                ],
                logs / f"supernode-{i}.log",
            )
        bench_network.wait_for(
            lambda: _nodes_up(logs, n, link),
            args.run_timeout,
            f"{n} SuperNodes to register",
            every=0.5,
        )
        join_s = time.perf_counter() - t_join
        time.sleep(args.settle)
        rss_connected = bench_network.settled_rss(link.pid)  # every node registered, idle
        out = folder / "rounds.json"
        overrides = (
            f"rounds={args.rounds} nodes={n} features={args.features} hidden={args.hidden} "
            f'batch={args.batch} out="{out}"'
        )
        run = subprocess.run(
            [str(flower_bin(venv, "flwr")), "run", str(app), "local", "--run-config", overrides],
            capture_output=True,
            text=True,
            env=env,
            cwd=folder,
            timeout=120,
            check=False,
        )
        (logs / "flwr-run.log").write_text(run.stdout + run.stderr)
        if run.returncode != 0:
            raise RuntimeError(f"flwr run failed: {(run.stdout + run.stderr)[-800:]}")
        rounds, complete = _wait_for_rounds(out, link, logs, args.stall_timeout)
        rss_end = rss_bytes(link.pid)
    finally:
        for p in reversed(procs):
            stop(p, timeout=20)
        _stop_detached(home)
    if len(rounds) < 2:
        raise RuntimeError(
            f"the Flower run finished {len(rounds)} round(s) before it stalled; see {logs}"
        )
    # as for fedmetamal, the last round is not timed (unless the run stalled before it)
    timed = rounds[:-1] if complete else rounds
    over = [r["round_s"] - r["slowest_training_s"] for r in timed]
    return {
        "participants": n,
        "rounds": rounds,
        "updates": min(r["replies"] for r in timed),
        "round_s": statistics.median(r["round_s"] for r in timed),
        "slowest_training_s": statistics.median(r["slowest_training_s"] for r in timed),
        "overhead_s": statistics.median(over),
        "rss_idle": rss_idle,
        "complete": complete,
        "rounds_done": f"{len(rounds)}/{args.rounds}",
        "rss_connected": rss_connected,
        "rss_end": rss_end,
        "join_s": join_s,
    }


def _wait_for_rounds(
    out: Path, link: subprocess.Popen[bytes], logs: Path, stall_s: float
) -> tuple[list[dict[str, Any]], bool]:
    """The ServerApp's rounds and whether the run completed; gives up after ``stall_s``
    without a new round (Flower's SuperNodes can keep restarting a ClientApp that fails)."""
    partial = Path(str(out) + ".partial")
    seen, last_change = 0, time.monotonic()
    while not out.is_file():
        if link.poll() is not None:
            raise RuntimeError(f"flower-superlink exited; see {logs / 'superlink.log'}")
        lines = partial.read_text().splitlines() if partial.is_file() else []
        if len(lines) != seen:
            seen, last_change = len(lines), time.monotonic()
            print(f"  Flower: round {seen} finished", flush=True)
        elif time.monotonic() - last_change > stall_s:
            print(f"  Flower: no round finished in {stall_s:g} s; giving up", flush=True)
            return [json.loads(x) for x in lines], False
        time.sleep(0.5)
    return json.loads(out.read_text()), True


def _stop_detached(home: Path) -> None:
    """End the processes Flower started detached (SuperExec, ServerApp, ClientApps) for this
    run only: those whose environment names this run's FLWR_HOME."""
    import signal

    marker = f"FLWR_HOME={home}".encode()
    for _ in range(2):
        found = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                if marker in (proc / "environ").read_bytes().split(b"\0"):
                    found.append(int(proc.name))
        for pid in found:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        if not found:
            return
        time.sleep(0.5)


def _nodes_up(logs: Path, n: int, link: subprocess.Popen[bytes]) -> bool:
    """Every SuperNode has registered with the SuperLink (it logs its node id then)."""
    if link.poll() is not None:
        raise RuntimeError(f"flower-superlink exited; see {logs / 'superlink.log'}")
    up = 0
    for i in range(n):
        with contextlib.suppress(OSError):
            up += "SuperNode ID" in (logs / f"supernode-{i}.log").read_text(errors="replace")
    return up >= n


def table(rows: list[tuple[dict[str, Any], dict[str, Any] | None]]) -> str:
    head = (
        "participants",
        "fedmetamal round s",
        "fedmetamal overhead s",
        "Flower round s",
        "Flower overhead s",
        "Flower / fedmetamal overhead",
        "Flower rounds done",
        "server RSS MB fedmetamal / Flower SuperLink",
    )
    body = []
    for ours, fl in rows:
        if fl is None:
            body.append(
                (str(ours["participants"]), f"{ours['round_s']:.3f}", f"{ours['overhead_s']:.3f}")
                + ("failed",) * 3
                + ("0", f"{ours['rss_connected'] / MB:.0f} / -")
            )
            continue
        body.append(
            (
                str(ours["participants"]),
                f"{ours['round_s']:.3f}",
                f"{ours['overhead_s']:.3f}",
                f"{fl['round_s']:.3f}",
                f"{fl['overhead_s']:.3f}",
                f"{fl['overhead_s'] / ours['overhead_s']:.0f}x",
                fl["rounds_done"] + ("" if fl["complete"] else " (stalled)"),
                f"{ours['rss_connected'] / MB:.0f} / {fl['rss_connected'] / MB:.0f}",
            )
        )
    return bench_network._md(head, body)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--participants", default="10", help="comma-separated sizes")
    ap.add_argument("--rounds", type=int, default=6, help="rounds (the last is not timed)")
    ap.add_argument("--rows", type=int, default=100)
    ap.add_argument("--features", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=16)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2, help="fedmetamal worker processes")
    ap.add_argument("--settle", type=float, default=3.0)
    ap.add_argument("--run-timeout", type=float, default=600.0, help="for the nodes to register")
    ap.add_argument(
        "--stall-timeout", type=float, default=300.0, help="give up after this long without a round"
    )
    ap.add_argument("--flower-venv", type=Path, default=DEFAULT_VENV)
    ap.add_argument("--keep", type=Path, help="keep logs under this folder")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--quick", action="store_true", help="3 participants, 3 rounds")
    args = ap.parse_args(argv)
    sizes = [int(c) for c in args.participants.split(",") if c.strip()]
    if args.quick:
        sizes, args.rounds = [3], 3
    version = flower_version(args.flower_venv)
    if version is None:
        print(
            f"Flower: skipped (flwr is not installed in {args.flower_venv}; "
            f"python3 -m venv {args.flower_venv} && {args.flower_venv}/bin/pip install flwr)"
        )
        return 0
    print(
        f"Flower {version} ({args.flower_venv}); {os.cpu_count()} CPUs; load average "
        f"{[round(x, 2) for x in os.getloadavg()]}",
        flush=True,
    )
    # fedmetamal's side takes bench_network's options
    net_args = bench_network.main_args(
        [
            "--rounds",
            str(args.rounds),
            "--rows",
            str(args.rows),
            "--features",
            str(args.features),
            "--hidden",
            str(args.hidden),
            "--batch",
            str(args.batch),
            "--workers",
            str(args.workers),
            "--settle",
            str(args.settle),
        ]
    )
    rows = []
    with tempfile.TemporaryDirectory(prefix="fmm-bench-flower-") as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        for n in sizes:
            ours = bench_network.bench_n(n, net_args, root)
            print(f"{n} participants: fedmetamal overhead {ours['overhead_s']:.3f} s", flush=True)
            fl: dict[str, Any] | None
            try:
                fl = bench_flower(n, args, root)
                print(f"{n} participants: Flower overhead {fl['overhead_s']:.3f} s", flush=True)
            except RuntimeError as err:  # Flower failing is a result too: say so, go on
                fl = None
                print(f"{n} participants: Flower failed: {err}", flush=True)
            rows.append((ours, fl))
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    print(f"load average at the end {[round(x, 2) for x in os.getloadavg()]}")
    print()
    print(table(rows))
    if args.json:
        payload = {
            "flower": version,
            "args": {k: str(v) for k, v in vars(args).items()},
            "results": [{"fedmetamal": o, "flower": f} for o, f in rows],
        }
        args.json.write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
