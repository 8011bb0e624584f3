"""The simulation runtime: every round of a federation in one process.

The sampled clients train as groups stacked along a leading tensor dimension (``batched``), or
one at a time (``loop``); both run the very same ``fl.local.local_train`` and algorithm hooks,
so they produce the same global model. ``batched`` stacks as many clients as memory allows.
``auto`` does what measured fastest on a CPU: groups capped by the bytes one step touches (the
per-step overhead is shared, the threads get independent clients to work on, the working set
stays small), except that a single thread loops over clients of wide models.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from fedmetamal.config import RunConfig
from fedmetamal.data.federation import Federation
from fedmetamal.errors import TrainingDivergedError
from fedmetamal.fl.base import Algorithm, ClientOutput, RoundContext, State
from fedmetamal.fl.local import local_train, shares_memory, unaliased
from fedmetamal.fl.registry import build_algorithm
from fedmetamal.fl.schedule import DROPOUT_STREAM, client_lr, round_seed, sample_clients
from fedmetamal.models.networks import Network
from fedmetamal.sim.client_store import ClientStore
from fedmetamal.sim.evaluate import Evaluator

#: Bytes one local step of an ``auto`` group touches per client on a CPU (its parameters and
#: its input batch) are kept under this. Measured with ``benchmarks/bench_sim.py`` on 2 cores
#: (docs/benchmarks.md): batching beat the per-client loop for every model size, wide ones
#: included (W-wide: 2.0-2.3 s/round in groups of 10-34 clients, 3.0-3.9 s looping), but much
#: larger groups lose part of it again (100 clients: 2.6-2.9 s), as every step then streams
#: the whole group's parameters and gathered inputs through memory instead of the caches.
GROUP_STEP_BYTES = 64 * 1024**2
#: With a single thread, a client whose local step costs more FLOPs (6 x params x batch) than
#: this already runs its matmuls at the core's full rate, so ``auto`` loops: W-wide looped
#: 0-25 % faster than in groups, which only add memory traffic. Batching pays below ~1e8.
SINGLE_THREAD_LOOP_FLOPS = 1.5e8
#: Bytes of per-client tensors (params, grads, velocity, state) one batched group may hold.
GROUP_MEMORY_BYTES = 2 * 1024**3


def pick_device(name: str) -> torch.device:
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def group_size(
    cfg: RunConfig, network: Network, n_sampled: int, device: torch.device | None = None
) -> int:
    """How many clients train together in one stacked group (``device`` None: a CPU)."""
    strategy = cfg.runtime.strategy
    if strategy == "loop":
        return 1
    p, b, d = network.num_params, cfg.training.batch_size, network.n_features
    size = max(1, min(n_sampled, GROUP_MEMORY_BYTES // (6 * 4 * p + 4 * b * d)))
    if strategy == "auto" and (device is None or device.type == "cpu"):
        threads = cfg.runtime.threads or torch.get_num_threads()
        if threads == 1 and 6 * p * b > SINGLE_THREAD_LOOP_FLOPS:
            return 1
        size = max(1, min(size, GROUP_STEP_BYTES // (4 * (p + b * d))))
    if cfg.runtime.max_batched_clients:
        size = min(size, cfg.runtime.max_batched_clients)
    return size


@dataclass
class RoundRecord:
    """What one round produced; ``metrics`` only on evaluation rounds."""

    round: int
    clients: list[int]
    lr: float
    train_loss: float
    seconds: float
    metrics: dict[str, float] | None = None
    client_metrics: list[dict[str, Any]] | None = None


@dataclass
class SimulationState:
    """Everything needed to continue a simulation (checkpointed with the model)."""

    params: torch.Tensor
    server_state: State
    client_state: dict[str, torch.Tensor] = field(default_factory=dict)  # (N, ...) per key
    round: int = 0


class Simulation:
    def __init__(self, cfg: RunConfig, fed: Federation, device: torch.device | None = None) -> None:
        self.cfg = cfg
        self.device = device or pick_device(cfg.runtime.device)
        if cfg.runtime.threads:
            torch.set_num_threads(cfg.runtime.threads)
        self.algorithm: Algorithm = build_algorithm(
            cfg.algorithm.name, cfg.algorithm.params, cfg.algorithm.server_lr
        )
        self.fed = fed
        self.store = ClientStore.from_federation(fed, self.device, self.algorithm.pooled)
        self.network = Network.from_config(cfg.model, fed.n_features)
        self.evaluator = Evaluator(fed, self.device, cfg.evaluation.per_client)
        gen = torch.Generator().manual_seed(cfg.seed)
        params = self.network.init(gen).to(self.device)
        n_total = self.store.n_clients
        client_state = {
            k: v.to(self.device).unsqueeze(0).repeat(n_total, *([1] * v.dim()))
            for k, v in self.algorithm.init_client_state(self.network.num_params).items()
        }
        self.state = SimulationState(params, self.algorithm.init_server_state(params), client_state)
        #: The sampled clients' parameters while they train, then their deltas: reused across
        #: rounds (a fresh (clients, P) tensor a round costs page faults worth a few % of a round).
        self._work = torch.empty(0, device=self.device)

    # -- one round -------------------------------------------------------------------------
    def _train_group(
        self, clients: list[int], ctx: RoundContext, r: int, work: torch.Tensor
    ) -> ClientOutput:
        t = self.cfg.training
        n_steps = self.store.step_counts(clients, t.batch_size, t.local_epochs, t.local_steps)
        idx = torch.as_tensor(clients, device=self.device)
        cstate = {k: v[idx] for k, v in self.state.client_state.items()}
        gen = None
        if self.network.dropout > 0:  # one generator per client: masks independent of grouping
            gen = [
                torch.Generator(device=self.device).manual_seed(
                    round_seed(self.cfg.seed, r, DROPOUT_STREAM, c)
                )
                for c in clients
            ]
        batches = self.store.batches(clients, t.batch_size, n_steps, self.cfg.seed, r)
        sizes = torch.as_tensor(self.store.sizes[clients], device=self.device)
        out, new_state = local_train(
            self.network, self.algorithm, ctx, batches, cstate, sizes, gen, out=work
        )
        for k, v in new_state.items():
            self.state.client_state[k][idx] = v
        return out

    def run_round(self) -> RoundRecord:
        r = self.state.round
        t0 = time.perf_counter()
        t = self.cfg.training
        sampled = sample_clients(self.store.n_clients, t.client_fraction, self.cfg.seed, r)
        lr = client_lr(t, r)
        ctx = RoundContext(
            round=r,
            global_params=self.state.params,
            broadcast=self.algorithm.broadcast(self.state.server_state),
            lr=lr,
            momentum=t.client_momentum,
            weight_decay=t.weight_decay,
        )
        size = group_size(self.cfg, self.network, len(sampled), self.device)
        shape = (len(sampled), self.network.num_params)
        if self._work.shape != shape:
            self._work = torch.empty(shape, device=self.device)
        outputs = [
            self._train_group(sampled[i : i + size].tolist(), ctx, r, self._work[i : i + size])
            for i in range(0, len(sampled), size)
        ]
        out = outputs[0] if len(outputs) == 1 else ClientOutput.stack(outputs, self._work)
        weights = out.num_samples if t.weighting == "samples" else torch.ones_like(out.num_samples)
        train_loss = float((weights * out.train_loss).sum() / weights.sum())
        new_params, new_server = self.algorithm.server_update(
            self.state.params, self.state.server_state, out, weights, self.store.n_clients
        )
        if not (np.isfinite(train_loss) and bool(torch.isfinite(new_params).all())):
            raise self._diverged(r)
        # the next round overwrites the deltas: keep nothing the server holds on to inside them
        if shares_memory(new_params, self._work):
            new_params = new_params.clone()
        self.state.params = new_params
        self.state.server_state = unaliased(new_server, self._work)
        self.state.round = r + 1
        record = RoundRecord(r + 1, sampled.tolist(), lr, train_loss, time.perf_counter() - t0)
        every = self.cfg.evaluation.every
        if (r + 1) % every == 0 or r + 1 == t.rounds:
            record.metrics = self.evaluator.global_metrics(self.network, self.state.params)
            if record.metrics is None:
                raise self._diverged(r)
            if self.cfg.evaluation.per_client:
                record.client_metrics = self.evaluator.client_metrics(
                    self.network, self.state.params
                )
        return record

    def _diverged(self, r: int) -> TrainingDivergedError:
        t = self.cfg.training
        return TrainingDivergedError(
            f"Training diverged in round {r + 1}: the loss or the model's outputs became NaN/inf.",
            f"Lower training.client_lr (now {t.client_lr}) or algorithm.server_lr "
            f"(now {self.algorithm.server_lr}), or check the data for extreme values.",
        )

    def run(self, on_round: Callable[[RoundRecord], None] | None = None) -> list[RoundRecord]:
        history = []
        while self.state.round < self.cfg.training.rounds:
            rec = self.run_round()
            history.append(rec)
            if on_round:
                on_round(rec)
        return history
