"""Secure aggregation's cost in the simulation runtime: seconds and bytes per round.

FedAvg rounds on pe-headers (every client sampled every round, the default local training of
2 epochs of batch 64 unless ``--steps`` fixes a few short steps) run three ways in the same
process: plain aggregation (the weighted mean), secure aggregation over the complete graph
(Bonawitz et al. 2017) and SecAgg+ over a k-regular graph (Bell et al. 2020; k = 2 * ceil(log2
n) unless ``--neighbours``). Rounds of the three are
interleaved and repeated, medians are reported, and secure rounds are given as ratios to the
plain round of the same run. Target: at 100 participants a secure round costs <= 3x a plain one.

The simulation runs every client's protocol work one after another in one process, so a
secure round's seconds are the *sum* of all clients' crypto plus the server's; in a deployment
clients work in parallel: the last table gives the server's seconds, one client's mean, and
the round they would make if clients ran the protocol in parallel (plain round + server + one
client), an estimate rather than a measurement.
Bytes: plain = each client uploads its float32 delta and its sample count and downloads the
float32 model; secure = the protocol's own messages (keys, encrypted shares, the uint32 masked
vector that carries the weight too, unmasking shares) plus the same model download.

    .venv/bin/python benchmarks/bench_secagg.py --json secagg.json   # minutes on 2 cores
    .venv/bin/python benchmarks/bench_secagg.py --clients 100 --repeat 5
    .venv/bin/python benchmarks/bench_secagg.py --quick              # seconds; smoke test
    .venv/bin/python benchmarks/bench_secagg.py --measure-range      # delta magnitudes
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as in bench_sim.py: shared machines

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fedmetamal.api import load_data
from fedmetamal.config import RunConfig, build_config
from fedmetamal.data.dataset import Dataset
from fedmetamal.data.partition import partition
from fedmetamal.data.preprocess import preprocess_federation
from fedmetamal.sim.runtime import Simulation

TARGET_RATIO = 3.0
MODES = ("plain", "secagg", "secagg+")


def default_neighbours(n: int) -> int | None:
    """SecAgg+'s k = 2 * ceil(log2 n) (Bell et al.'s O(log n) scale); None when complete."""
    k = 2 * math.ceil(math.log2(max(n, 2)))
    return None if k >= n - 1 else k


def run_config(
    source: dict[str, Any], n: int, mode: str, steps: int, threads: int, k: int | None
) -> RunConfig:
    secagg: dict[str, Any] = {"enabled": mode != "plain"}
    if mode == "secagg+":
        secagg["neighbours"] = k
    return build_config(
        {
            "seed": 0,
            "dataset": source,
            "partition": {"kind": "iid", "clients": n, "min_client_size": 1},
            "algorithm": {"name": "fedavg"},
            "training": {
                "rounds": 10**9,  # never the last round: no final evaluation while timing
                "client_lr": 0.1,
                "client_fraction": 1.0,
                # steps 0: the default local work (2 epochs of batch 64); else fixed short steps
                **({"local_steps": steps, "batch_size": 32} if steps else {}),
            },
            "evaluation": {"every": 10**9, "per_client": False},
            "runtime": {"threads": threads},
            "secagg": secagg,
            "output": {"onnx": False, "checkpoint": False},
        }
    )


def plain_bytes(n: int, p: int) -> tuple[int, int]:
    """(up, down) of a plain round: float32 delta + sample count up, float32 model down."""
    return n * 4 * (p + 1), n * 4 * p


def bench_clients(
    ds: Dataset, source: dict[str, Any], n: int, args: argparse.Namespace
) -> dict[str, Any]:
    """Interleaved rounds of the three modes at n participants."""
    k = args.neighbours or default_neighbours(n)
    modes = [m for m in MODES if not (m == "secagg+" and k is None)]
    sims: dict[str, Simulation] = {}
    for mode in modes:
        cfg = run_config(source, n, mode, args.steps, args.threads, k)
        fed, _ = preprocess_federation(partition(ds, cfg.partition, cfg.seed), cfg.preprocess)
        sims[mode] = Simulation(cfg, fed)
    p = sims["plain"].network.num_params
    times: dict[str, list[float]] = {m: [] for m in modes}
    recs: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
    for mode in modes:  # warm-up, not timed
        sims[mode].run_round()
    for _ in range(args.repeat):
        for _ in range(args.rounds):
            for mode in modes:  # alternate single rounds so bursts of load hit all alike
                t0 = time.perf_counter()
                rec = sims[mode].run_round()
                times[mode].append(time.perf_counter() - t0)
                if rec.secagg is not None:
                    recs[mode].append(rec.secagg)
    up0, down0 = plain_bytes(n, p)
    row: dict[str, Any] = {
        "clients": n,
        "params": p,
        "neighbours": k,
        "plain_rounds": times["plain"],
    }
    plain_s = statistics.median(times["plain"])
    row["plain"] = {"s_round": plain_s, "bytes_up": up0, "bytes_down": down0}
    for mode in modes[1:]:
        s = statistics.median(times[mode])
        last = recs[mode][-1]
        up, down = last["bytes_up"], last["bytes_down"] + down0
        row[mode] = {
            "s_round": s,
            "ratio": s / plain_s,
            "s_server": statistics.median(r["seconds_server"] for r in recs[mode]),
            "s_client_mean": statistics.median(r["seconds_client"] / n for r in recs[mode]),
            "bytes_up": up,
            "bytes_down": down,
            "up_ratio": up / up0,
            "down_ratio": down / down0,
            "threshold": last["threshold"],
            "rounds": times[mode],
            "met": s / plain_s <= TARGET_RATIO,
        }
    return row


def measure_range(ds: Dataset, source: dict[str, Any], n: int, args: argparse.Namespace) -> None:
    """Magnitudes of the encoded coordinates |w_i delta_i / w_max| of plain rounds."""
    cfg = run_config(source, n, "plain", args.steps, args.threads, None)
    fed, _ = preprocess_federation(partition(ds, cfg.partition, cfg.seed), cfg.preprocess)
    sim = Simulation(cfg, fed)
    agg = sim.algorithm.aggregator
    seen: list[np.ndarray] = []

    class Spy(type(agg)):  # type: ignore[misc]
        def __call__(self, deltas: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
            share = (weights / weights.max())[:, None]
            seen.append((deltas * share).abs().flatten().numpy())
            return super().__call__(deltas, weights)

    agg.__class__ = Spy
    for r in range(args.rounds):
        sim.run_round()
        a = seen[-1]
        q = np.quantile(a, [0.99, 0.9999])
        print(
            f"round {r + 1}: max {a.max():.3g}, p99.99 {q[1]:.3g}, p99 {q[0]:.3g}, "
            f"mean {a.mean():.3g}"
        )


def fmt_bytes(b: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if b < 1000:
            return f"{b:.3g} {unit}"
        b /= 1000
    return f"{b:.3g} TB"


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown tables (pasted as-is into docs/benchmarks.md)."""
    head = ("clients", "k", "plain s/round", "secagg s/round", "secagg+ s/round", "target <= 3x")
    body = []
    for r in rows:
        cells = [str(r["clients"]), str(r["neighbours"] or "-"), f"{r['plain']['s_round']:.3f}"]
        for mode in ("secagg", "secagg+"):
            m = r.get(mode)
            cells.append(f"{m['s_round']:.3f} ({m['ratio']:.1f}x)" if m else "= secagg")
        best = min(r[m]["ratio"] for m in ("secagg", "secagg+") if m in r)
        cells.append("yes" if best <= TARGET_RATIO else "no")
        body.append(tuple(cells))
    head2 = ("clients", "plain up / down", "secagg up / down", "secagg+ up / down")
    body2 = []
    for r in rows:
        cells = [
            str(r["clients"]),
            f"{fmt_bytes(r['plain']['bytes_up'])} / {fmt_bytes(r['plain']['bytes_down'])}",
        ]
        for mode in ("secagg", "secagg+"):
            m = r.get(mode)
            cells.append(
                f"{fmt_bytes(m['bytes_up'])} ({m['up_ratio']:.2f}x) / "
                f"{fmt_bytes(m['bytes_down'])} ({m['down_ratio']:.2f}x)"
                if m
                else "= secagg"
            )
        body2.append(tuple(cells))
    head3 = ("clients", "mode", "server s", "one client s (mean)", "parallel estimate")
    body3 = []
    for r in rows:
        for mode in ("secagg", "secagg+"):
            m = r.get(mode)
            if not m:
                continue
            est = r["plain"]["s_round"] + m["s_server"] + m["s_client_mean"]
            body3.append(
                (
                    str(r["clients"]),
                    mode,
                    f"{m['s_server']:.3f}",
                    f"{m['s_client_mean']:.4f}",
                    f"{est:.3f} ({est / r['plain']['s_round']:.1f}x)",
                )
            )
    return "\n\n".join(_md(h, b) for h, b in ((head, body), (head2, body2), (head3, body3)))


def _md(head: tuple[str, ...], body: list[tuple[str, ...]]) -> str:
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]

    def line(cells: tuple[str, ...]) -> str:
        return "| " + " | ".join(c.ljust(n) for c, n in zip(cells, widths, strict=True)) + " |"

    sep = "|" + "|".join("-" * (n + 2) for n in widths) + "|"
    return "\n".join([line(head), sep, *(line(b) for b in body)])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--clients", default="10,50,100,200", help="comma-separated cohort sizes")
    ap.add_argument("--rounds", type=int, default=2, help="timed rounds per repeat (+1 warm-up)")
    ap.add_argument("--repeat", type=int, default=2, help="interleaved repeats")
    ap.add_argument(
        "--steps",
        type=int,
        default=0,
        help="local steps of batch 32 per client and round (0: the default 2 epochs of batch 64)",
    )
    ap.add_argument("--neighbours", type=int, help="SecAgg+ k (default 2 * ceil(log2 n))")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--source", default="pe-headers", help="dataset.source")
    ap.add_argument("--json", type=Path, help="also write every measurement here")
    ap.add_argument("--quick", action="store_true", help="tiny synthetic sizes: a smoke test")
    ap.add_argument("--measure-range", action="store_true", help="print delta magnitudes")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    source: dict[str, Any] = {"source": args.source}
    sizes = [int(c) for c in args.clients.split(",") if c.strip()]
    if args.quick:
        source = {"source": "synthetic", "synthetic": {"n_samples": 600, "n_features": 16}}
        sizes, args.rounds, args.repeat = [4, 12], 1, 1
    ds = load_data(build_config({"seed": 0, "dataset": source}))
    if args.measure_range:
        measure_range(ds, source, sizes[-1], args)
        return 0
    print(
        f"{ds.n_samples} samples x {ds.n_features} features ({source['source']}); "
        f"{args.steps or 'default'} local steps, {args.threads} threads; load average "
        f"{[round(x, 2) for x in os.getloadavg()]}",
        flush=True,
    )
    rows = []
    for n in sizes:
        row = bench_clients(ds, source, n, args)
        rows.append(row)
        print(f"{n} clients: P={row['params']}, done", flush=True)
    print()
    print(table(rows))
    if args.json:
        payload = {"args": {k: str(v) for k, v in vars(args).items()}, "results": rows}
        args.json.write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
