"""The network runtime's round overhead and server memory, over real gRPC on loopback.

A `fedmetamal serve` process (plaintext on 127.0.0.1, SQLite, auto-approve) and N participants
(`fedmetamal.net.participant.Participant`, many per worker process on one asyncio loop each,
one torch thread) run FedAvg on a small model: 64 features, an MLP 64-16-1 (1,057 parameters),
100 training rows per participant (one epoch of batch 64: 2 steps), every participant every
round, evaluation only after the last round. Per round the server stores what it needs:

- **round s**: finished_at - started_at of the stored round (posting the tasks, participants
  pulling, downloading, training, uploading, the server checking and aggregating the updates,
  the checkpoint written);
- **slowest training s**: the largest ``compute_seconds`` a participant reported for the round
  (its local compute time, taken around its training thread: with many participants in one
  worker process it also counts the wait for a free thread of that process's pool);
- **overhead** = round s - slowest training s (the issue's definition); median over the rounds
  without evaluation. Target: <= 0.5 s at 100 participants.

Also: the server's CPU seconds per round (from /proc, between consecutive rounds), the
participants' own training CPU (thread time inside LocalWork.train), and the server's resident
memory (VmRSS) before any participant, with N enrolled and connected (each holding a long-poll
and heartbeating every 5 s), per participant, and at its peak.

    .venv/bin/python benchmarks/bench_network.py --json network.json   # 10, 100, 500 participants
    .venv/bin/python benchmarks/bench_network.py --participants 100 --rounds 11
    .venv/bin/python benchmarks/bench_network.py --profile prof/        # cProfile of the server
    .venv/bin/python benchmarks/bench_network.py --quick                # seconds; smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from fedmetamal.errors import FedMetaMalError
from fedmetamal.net.control_client import ControlClient
from network_workload import (
    cpu_seconds,
    free_port,
    median,
    peak_rss_bytes,
    read_worker_report,
    rss_bytes,
    run_config_json,
    start_server,
    start_worker,
    stop,
    stored_rounds,
    write_datasets,
)

TARGET_S = 0.5
TARGET_AT = 100
MB = 1024 * 1024


def wait_for(check: Any, timeout: float, what: str, every: float = 0.25) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}")


def connect(data_dir: Path, port: int, server: Any) -> ControlClient:
    """A control client once the server answers (its operator token file written)."""
    token_file = data_dir / "operator.token"

    def ready() -> ControlClient | None:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with code {server.returncode}")
        if not token_file.is_file():
            return None
        client = ControlClient(f"127.0.0.1:{port}", token_file.read_text().strip(), insecure=True)
        try:
            client.server_info()
        except FedMetaMalError:
            client.close()
            return None
        return client

    return wait_for(ready, 60, "the server to answer")


def settled_rss(pid: int, samples: int = 4, every: float = 0.5) -> int:
    """Median of a few VmRSS readings (the heap moves a little between heartbeats)."""
    values = []
    for _ in range(samples):
        values.append(rss_bytes(pid))
        time.sleep(every)
    return int(median(values))


def bench_n(n: int, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """One server, ``n`` participants, one run; everything measured for this ``n``."""
    folder = root / f"n{n}"
    folder.mkdir(parents=True)
    port = free_port()
    profile = args.profile / f"server-n{n}.prof" if args.profile else None
    if profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    server = start_server(folder / "server", port, folder / "server.log", profile)
    workers: list[Any] = []
    specs: list[Path] = []
    try:
        ctl = connect(folder / "server", port, server)
        time.sleep(1.0)
        rss_idle = settled_rss(server.pid)
        files = write_datasets(folder / "data", n, args.rows, args.test_rows, args.features)
        tokens = [ctl.create_token(auto_approve=True).token for _ in range(n)]
        n_workers = max(1, min(args.workers, n))
        per: list[list[dict[str, Any]]] = [[] for _ in range(n_workers)]
        for i, ((train, test), token) in enumerate(zip(files, tokens, strict=True)):
            per[i % n_workers].append(
                {
                    "name": f"p{i:04d}",
                    "token": token,
                    "data": str(train),
                    "test": str(test),
                    "state_dir": str(folder / "state" / f"p{i:04d}"),
                }
            )
        t_join = time.perf_counter()
        for w, parts in enumerate(per):
            spec = {"server": f"127.0.0.1:{port}", "participants": parts}
            path = folder / f"worker-{w}.json"
            specs.append(path)
            workers.append(start_worker(spec, path, folder / f"worker-{w}.log"))

        def all_in() -> bool:
            for w in workers:
                if w.poll() is not None:
                    raise RuntimeError(f"a worker exited with code {w.returncode}")
            ps = ctl.list_participants()
            return sum(p.online and p.summary.n_train > 0 for p in ps) >= n

        wait_for(all_in, args.join_timeout, f"{n} participants to enroll", every=0.5)
        join_s = time.perf_counter() - t_join
        time.sleep(args.settle)  # a heartbeat interval: every participant long-polling
        rss_connected = settled_rss(server.pid)
        ids = sorted(p.participant_id for p in ctl.list_participants())
        config = run_config_json(args.rounds, args.hidden, args.batch, args.round_timeout)
        cpu_at: dict[int, float] = {0: cpu_seconds(server.pid)}
        wcpu_at: dict[int, float] = {0: sum(cpu_seconds(w.pid) for w in workers)}
        rss_at: dict[int, int] = {}
        run = ctl.create_run(f"bench-{n}", config, ids, start=True)
        state = ""
        for ev in ctl.watch(run.run_id):
            if ev.kind == "round_finished":
                cpu_at[ev.round] = cpu_seconds(server.pid)
                wcpu_at[ev.round] = sum(cpu_seconds(w.pid) for w in workers)
                rss_at[ev.round] = rss_bytes(server.pid)
                print(f"  {n} participants: {ev.message}", flush=True)
            elif ev.kind == "run_state":
                state = ev.state
        if state != "completed":
            raise RuntimeError(f"the run ended {state}; see {folder / 'server.log'}")
        rss_peak = peak_rss_bytes(server.pid)
        rounds_info = ctl.list_rounds(run.run_id)
        ctl.close()
    finally:
        for w in workers:
            stop(w)
        stop(server)
    rows = stored_rounds(folder / "server" / "fedmetamal.db", run.run_id)
    reports = [read_worker_report(p) for p in specs]
    return summarise(n, args, rows, rounds_info, cpu_at, wcpu_at, rss_at, reports) | {
        "join_s": join_s,
        "rss_idle": rss_idle,
        "rss_connected": rss_connected,
        "rss_peak": rss_peak,
        "rss_per_participant": (rss_connected - rss_idle) / n,
        "workers": n_workers,
    }


def summarise(
    n: int,
    args: argparse.Namespace,
    rows: list[dict[str, Any]],
    rounds_info: list[Any],
    cpu_at: dict[int, float],
    wcpu_at: dict[int, float],
    rss_at: dict[int, int],
    reports: list[dict[str, Any]],
) -> dict[str, Any]:
    """Per-round numbers and their medians over the rounds without evaluation."""
    train_cpu: dict[int, list[float]] = {}
    for rep in reports:
        for t in rep["trainings"]:
            train_cpu.setdefault(t["round"] + 1, []).append(t["cpu_s"])
    per_round = []
    for row in rows:
        compute = [m.get("compute_seconds", float("nan")) for m in row["client_metrics"].values()]
        r = row["round"]
        rec = {
            "round": r,
            "evaluated": r == args.rounds,
            "round_s": row["finished_at"] - row["started_at"],
            "slowest_training_s": max(compute) if compute else float("nan"),
            "reported": len(row["reported"]),
            "rejected": len(row["rejected"]),
            "server_cpu_s": cpu_at[r] - cpu_at[r - 1] if r in cpu_at and r - 1 in cpu_at else None,
            "workers_cpu_s": (
                wcpu_at[r] - wcpu_at[r - 1] if r in wcpu_at and r - 1 in wcpu_at else None
            ),
            "training_cpu_max_s": max(train_cpu.get(r, [float("nan")])),
            "training_cpu_sum_s": sum(train_cpu.get(r, [])),
            "rss": rss_at.get(r),
        }
        rec["overhead_s"] = rec["round_s"] - rec["slowest_training_s"]
        per_round.append(rec)
    timed = [p for p in per_round if not p["evaluated"]]
    # round 1 also sets the run up on both sides; its server CPU counts from the run's start
    cpu_rounds = [p for p in timed if p["round"] > 1] or timed

    def med(key: str, recs: list[dict[str, Any]] = timed) -> float:
        return median([p[key] for p in recs if p[key] is not None])

    return {
        "participants": n,
        "rounds": per_round,
        "updates": min(p["reported"] for p in timed),
        "round_s": med("round_s"),
        "slowest_training_s": med("slowest_training_s"),
        "overhead_s": med("overhead_s"),
        "server_cpu_s": med("server_cpu_s", cpu_rounds),
        "workers_cpu_s": med("workers_cpu_s", cpu_rounds),
        "training_cpu_max_s": med("training_cpu_max_s"),
        "training_cpu_sum_s": med("training_cpu_sum_s"),
        "eval_round_s": next((p["round_s"] for p in per_round if p["evaluated"]), None),
        "model_ids": [r.model_id for r in rounds_info],
        "worker_errors": sum(rep["n_errors"] for rep in reports),
        "worker_error_sample": [e for rep in reports for e in rep["errors"]][:5],
    }


def table(results: list[dict[str, Any]]) -> str:
    """Markdown tables (pasted as-is into docs/benchmarks.md)."""
    head = (
        "participants",
        "updates/round",
        "round s",
        "slowest training s",
        "overhead s",
        f"target <= {TARGET_S} s at {TARGET_AT}",
        "server CPU s/round",
        "participants' CPU s/round",
    )
    body = []
    for r in results:
        target = (
            ("yes" if r["overhead_s"] <= TARGET_S else "no")
            if r["participants"] == TARGET_AT
            else "-"
        )
        body.append(
            (
                str(r["participants"]),
                str(r["updates"]),
                f"{r['round_s']:.3f}",
                f"{r['slowest_training_s']:.3f}",
                f"{r['overhead_s']:.3f}",
                target,
                f"{r['server_cpu_s']:.3f}",
                f"{r['workers_cpu_s']:.3f}",
            )
        )
    head2 = (
        "participants",
        "server RSS idle MB",
        "RSS connected MB",
        "per participant KB",
        "peak RSS MB",
        "start + enroll s",
        "training CPU per participant ms",
    )
    body2 = []
    for r in results:
        body2.append(
            (
                str(r["participants"]),
                f"{r['rss_idle'] / MB:.1f}",
                f"{r['rss_connected'] / MB:.1f}",
                f"{r['rss_per_participant'] / 1024:.0f}",
                f"{r['rss_peak'] / MB:.1f}",
                f"{r['join_s']:.1f}",
                f"{1000 * r['training_cpu_sum_s'] / max(r['updates'], 1):.1f}",
            )
        )
    return "\n\n".join(_md(h, b) for h, b in ((head, body), (head2, body2)))


def _md(head: tuple[str, ...], body: list[tuple[str, ...]]) -> str:
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]

    def line(cells: tuple[str, ...]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(head), sep, *(line(b) for b in body)])


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--participants", default="10,100,500", help="comma-separated sizes")
    ap.add_argument("--rounds", type=int, default=6, help="rounds per run (the last evaluates)")
    ap.add_argument("--workers", type=int, default=2, help="participant worker processes")
    ap.add_argument("--rows", type=int, default=100, help="training rows per participant")
    ap.add_argument("--test-rows", type=int, default=25, help="test rows per participant")
    ap.add_argument("--features", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=16)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--settle", type=float, default=6.0, help="seconds before the RSS reading")
    ap.add_argument("--join-timeout", type=float, default=600.0)
    ap.add_argument("--round-timeout", type=float, default=300.0, help="network.round_timeout_s")
    ap.add_argument("--profile", type=Path, help="write the server's cProfile stats here")
    ap.add_argument("--keep", type=Path, help="keep logs and databases under this folder")
    ap.add_argument("--json", type=Path, help="also write every measurement here")
    ap.add_argument("--quick", action="store_true", help="4 participants, 3 rounds: a smoke test")
    return ap


def main_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The parsed options (bench_flower.py reuses them for fedmetamal's side)."""
    ap = parser()
    args = ap.parse_args(argv)
    args.sizes = [int(c) for c in args.participants.split(",") if c.strip()]
    if args.quick:
        args.sizes, args.rounds, args.settle = [4], 3, 1.0
    if args.rounds < 2:
        ap.error("--rounds must be at least 2 (the last one evaluates and is not timed)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = main_args(argv)
    sizes = args.sizes
    print(
        f"{args.features} features, MLP {args.features}-{args.hidden}-1, {args.rows} rows per "
        f"participant, batch {args.batch}; {args.rounds} rounds ({args.rounds - 1} timed); "
        f"{os.cpu_count()} CPUs; load average {[round(x, 2) for x in os.getloadavg()]}",
        flush=True,
    )
    results = []
    with tempfile.TemporaryDirectory(prefix="fmm-bench-net-") as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        for n in sizes:
            res = bench_n(n, args, root)
            results.append(res)
            print(
                f"{n} participants: overhead {res['overhead_s']:.3f} s "
                f"(round {res['round_s']:.3f} s), worker errors {res['worker_errors']}",
                flush=True,
            )
    print(f"load average at the end {[round(x, 2) for x in os.getloadavg()]}")
    print()
    print(table(results))
    if args.json:
        payload = {"args": {k: str(v) for k, v in vars(args).items()}, "results": results}
        args.json.write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
