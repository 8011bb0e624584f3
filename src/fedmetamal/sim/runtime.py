"""The simulation runtime: every round of a federation in one process.

The sampled clients train as groups stacked along a leading tensor dimension (``batched``), or
one at a time (``loop``); both run the very same ``fl.local.local_train`` and algorithm hooks,
so they produce the same global model. ``batched`` stacks as many clients as memory allows.
``auto`` does what measured fastest on a CPU: groups capped by the bytes one step touches (the
per-step overhead is shared, the threads get independent clients to work on, the working set
stays small), except that a single thread loops over clients of wide models.

Semi-supervised training (``cfg.semi``) adds three things to a round, none of them on the
supervised path: after warm-up, clients train on their unlabelled rows too (the objective's
pseudo-labelled rows join each local step); FedMatch clients get helper models picked by the
server; and with a server labelled set (labels-at-server), the server fine-tunes the global
model on it after every server update. Clients with nothing to learn from in a round (no
labels, and no active unlabelled objective) sit it out; if none are left, the round is the
server's fine-tuning alone.
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
from fedmetamal.fl.aggregate import check_aggregation, remaining_byzantine, required_clients
from fedmetamal.fl.base import Algorithm, ClientOutput, RoundContext, State
from fedmetamal.fl.local import local_train, shares_memory, unaliased
from fedmetamal.fl.registry import build_algorithm
from fedmetamal.fl.schedule import (
    DROPOUT_STREAM,
    client_lr,
    round_generators,
    sample_clients,
)
from fedmetamal.fl.semi import SemiGroup, SemiObjective, labelled_prior, select_helpers
from fedmetamal.fl.semi.server import server_finetune
from fedmetamal.fl.semi.streams import AUGMENT_STREAM
from fedmetamal.models.networks import Network
from fedmetamal.sim.attacks import Attack
from fedmetamal.sim.client_store import ClientStore
from fedmetamal.sim.evaluate import Evaluator
from fedmetamal.sim.round_privacy import RoundPrivacy, dp_enabled
from fedmetamal.sim.sample_privacy import SamplePrivacy, sample_dp_enabled
from fedmetamal.sim.secure_round import (
    RoundSkipped,
    SecureAggregator,
    check_secagg_config,
    secagg_enabled,
    secure_aggregator,
)
from fedmetamal.sim.server_data import root_set, server_set
from fedmetamal.sim.update_checks import check_updates, select_rows

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
    # DP-SGD holds per-sample layer gradients, (C, B, width) per layer: groups stay small
    # (measured on pe-headers at batch 512: no faster without this cap)
    if cfg.privacy.mode == "sample":
        size = max(1, min(size, GROUP_STEP_BYTES * 8 // (2 * 4 * p * b)))
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
    #: Privacy spent after this round (with ``privacy.mode`` participant or sample; else None).
    epsilon: float | None = None
    #: Clients whose updates failed validation (client id -> reason), if any.
    excluded: dict[int, str] | None = None
    #: Secure aggregation (``secagg.enabled``): cohort, threshold, survivors, dropped and
    #: excluded clients, bytes up / down, seconds (see ``sim/secure_round.py``).
    secagg: dict[str, Any] | None = None
    #: Why the round left the global model unchanged (too few valid updates or survivors).
    skipped: str | None = None


@dataclass
class SimulationState:
    """Everything needed to continue a simulation (checkpointed with the model)."""

    params: torch.Tensor
    server_state: State
    client_state: dict[str, torch.Tensor] = field(default_factory=dict)  # (N, ...) per key
    round: int = 0
    #: FedMatch's server-side memory: each client's last model and delta (N, P), and whether
    #: it has one (N,).
    semi_state: dict[str, torch.Tensor] = field(default_factory=dict)


class Simulation:
    def __init__(self, cfg: RunConfig, fed: Federation, device: torch.device | None = None) -> None:
        self.cfg = cfg
        self.device = device or pick_device(cfg.runtime.device)
        if cfg.runtime.threads:
            torch.set_num_threads(cfg.runtime.threads)
        #: Malicious participants (``cfg.attack``): data attacks poison their training data
        #: here, once, before the store copies it; update attacks rewrite their deltas.
        self.attack = Attack(cfg.attack, fed, cfg.seed)
        self.malicious: list[int] = self.attack.malicious.tolist()
        known = len(self.malicious) if self.attack.active else None
        per_round = min(fed.n_clients, max(1, round(cfg.training.client_fraction * fed.n_clients)))
        check_aggregation(cfg.aggregation, per_round, byzantine=known)  # before any training
        self.algorithm: Algorithm = build_algorithm(
            cfg.algorithm.name,
            cfg.algorithm.params,
            cfg.algorithm.server_lr,
            aggregation=cfg.aggregation,
            byzantine=known,
        )
        #: Participant-level DP (``cfg.privacy``): set up, and refused, before any training.
        self.privacy = RoundPrivacy(self, per_round, fed.n_clients) if dp_enabled(cfg) else None
        #: FLTrust's root set: a small clean sample the server holds (taken before poisoning).
        self.root_set = (
            root_set(fed, cfg.aggregation.root_fraction, cfg.seed, self.device)
            if cfg.aggregation.kind == "fltrust"
            else None
        )
        fed = self.attack.poison(fed)
        self.fed = fed
        self.objective = SemiObjective.from_config(cfg.semi)
        self.store = ClientStore.from_federation(
            fed, self.device, self.algorithm.pooled, unlabelled=self.objective.uses_unlabelled
        )
        #: Sample-level DP (DP-SGD at every participant): set up, and refused, before training.
        self.sample_dp = SamplePrivacy(cfg, self.store.sizes) if sample_dp_enabled(cfg) else None
        self.network = Network.from_config(cfg.model, fed.n_features)
        self.evaluator = Evaluator(
            fed, self.device, cfg.evaluation.per_client, threshold=cfg.semi.threshold
        )
        if self.attack.active:
            self.evaluator.set_probe(self.attack.probe(fed.test))
        self.server_set = server_set(fed, self.device)
        self.prior = self._class_prior()
        gen = torch.Generator().manual_seed(cfg.seed)
        params = self.network.init(gen).to(self.device)
        n_total = self.store.n_clients
        client_state = {
            k: v.to(self.device).unsqueeze(0).repeat(n_total, *([1] * v.dim()))
            for k, v in self.algorithm.init_client_state(self.network.num_params).items()
        }
        self.state = SimulationState(params, self.algorithm.init_server_state(params), client_state)
        if self.objective.uses_helpers:
            p = self.network.num_params
            self.state.semi_state = {
                "last_model": torch.zeros((n_total, p), device=self.device),
                "last_delta": torch.zeros((n_total, p), device=self.device),
                "has_history": torch.zeros(n_total, dtype=torch.bool, device=self.device),
            }
        #: Secure aggregation (``cfg.secagg``): refused before training when it cannot run,
        #: else it replaces the algorithm's (mean or DP) aggregator.
        self.secure: SecureAggregator | None = None
        if secagg_enabled(cfg):
            check_secagg_config(cfg, per_round, self.objective.uses_helpers)
            self.secure = secure_aggregator(self)
        #: What the current round's pipeline did (validation, secure aggregation, skipping).
        self._notes: dict[str, Any] = {}
        #: The sampled clients' parameters while they train, then their deltas: reused across
        #: rounds (a fresh (clients, P) tensor a round costs page faults worth a few % of a round).
        self._work = torch.empty(0, device=self.device)

    # -- one round -------------------------------------------------------------------------
    def _class_prior(self) -> torch.Tensor:
        """Each client's malware share for class-balanced pseudo-labels: its labels' smoothed
        share, or the server set's share for clients without labels (0.5 without either)."""
        s = self.store
        prior = labelled_prior(torch.as_tensor(s.malware), torch.as_tensor(s.sizes)).float()
        server = self.server_set
        fallback = float(server[1].float().mean()) if server is not None else 0.5
        prior[torch.as_tensor(s.sizes == 0)] = fallback
        return prior.to(self.device)

    def _train_group(
        self, clients: list[int], ctx: RoundContext, r: int, work: torch.Tensor
    ) -> ClientOutput:
        t = self.cfg.training
        semi = self.objective.active(r)
        if semi:
            n_steps = self.store.semi_step_counts(
                clients, t.batch_size, self.objective.mu, t.local_epochs, t.local_steps
            )
        else:
            n_steps = self.store.step_counts(clients, t.batch_size, t.local_epochs, t.local_steps)
        idx = torch.as_tensor(clients, device=self.device)
        cstate = {k: v[idx] for k, v in self.state.client_state.items()}
        gen = None
        if self.network.dropout > 0:  # one generator per client: masks independent of grouping
            gen = round_generators(self.device, self.cfg.seed, r, DROPOUT_STREAM, clients)
        group, dp = None, None
        if semi:
            batches = self.store.semi_batches(
                clients,
                t.batch_size,
                self.objective.mu,
                n_steps,
                self.cfg.seed,
                r,
                labelled=bool(self.store.sizes.sum() > 0),
            )
            n = self.store.sizes[clients] + self.store.sizes_u[clients]
            group = self._semi_group(clients, idx, r)
        else:
            dp = self.sample_dp.group(clients, r) if self.sample_dp is not None else None
            batches = self.store.batches(
                clients, t.batch_size, n_steps, self.cfg.seed, r, poisson=dp is not None
            )
            n = self.store.sizes[clients]
        sizes = torch.as_tensor(n, device=self.device)
        out, new_state = local_train(
            self.network,
            self.algorithm,
            ctx,
            batches,
            cstate,
            sizes,
            gen,
            out=work,
            semi=group,
            dp=dp,
        )
        for k, v in new_state.items():
            self.state.client_state[k][idx] = v
        return out

    def _semi_group(self, clients: list[int], idx: torch.Tensor, r: int) -> SemiGroup:
        """The objective's per-group inputs: per-client augmentation generators, class priors
        and (FedMatch) helper models chosen by the server."""
        gens = round_generators(self.device, self.cfg.seed, r, AUGMENT_STREAM, clients)
        group = SemiGroup(self.objective, self.objective.round_weight(r), gens, self.prior[idx])
        if self.objective.uses_helpers:
            st = self.state.semi_state
            ids, valid = select_helpers(
                st["last_delta"], st["has_history"], idx, self.objective.helpers
            )
            k, n_c = ids.shape
            group.helpers = st["last_model"][ids.reshape(-1)].view(k, n_c, -1)
            group.helper_valid = valid
        return group

    def _remember_models(
        self, clients: list[int], global_params: torch.Tensor, delta: torch.Tensor
    ) -> None:
        """FedMatch: keep each trained client's model and delta for the server's helper choice."""
        st = self.state.semi_state
        idx = torch.as_tensor(clients, device=self.device)
        st["last_delta"][idx] = delta
        st["last_model"][idx] = global_params + delta
        st["has_history"][idx] = True

    def run_round(self) -> RoundRecord:
        r = self.state.round
        t0 = time.perf_counter()
        t = self.cfg.training
        sampled = sample_clients(self.store.n_clients, t.client_fraction, self.cfg.seed, r)
        has_data = self.store.sizes[sampled] > 0
        if self.objective.active(r):
            has_data |= self.store.sizes_u[sampled] > 0
        if not has_data.all():  # nothing to learn from this round: sit it out
            sampled = sampled[has_data]
        lr = client_lr(t, r)
        ctx = RoundContext(
            round=r,
            global_params=self.state.params,
            broadcast=self.algorithm.broadcast(self.state.server_state),
            lr=lr,
            momentum=t.client_momentum,
            weight_decay=t.weight_decay,
        )
        if self.privacy is not None and len(sampled):
            self.privacy.check_next_round(r)
        if self.sample_dp is not None:
            self.sample_dp.check_next_round(r, sampled)
        train_loss = self._clients_round(sampled, ctx, r) if len(sampled) else float("nan")
        if self.privacy is not None and len(sampled):
            self.privacy.account()
        if self.sample_dp is not None:
            self.sample_dp.account(sampled)
        if self.server_set is not None:
            params, server_loss = server_finetune(
                self.network,
                self.state.params,
                *self.server_set,
                ctx,
                batch_size=t.batch_size,
                epochs=self.cfg.semi.server_epochs,
                seed=self.cfg.seed,
            )
            if not len(sampled):
                train_loss = server_loss
            if not (np.isfinite(server_loss) and bool(torch.isfinite(params).all())):
                raise self._diverged(r)
            self.state.params = params
        self.state.round = r + 1
        record = RoundRecord(r + 1, sampled.tolist(), lr, train_loss, time.perf_counter() - t0)
        record.excluded, record.secagg, record.skipped = (
            self._notes.pop(k, None) for k in ("excluded", "secagg", "skipped")
        )
        dp_run = self.privacy or self.sample_dp
        if dp_run is not None:
            record.epsilon = dp_run.epsilon()
        every = self.cfg.evaluation.every
        if (r + 1) % every == 0 or r + 1 == t.rounds:
            record.metrics = self.evaluator.global_metrics(self.network, self.state.params)
            if record.metrics is None:
                raise self._diverged(r)
            if dp_run is not None:
                record.metrics["epsilon"] = float(record.epsilon or 0.0)
                record.metrics["delta"] = self.cfg.privacy.delta
                # with adaptive clipping: the clip this round's updates were cut to
                if self.privacy is not None and self.cfg.privacy.adaptive_clip:
                    record.metrics["clip"] = float(self.privacy.round_clip)
            if self.cfg.evaluation.per_client:
                record.client_metrics = self.evaluator.client_metrics(
                    self.network, self.state.params
                )
        return record

    def _clients_round(self, sampled: np.ndarray, ctx: RoundContext, r: int) -> float:
        """Train the sampled clients, validate their updates, apply the server update (unless
        too few valid updates or secure-aggregation survivors remain); the clients' mean loss.
        """
        t = self.cfg.training
        size = group_size(self.cfg, self.network, len(sampled), self.device)
        shape = (len(sampled), self.network.num_params)
        if self._work.shape != shape:
            self._work = torch.empty(shape, device=self.device)
        outputs = [
            self._train_group(sampled[i : i + size].tolist(), ctx, r, self._work[i : i + size])
            for i in range(0, len(sampled), size)
        ]
        out = outputs[0] if len(outputs) == 1 else ClientOutput.stack(outputs, self._work)
        self.algorithm.aggregator.excluded = 0
        if not self.algorithm.pooled:  # the centralised baseline has no participants
            self.attack.apply_updates(out.delta, sampled, r)
            # under secure aggregation the checks run on the clients: malicious ones skip them
            skip = np.isin(sampled, self.malicious) if self.secure is not None else None
            check = check_updates(
                out.delta, sampled, self.cfg.aggregation.max_update_norm, unchecked=skip
            )
            if not check.all_pass:
                if check.non_finite == len(sampled):  # every client blew up: not an attack
                    raise self._diverged(r)
                self._notes["excluded"] = check.excluded
                need = self._fewest_updates(len(check.keep), len(sampled) - len(check.keep))
                if len(check.keep) < need:
                    self._notes["skipped"] = (
                        f"only {len(check.keep)} of {len(sampled)} updates passed validation; "
                        f"aggregation '{self.cfg.aggregation.kind}' needs {need}"
                    )
                    return float(out.train_loss.nanmean())
                self.algorithm.aggregator.excluded = len(sampled) - len(check.keep)
                out, sampled = select_rows(out, check.keep), sampled[check.keep]
        weights = out.num_samples if t.weighting == "samples" else torch.ones_like(out.num_samples)
        train_loss = float((weights * out.train_loss).sum() / weights.sum())
        if self.root_set is not None:  # FLTrust: the server's own update on its root set
            root_params, _ = server_finetune(
                self.network,
                self.state.params,
                *self.root_set,
                ctx,
                batch_size=t.batch_size,
                epochs=t.local_epochs,
                seed=self.cfg.seed,
            )
            self.algorithm.aggregator.root_update = root_params - self.state.params
        if self.secure is not None:
            self.secure.clients, self.secure.last = sampled, None
            malformed = self.attack.active and self.cfg.attack.kind == "malformed"
            self.secure.tampering = set(self.malicious) if malformed else set()
        try:
            new_params, new_server = self.algorithm.server_update(
                self.state.params, self.state.server_state, out, weights, self.store.n_clients
            )
        except RoundSkipped as skip:  # the global model and server state stay as they were
            self._notes["skipped"] = skip.reason
            return train_loss
        finally:
            if self.secure is not None:
                self._notes["secagg"] = self.secure.last
        if not (np.isfinite(train_loss) and bool(torch.isfinite(new_params).all())):
            raise self._diverged(r)
        if self.objective.uses_helpers:
            self._remember_models(sampled.tolist(), self.state.params, out.delta)
        # the next round overwrites the deltas: keep nothing the server holds on to inside them
        if shares_memory(new_params, self._work):
            new_params = new_params.clone()
        self.state.params = new_params
        self.state.server_state = unaliased(new_server, self._work)
        return train_loss

    def _fewest_updates(self, n: int, excluded: int) -> int:
        """Valid updates the aggregation rule needs in a round where n remain after
        ``excluded`` faulty ones were dropped (1 for the mean); the dropped count against f."""
        agg = self.cfg.aggregation
        known = len(self.malicious) if self.attack.active else None
        return required_clients(agg, remaining_byzantine(n, agg.byzantine, known, excluded), n)

    def _diverged(self, r: int) -> TrainingDivergedError:
        t = self.cfg.training
        fix = (
            f"Lower training.client_lr (now {t.client_lr}) or algorithm.server_lr "
            f"(now {self.algorithm.server_lr}), or check the data for extreme values."
        )
        if self.privacy is not None:  # the usual cause then: noise far larger than the signal
            fix = (
                f"The DP noise (multiplier {self.privacy.noise_multiplier:.3g}, clip "
                f"{self.cfg.privacy.clip}) is large for the clients averaged per round: sample "
                "more clients per round, allow a larger epsilon, or lower algorithm.server_lr "
                f"(now {self.algorithm.server_lr})."
            )
        return TrainingDivergedError(
            f"Training diverged in round {r + 1}: the loss or the model's outputs became NaN/inf.",
            fix,
        )

    def run(self, on_round: Callable[[RoundRecord], None] | None = None) -> list[RoundRecord]:
        history = []
        while self.state.round < self.cfg.training.rounds:
            rec = self.run_round()
            history.append(rec)
            if on_round:
                on_round(rec)
        return history
