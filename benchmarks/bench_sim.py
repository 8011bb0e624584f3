"""Simulation speed: fedmetamal's runtime against a plain per-client PyTorch loop.

Three FedAvg workloads (SGD lr 0.01, one local epoch) run through ``fedmetamal.sim.Simulation``
and through a straightforward baseline (one ``nn.Module`` + ``torch.optim.SGD`` trained client
after client on the very same batches, then a sample-weighted average). Rounds of the two are
interleaved and repeated and medians are reported, because shared machines are noisy. The
machine's fp32 matmul rate (2048 x 2048) is timed in the same run.

Achieved GFLOP/s uses the nominal count 6 x parameters x samples per round (forward 2, backward
4). A first layer never needs the gradient of its input, so the real work is lower (about
4 x P x samples for a model whose first layer holds almost all parameters).

    .venv/bin/python benchmarks/bench_sim.py                # all workloads
    .venv/bin/python benchmarks/bench_sim.py --workloads W-wide --rounds 3 --repeat 5
    .venv/bin/python benchmarks/bench_sim.py --quick        # seconds-long smoke version
    .venv/bin/python benchmarks/bench_sim.py --sweep        # batched vs loop by model size
"""

from __future__ import annotations

import os

# Idle OpenMP workers sleep instead of spinning. On a shared machine a spinning worker competes
# with other processes for a core, and every parallel region then waits for a descheduled
# thread: rounds of tiny ops became up to 100x slower. Both contenders run under the same
# setting; export OMP_WAIT_POLICY=ACTIVE to measure the other way.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import importlib.util
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fedmetamal.config import RunConfig, build_config
from fedmetamal.data.dataset import Dataset
from fedmetamal.data.federation import ClientData, Federation
from fedmetamal.fl.local import batch_plan, local_step_count
from fedmetamal.fl.schedule import SHUFFLE_STREAM, round_seed, sample_clients
from fedmetamal.models.networks import Network
from fedmetamal.sim.runtime import Simulation, group_size

LR = 0.01
SEED = 0


@dataclass(frozen=True)
class Workload:
    name: str
    clients: int
    samples: int  # per client
    features: int
    hidden: tuple[int, ...]
    batch: int
    fraction: float  # clients sampled per round
    target: str  # "speedup": >= 5x the loop; "matmul": >= 80 % of the matmul rate

    @property
    def per_round(self) -> int:
        """Clients trained in one round (the runtime's own sampling rule)."""
        return max(1, round(self.fraction * self.clients))


WORKLOADS = {
    w.name: w
    for w in (
        Workload("W-small", 100, 512, 55, (64, 64), 32, 1.0, "speedup"),
        Workload("W-wide", 100, 512, 2568, (256, 64), 64, 1.0, "matmul"),
        Workload("W-device", 1000, 50, 55, (64, 64), 10, 0.05, "speedup"),
    )
}
SPEEDUP_TARGET = 5.0
MATMUL_TARGET = 0.80


def quick(w: Workload) -> Workload:
    """A tiny version with the same shape of work (for the smoke test)."""
    return replace(w, clients=min(w.clients, 6), samples=min(w.samples, 40), fraction=0.5)


# ---- data -------------------------------------------------------------------------------------
def make_federation(w: Workload, seed: int = SEED) -> Federation:
    """Gaussian features, labels from a random linear rule with a little noise."""
    rng = np.random.default_rng(seed)
    rule = rng.normal(size=w.features).astype(np.float32)
    names = [f"f{i}" for i in range(w.features)]

    def dataset(n: int) -> Dataset:
        X = rng.standard_normal(size=(n, w.features), dtype=np.float32)
        y = (X @ rule + 0.5 * rng.standard_normal(n) > 0).astype(np.int8)
        return Dataset(X, y, names)

    empty = Dataset(np.zeros((0, w.features), np.float32), np.zeros(0, np.int8), names)
    clients = [ClientData(i, dataset(w.samples), empty) for i in range(w.clients)]
    return Federation(clients, dataset(256))


def run_config(w: Workload, strategy: str, threads: int) -> RunConfig:
    return build_config(
        {
            "seed": SEED,
            "model": {
                "kind": "mlp",
                "hidden": list(w.hidden),
                "activation": "relu",
                "norm": "none",
                "dropout": 0.0,
            },
            "algorithm": {"name": "fedavg", "server_lr": 1.0},
            "training": {  # every setting the plain loop mirrors, pinned against new defaults
                "rounds": 10**9,  # never the last round: no final evaluation while timing
                "local_epochs": 1.0,
                "local_steps": None,
                "batch_size": w.batch,
                "client_lr": LR,
                "client_momentum": 0.0,
                "weight_decay": 0.0,
                "lr_schedule": "constant",
                "client_fraction": w.fraction,
                "weighting": "samples",
            },
            "evaluation": {"every": 10**9, "per_client": False},
            "runtime": {"strategy": strategy, "device": "cpu", "threads": threads},
        }
    )


# ---- the baseline: a plain per-client loop ----------------------------------------------------
class LoopBaseline:
    """FedAvg as one would write it by hand: one module, trained client after client.

    It draws each client's shuffle with the same seeds as the runtime (``batch_plan``), so both
    see identical batches and take identical steps, and their global models agree to rounding.
    """

    def __init__(self, w: Workload, fed: Federation, network: Network, init: torch.Tensor) -> None:
        self.w = w
        self.X = [torch.from_numpy(c.train.X) for c in fed.clients]
        self.y = [torch.from_numpy(c.train.y.astype(np.float32)) for c in fed.clients]
        self.model = network.to_module(init)
        self.model.train()
        self.params = list(self.model.parameters())
        self.global_ = [p.detach().clone() for p in self.params]
        self.opt = torch.optim.SGD(self.params, lr=LR)  # plain SGD keeps no state across clients
        self.loss = nn.BCEWithLogitsLoss()
        self.round = 0

    def run_round(self) -> None:
        w, r = self.w, self.round
        sampled = sample_clients(w.clients, w.fraction, SEED, r)
        sizes = [self.y[c].shape[0] for c in sampled]
        total = float(sum(sizes))
        acc = [torch.zeros_like(g) for g in self.global_]
        for c, n in zip(sampled.tolist(), sizes, strict=True):
            with torch.no_grad():
                for p, g in zip(self.params, self.global_, strict=True):
                    p.copy_(g)
            gen = torch.Generator().manual_seed(round_seed(SEED, r, SHUFFLE_STREAM, c))
            steps = local_step_count(n, w.batch, 1.0, None)
            for rows in batch_plan(n, w.batch, steps, gen):
                idx = torch.from_numpy(rows)
                self.opt.zero_grad(set_to_none=True)
                out = self.model(self.X[c][idx]).squeeze(-1)
                self.loss(out, self.y[c][idx]).backward()
                self.opt.step()
            with torch.no_grad():
                for a, p in zip(acc, self.params, strict=True):
                    a.add_(p, alpha=n / total)
        self.global_ = acc
        self.round = r + 1

    def flat(self, network: Network) -> torch.Tensor:
        """The global model in fedmetamal's flat layout (weights stored (in, out))."""
        parts = []
        for i, t in enumerate(self.global_):
            parts.append((t.T if i % 2 == 0 else t).reshape(-1))
        return torch.cat(parts)


# ---- Flower (optional) ------------------------------------------------------------------------
def flower_round_seconds(w: Workload, fed: Federation, network: Network, rounds: int) -> float:
    """Median seconds per round of the same FedAvg through Flower's simulation engine.

    Each client is a ``NumPyClient`` running the baseline's local training. Rounds are timed
    between consecutive server aggregations, so Ray's start-up and the first round (actor
    creation) are left out, as the warm-up round is elsewhere.
    """
    from flwr.client import ClientApp, NumPyClient
    from flwr.common import Context, ndarrays_to_parameters
    from flwr.server import ServerApp, ServerAppComponents, ServerConfig
    from flwr.server.strategy import FedAvg
    from flwr.simulation import run_simulation

    init = network.init(torch.Generator().manual_seed(SEED))
    initial = [p.detach().numpy().copy() for p in network.to_module(init).parameters()]
    stamps: list[float] = []

    class TimedFedAvg(FedAvg):  # type: ignore[misc]
        def aggregate_fit(self, server_round, results, failures):  # type: ignore[no-untyped-def]
            out = super().aggregate_fit(server_round, results, failures)
            stamps.append(time.perf_counter())
            return out

    class Client(NumPyClient):  # type: ignore[misc]
        def __init__(self, cid: int) -> None:
            self.model = network.to_module(init)
            self.X = torch.from_numpy(fed.clients[cid].train.X)
            self.y = torch.from_numpy(fed.clients[cid].train.y.astype(np.float32))

        def fit(self, parameters: list[np.ndarray], config: dict) -> tuple:
            with torch.no_grad():
                for p, a in zip(self.model.parameters(), parameters, strict=True):
                    p.copy_(torch.from_numpy(a))
            opt = torch.optim.SGD(self.model.parameters(), lr=LR)
            loss = nn.BCEWithLogitsLoss()
            perm = torch.randperm(len(self.y))
            for s in range(0, len(self.y), w.batch):
                idx = perm[s : s + w.batch]
                opt.zero_grad(set_to_none=True)
                loss(self.model(self.X[idx]).squeeze(-1), self.y[idx]).backward()
                opt.step()
            return [p.detach().numpy().copy() for p in self.model.parameters()], len(self.y), {}

    def client_fn(context: Context) -> object:
        return Client(int(context.node_config["partition-id"])).to_client()

    def server_fn(context: Context) -> ServerAppComponents:
        strategy = TimedFedAvg(
            fraction_fit=w.fraction,
            min_fit_clients=w.per_round,
            fraction_evaluate=0.0,
            min_evaluate_clients=0,
            min_available_clients=w.clients,
            initial_parameters=ndarrays_to_parameters(initial),
        )
        return ServerAppComponents(strategy=strategy, config=ServerConfig(num_rounds=rounds + 1))

    run_simulation(
        server_app=ServerApp(server_fn=server_fn),
        client_app=ClientApp(client_fn=client_fn),
        num_supernodes=w.clients,
        backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}},
    )
    if len(stamps) < 2:
        raise RuntimeError(f"Flower finished {len(stamps)} timed rounds, expected {rounds + 1}")
    return statistics.median(np.diff(stamps).tolist())


def framework_status(module: str) -> str | None:
    """None when an optional framework can run; otherwise why it is skipped."""
    if importlib.util.find_spec(module) is None:
        extra = "'fedmetamal[bench]'" if module == "flwr" else module
        return f"{module} not installed (pip install {extra})"
    if module == "flwr" and importlib.util.find_spec("ray") is None:
        return "flwr installed without its simulation extra (ray missing)"
    if module == "pfl":
        return "pfl installed, but this benchmark has no pfl runner yet"
    return None


# ---- timing -----------------------------------------------------------------------------------
def matmul_gflops(n: int = 2048, tries: int = 5) -> float:
    """Best fp32 rate of one n x n x n matmul over ``tries`` runs."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    out = torch.empty(n, n)
    torch.mm(a, b, out=out)
    best = float("inf")
    for _ in range(tries):
        t0 = time.perf_counter()
        torch.mm(a, b, out=out)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bench_workload(
    w: Workload, rounds: int, repeat: int, strategy: str, threads: int, matmul_n: int
) -> dict[str, object]:
    """Interleaved timing of fedmetamal, the loop and the matmul for one workload."""
    fed = make_federation(w)
    cfg = run_config(w, strategy, threads)
    sim = Simulation(cfg, fed)
    network = sim.network
    base = LoopBaseline(w, fed, network, sim.state.params)
    n_group = group_size(cfg, network, w.per_round)

    sim.run_round()  # warm-up (allocator, first-call costs) for both, not timed
    base.run_round()
    parity = float((sim.state.params - base.flat(network)).abs().max())
    fm_times: list[float] = []
    loop_times: list[float] = []
    matmul: list[float] = []
    for _ in range(repeat):
        for _ in range(rounds):  # alternate single rounds so bursts of load hit both alike
            fm_times.append(timed(sim.run_round))
            loop_times.append(timed(base.run_round))
        matmul.append(matmul_gflops(matmul_n))

    samples = w.per_round * w.samples  # every client holds w.samples rows
    flops = 6 * network.num_params * samples
    fm, loop = statistics.median(fm_times), statistics.median(loop_times)
    rate = max(matmul)  # the machine's rate: the best it showed during this workload
    row: dict[str, object] = {
        "workload": w.name,
        "params": network.num_params,
        "samples_per_round": samples,
        "strategy": "loop" if n_group == 1 else f"batched/{n_group}",
        "s_round_fedmetamal": fm,
        "s_round_loop": loop,
        "speedup": loop / fm,
        "gflops": flops / fm / 1e9,
        "gflops_loop": flops / loop / 1e9,
        "matmul_gflops": rate,
        "matmul_gflops_median": statistics.median(matmul),
        "pct_matmul": flops / fm / 1e9 / rate,
        "fedmetamal_rounds": fm_times,
        "loop_rounds": loop_times,
        "parity_max_abs_diff": parity,
    }
    if w.target == "speedup":
        row["target"] = f">= {SPEEDUP_TARGET:g}x loop"
        row["met"] = loop / fm >= SPEEDUP_TARGET
    else:
        row["target"] = f">= {MATMUL_TARGET:.0%} matmul"
        row["met"] = flops / fm / 1e9 / rate >= MATMUL_TARGET
    return row


def bench_flower(w: Workload, rounds: int, fm_seconds: float) -> dict[str, object]:
    """The same workload through Flower where it is installed, else why not."""
    reason = framework_status("flwr")
    if reason is not None:
        return {"skipped": reason}
    fed = make_federation(w)
    network = Network(w.features, w.hidden)
    try:
        seconds = flower_round_seconds(w, fed, network, rounds)
    except Exception as err:  # a broken optional install must not stop the benchmark
        return {"skipped": f"Flower run failed: {type(err).__name__}: {err}"}
    return {"s_round": seconds, "ratio": seconds / fm_seconds}


# ---- the batched/loop crossover (runtime.BATCH_FLOP_LIMIT) -------------------------------------
SWEEP_MODELS = (  # (features, hidden, batch): per-client step FLOPs from 1.5e6 to 2.6e8
    (55, (64, 64), 32),
    (256, (256, 64), 32),
    (1024, (256, 64), 32),
    (1024, (256, 64), 64),
    (2568, (256, 64), 32),
    (2568, (256, 64), 64),
)
SWEEP_GROUPS = (1, 4, 16, 64)


def sweep(threads: int, rounds: int) -> list[dict[str, object]]:
    """Median s/round of 64 clients x 256 samples at several group sizes (1 = the loop)."""
    rows = []
    for d, hidden, batch in SWEEP_MODELS:
        w = Workload(
            f"{d}-{'-'.join(map(str, hidden))}-1/b{batch}", 64, 256, d, hidden, batch, 1.0, ""
        )
        fed = make_federation(w)
        sims = {}
        for g in SWEEP_GROUPS:
            cfg = run_config(w, "batched", threads)
            cfg.runtime.max_batched_clients = g
            sims[g] = Simulation(cfg, fed)
            sims[g].run_round()
        times: dict[int, list[float]] = {g: [] for g in SWEEP_GROUPS}
        for _ in range(rounds):
            for g, sim in sims.items():
                times[g].append(timed(sim.run_round))
        p = sims[1].network.num_params
        row: dict[str, object] = {"model": w.name, "step_flops": 6 * p * batch}
        row.update({f"g{g}": statistics.median(t) for g, t in times.items()})
        rows.append(row)
        cells = "  ".join(f"group {g}: {row[f'g{g}']:.3f}" for g in SWEEP_GROUPS)
        print(f"{w.name:22s} step {row['step_flops']:.1e} FLOP  {cells}", flush=True)
    return rows


# ---- output -----------------------------------------------------------------------------------
def table(rows: list[dict[str, object]]) -> str:
    """A Markdown table (pasted as-is into docs/benchmarks.md)."""
    head = (
        "workload",
        "strategy",
        "s/round fedmetamal",
        "s/round loop",
        "speed-up",
        "GFLOP/s",
        "% of matmul",
        "target",
        "met",
    )
    body = [
        (
            str(r["workload"]),
            str(r["strategy"]),
            f"{r['s_round_fedmetamal']:.4f}",
            f"{r['s_round_loop']:.4f}",
            f"{r['speedup']:.1f}x",
            f"{r['gflops']:.1f}",
            f"{r['pct_matmul']:.0%}",
            str(r["target"]),
            "yes" if r["met"] else "no",
        )
        for r in rows
    ]
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]

    def line(cells: tuple[str, ...]) -> str:
        return "| " + " | ".join(c.ljust(n) for c, n in zip(cells, widths, strict=True)) + " |"

    sep = "|" + "|".join("-" * (n + 2) for n in widths) + "|"
    return "\n".join([line(head), sep, *(line(b) for b in body)])


def machine(threads: int) -> dict[str, object]:
    return {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "threads": threads,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_avg_1_5_15": [round(x, 2) for x in os.getloadavg()],
    }


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated names")
    ap.add_argument("--rounds", type=int, default=3, help="timed rounds per repeat (+1 warm-up)")
    ap.add_argument("--repeat", type=int, default=3, help="interleaved repeats")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads")
    ap.add_argument(
        "--strategy", choices=("auto", "batched", "loop"), default="auto", help="runtime strategy"
    )
    ap.add_argument("--no-frameworks", action="store_true", help="skip Flower even if installed")
    ap.add_argument("--json", type=Path, help="also write every measurement here")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, 1 round: a smoke test")
    ap.add_argument(
        "--sweep", action="store_true", help="time group sizes across model sizes instead"
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.sweep:
        print("s/round (median of --rounds) by clients per batched group; group 1 = loop")
        result = sweep(args.threads, args.rounds)
        if args.json:
            args.json.write_text(json.dumps({"machine": machine(args.threads), "sweep": result}))
        return 0

    names = [n.strip() for n in args.workloads.split(",") if n.strip()]
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown:
        ap.error(f"unknown workloads {unknown}; choose from {list(WORKLOADS)}")
    rounds, repeat, matmul_n = (1, 1, 512) if args.quick else (args.rounds, args.repeat, 2048)
    info = machine(args.threads)
    print(
        f"{info['cpu']}, {info['cores']} cores; torch {info['torch']}, {args.threads} threads, "
        f"OMP_WAIT_POLICY={info['omp_wait_policy']}; load average {info['load_avg_1_5_15']}",
        flush=True,
    )
    rows = []
    for name in names:
        w = quick(WORKLOADS[name]) if args.quick else WORKLOADS[name]
        row = bench_workload(w, rounds, repeat, args.strategy, args.threads, matmul_n)
        if not args.no_frameworks:
            row["flower"] = bench_flower(w, rounds, float(row["s_round_fedmetamal"]))  # type: ignore[arg-type]
        rows.append(row)
        print(
            f"{name}: P={row['params']}, {row['samples_per_round']} samples/round, "
            f"{len(row['fedmetamal_rounds'])} timed rounds each; "  # type: ignore[arg-type]
            f"global models after warm-up differ by <= {row['parity_max_abs_diff']:.1e}",
            flush=True,
        )
    print()
    print(table(rows))
    print(
        f"\nGFLOP/s = 6 x params x samples per round / median s/round of fedmetamal; % of matmul: "
        f"of the best {matmul_n}x{matmul_n} fp32 matmul timed between that workload's rounds."
    )
    for r in rows:
        print(
            f"{r['workload']}: matmul best {r['matmul_gflops']:.1f}, median "
            f"{r['matmul_gflops_median']:.1f} GFLOP/s; the plain loop reached "
            f"{r['gflops_loop']:.1f} GFLOP/s"
        )
    for r in rows:
        fl = r.get("flower")
        if not isinstance(fl, dict):
            print(f"Flower {r['workload']}: skipped (--no-frameworks)")
        elif "ratio" in fl:
            print(
                f"Flower {r['workload']}: {fl['s_round']:.4f} s/round, "
                f"{fl['ratio']:.1f}x the time of fedmetamal"
            )
        else:
            print(f"Flower {r['workload']}: skipped: {fl['skipped']}")
    print(f"pfl: skipped: {framework_status('pfl')}")
    if args.json:
        payload = {
            "machine": info,
            "args": {k: str(v) for k, v in vars(args).items()},
            "workloads": {n: asdict(WORKLOADS[n]) for n in names},
            "results": rows,
        }
        args.json.write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
