"""The simulation runtime: every round of a federation in one process.

The sampled clients train as groups stacked along a leading tensor dimension (``batched``), or
one at a time (``loop``); both run the very same ``fl.local.local_train`` and algorithm hooks,
so they produce the same global model. ``auto`` picks by model size: small models gain a lot
from batching (per-step overhead dominates), while a wide model's per-client matmuls already run
near the machine's peak.
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
from fedmetamal.fl.local import local_train
from fedmetamal.fl.registry import build_algorithm
from fedmetamal.fl.schedule import DROPOUT_STREAM, client_lr, round_seed, sample_clients
from fedmetamal.models.networks import Network
from fedmetamal.sim.client_store import ClientStore
from fedmetamal.sim.evaluate import Evaluator

#: Per-client FLOPs of one local step (6 x params x batch) above which ``auto`` loops over
#: clients instead of batching them; measured with benchmarks/bench_sim.py (docs/benchmarks.md).
BATCH_FLOP_LIMIT = 5e7
#: Bytes of per-client tensors (params, grads, velocity, state) one batched group may hold.
GROUP_MEMORY_BYTES = 2 * 1024**3


def pick_device(name: str) -> torch.device:
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def group_size(cfg: RunConfig, network: Network, n_sampled: int) -> int:
    """How many clients train together in one stacked group."""
    strategy = cfg.runtime.strategy
    step_flops = 6 * network.num_params * cfg.training.batch_size
    if strategy == "loop" or (strategy == "auto" and step_flops > BATCH_FLOP_LIMIT):
        return 1
    per_client = 6 * 4 * network.num_params + 4 * cfg.training.batch_size * network.n_features
    size = max(1, min(n_sampled, GROUP_MEMORY_BYTES // per_client))
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
        self.store = ClientStore.from_federation(fed, self.device)
        if self.algorithm.pooled:
            self.store = ClientStore(
                [self.store.X.cpu().numpy()], [self.store.y.cpu().numpy()], self.device
            )
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

    # -- one round -------------------------------------------------------------------------
    def _train_group(self, clients: list[int], ctx: RoundContext, r: int) -> ClientOutput:
        t = self.cfg.training
        n_steps = self.store.step_counts(clients, t.batch_size, t.local_epochs, t.local_steps)
        idx = torch.as_tensor(clients, device=self.device)
        cstate = {k: v[idx] for k, v in self.state.client_state.items()}
        gen = None
        if self.network.dropout > 0:
            gen = torch.Generator(device=self.device)
            gen.manual_seed(round_seed(self.cfg.seed, r, DROPOUT_STREAM, clients[0]))
        batches = self.store.batches(clients, t.batch_size, n_steps, self.cfg.seed, r)
        sizes = torch.as_tensor(self.store.sizes[clients], device=self.device)
        out, new_state = local_train(self.network, self.algorithm, ctx, batches, cstate, sizes, gen)
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
        size = group_size(self.cfg, self.network, len(sampled))
        groups = [sampled[i : i + size].tolist() for i in range(0, len(sampled), size)]
        outputs = [self._train_group(g, ctx, r) for g in groups]
        out = outputs[0] if len(outputs) == 1 else ClientOutput.stack(outputs)
        weights = out.num_samples if t.weighting == "samples" else torch.ones_like(out.num_samples)
        train_loss = float((weights * out.train_loss).sum() / weights.sum())
        new_params, new_server = self.algorithm.server_update(
            self.state.params, self.state.server_state, out, weights, self.store.n_clients
        )
        if not (np.isfinite(train_loss) and bool(torch.isfinite(new_params).all())):
            raise self._diverged(r)
        self.state.params, self.state.server_state = new_params, new_server
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
