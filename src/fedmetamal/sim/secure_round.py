"""Secure aggregation inside the simulation runtime: the aggregator that replaces the mean.

Pipeline of a round (``secagg.enabled``): client update -> validate (``sim/update_checks``) ->
clip (participant DP) -> noise (DP with ``noise_placement: distributed``) -> mask -> aggregate
-> server update. The server only ever holds the decoded *sum* of the surviving clients' rows:

* without DP each client encodes [w_i * delta_i / w_max, range * w_i / w_max], where w_max is
  a public bound (the largest client weight in the federation). The sum of the last coordinate
  is range * (sum of the survivors' weights) / w_max, so the server recovers the *weighted*
  mean sum(w_i delta_i) / sum(w_i) exactly as the plain mean would compute it, up to the
  quantisation error. Coordinates are clipped to [-range, range] first (``secagg.range``).
* with participant DP the weights are uniform (see ``privacy/dp.py``): each client encodes its
  clipped update (plus its noise share when the noise is distributed) and a constant ``range``;
  the server divides by the number of survivors and, with central noise, adds the noise to the
  decoded sum itself.

Clients that drop out (``secagg.dropout``) or whose masked vectors are malformed are left out
of the sum; the protocol still completes while at least ``threshold`` remain, else the round is
skipped (:class:`RoundSkipped`): the global model stays as it was and the record says why.
All randomness (who drops, the protocol's keys and masks, the DP noise) comes from the run seed
on streams of its own, so a seed reproduces a run; that also makes the simulated secrecy void,
which is the price of reproducible experiments.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from fedmetamal.config import RunConfig, SecAggConfig
from fedmetamal.errors import ConfigError
from fedmetamal.fl.aggregate import Aggregator
from fedmetamal.fl.schedule import round_seed
from fedmetamal.privacy.dp import DPAggregator, clip_rows, distributed_noise, sum_only_problem

if TYPE_CHECKING:
    from fedmetamal.sim.runtime import Simulation

logger = logging.getLogger(__name__)

#: Seed streams of the protocol's key / mask randomness and of the simulated dropouts.
SECAGG_STREAM, SECAGG_DROPOUT_STREAM = 0x5EC0, 0x5EC1
#: Default ``secagg.range`` without DP. Measured on pe-headers (100 clients, default MLP,
#: client_lr 0.1, 5 local steps or 2 epochs; benchmarks/bench_secagg.py --measure-range):
#: the largest |w_i delta_i / w_max| coordinate was 0.20 in the first round and fell below
#: 0.08 by round 5 (99.99th percentile 0.03-0.045), so 0.5 leaves 2.5x headroom while a 16-bit
#: step stays 1.5e-5 (about 2 % of the mean coordinate, 6e-4, per client, averaging out).
DEFAULT_RANGE = 0.5
#: With distributed DP noise the encoded range is clip + this many per-client noise std devs
#: (z * clip / sqrt(m)), so clipping the noisy coordinates almost never changes the noise.
NOISE_RANGE_SIGMAS = 6.0
STAGES = ("advertise", "share_keys", "masked_input", "unmasking")


class RoundSkipped(Exception):
    """The round's aggregate cannot be formed; the runtime keeps the global model unchanged."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def secagg_enabled(cfg: RunConfig) -> bool:
    return cfg.secagg.enabled


def default_threshold(cohort: int, neighbours: int | None) -> int:
    """A majority of the cohort, or of each closed neighbourhood (a client and its
    ``neighbours``, SecAgg+) when that is smaller: Shamir shares live within it."""
    size = cohort if neighbours is None else min(neighbours + 1, cohort)
    return size // 2 + 1


def effective_neighbours(cohort: int, neighbours: int | None) -> int | None:
    """SecAgg+'s neighbourhood size for a cohort, None (complete graph) when it covers all."""
    if neighbours is None or neighbours >= cohort - 1:
        return None
    return neighbours


def round_threshold(cfg: SecAggConfig, cohort: int) -> int:
    k = effective_neighbours(cohort, cfg.neighbours)
    return cfg.threshold if cfg.threshold is not None else default_threshold(cohort, k)


def _fix_config(msg: str) -> str:
    return msg[0].upper() + msg[1:] + ("" if msg.endswith(".") else ".")


def check_secagg_config(cfg: RunConfig, per_round: int, uses_helpers: bool = False) -> None:
    """ConfigError before training for settings secure aggregation cannot run."""
    from fedmetamal.fl.registry import algorithm_class
    from fedmetamal.privacy.secagg import check_secagg_params

    s = cfg.secagg
    off = "or set secagg.enabled: false."
    kind = cfg.aggregation.kind
    if kind != "mean":
        raise ConfigError(
            f"secagg.enabled shows the server only the sum of the updates; aggregation.kind "
            f"'{kind}' needs every individual update.",
            f"Use aggregation.kind: mean (with aggregation.max_update_norm to exclude absurd "
            f"updates, or privacy clipping to bound them), {off}",
        )
    name = cfg.algorithm.name
    problem = sum_only_problem(algorithm_class(name))
    if problem == "pooled":
        raise ConfigError(
            f"Algorithm '{name}' pools all data centrally; there is nothing to aggregate securely.",
            f"Choose a federated algorithm {off}",
        )
    if problem is not None:
        what = (
            "sends extra client state to the server (e.g. SCAFFOLD's control variates)"
            if problem == "extra-state"
            else "rescales client updates by client-dependent factors (e.g. FedNova's steps)"
        )
        raise ConfigError(
            f"Algorithm '{name}' {what}, which secure aggregation's masked sum cannot carry.",
            f"Use fedavg, fedprox, fedavgm or an adaptive server optimiser, {off}",
        )
    if uses_helpers:
        raise ConfigError(
            "semi.method fedmatch keeps every client's own model and delta at the server, "
            "which secure aggregation hides.",
            f"Choose another semi.method {off}",
        )
    threshold = round_threshold(s, per_round)
    try:
        check_secagg_params(
            per_round, threshold, effective_neighbours(per_round, s.neighbours), s.bits
        )
    except ValueError as err:
        raise ConfigError(
            f"secagg with {per_round} clients per round: {err}",
            "Lower secagg.threshold or secagg.bits, raise secagg.neighbours, or sample more "
            "clients per round (training.client_fraction, partition.clients).",
        ) from err
    remaining = per_round - round(s.dropout * per_round)
    if remaining < threshold:
        raise ConfigError(
            f"secagg.dropout {s.dropout:g} leaves {remaining} of {per_round} clients per round, "
            f"below the threshold {threshold}: every round would abort.",
            "Lower secagg.dropout or secagg.threshold, or sample more clients per round.",
        )


def dropout_plan(cfg: SecAggConfig, n: int, seed: int, round_index: int) -> dict[str, set[int]]:
    """Which of the round's n rows go silent, and at which stage (seeded per round)."""
    n_drop = round(cfg.dropout * n)
    if n_drop == 0:
        return {}
    rng = np.random.default_rng(round_seed(seed, round_index, SECAGG_DROPOUT_STREAM))
    rows = rng.choice(n, size=n_drop, replace=False)
    plan: dict[str, set[int]] = {}
    for row in sorted(int(v) for v in rows):
        stage = cfg.dropout_stage
        if stage == "random":
            stage = STAGES[int(rng.integers(len(STAGES)))]
        plan.setdefault(stage, set()).add(row)
    return plan


def malformed_upload(y: np.ndarray) -> np.ndarray:
    """What a client with a NaN / inf update sends: its masked vector as floats, with NaNs."""
    out = y.astype(np.float64)
    out[:: max(1, len(out) // 100)] = np.nan
    return out


class SecureAggregator(Aggregator):
    """Replaces the algorithm's mean (or DP) aggregator with a secure sum of the rows.

    ``dp``: the participant-DP aggregator whose clip, noise multiplier, noise generator and
    placement this one follows (None: no DP). ``clients``: ids of the rows of the next call
    (set by the runtime, for the record). ``last``: what the last call did (survivors,
    dropped and excluded clients, bytes, seconds), for :class:`RoundRecord`.
    """

    def __init__(
        self,
        cfg: SecAggConfig,
        w_max: float,
        seed: int,
        round_index: Callable[[], int],
        dp: DPAggregator | None = None,
    ) -> None:
        super().__init__()
        self.secagg = cfg
        self.w_max = float(w_max)
        self.seed = seed
        self.round_index = round_index
        self.dp = dp
        self.clients: np.ndarray | None = None
        #: Client ids that upload a malformed masked vector (the ``malformed`` attack).
        self.tampering: set[int] = set()
        self.last: dict[str, Any] | None = None

    @property
    def kind(self) -> str:
        return "secagg-dp-mean" if self.dp is not None else "secagg-mean"

    @property
    def is_mean(self) -> bool:
        return False

    def encoding_range(self, m: int) -> float:
        """Per-coordinate clip of the encoded rows this round (public: config, clip, z, m)."""
        if self.secagg.range is not None:
            return self.secagg.range
        dp = self.dp
        if dp is None:
            return DEFAULT_RANGE
        if dp.placement == "distributed" and dp.noise_multiplier > 0.0:
            return dp.clip * (1.0 + NOISE_RANGE_SIGMAS * dp.noise_multiplier / math.sqrt(m))
        return dp.clip

    def encode(
        self, deltas: torch.Tensor, weights: torch.Tensor, gen: torch.Generator | None
    ) -> tuple[torch.Tensor, float]:
        """The (m, P + 1) rows the clients mask, and the range they are clipped to."""
        m = deltas.shape[0]
        dp = self.dp
        rng = self.encoding_range(m)
        if dp is not None:
            x = clip_rows(deltas, dp.clip)
            if dp.placement == "distributed":
                x = distributed_noise(x, dp.clip, dp.noise_multiplier, gen)
            share = torch.ones(m, dtype=x.dtype, device=x.device)
        else:
            w = weights.to(deltas)
            if bool((w > self.w_max * (1 + 1e-6)).any()):
                raise ValueError(
                    f"client weight {float(w.max())} above the public bound {self.w_max}"
                )
            share = w / self.w_max
            x = deltas * share[:, None]
        return torch.cat([x, (rng * share)[:, None]], dim=1), rng

    def __call__(self, deltas: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        from fedmetamal.privacy.secagg import SecAggAborted, secure_sum

        t0 = time.perf_counter()
        r = self.round_index()
        m = deltas.shape[0]
        clients = self.clients if self.clients is not None else np.arange(m)
        dp = self.dp
        gen = dp.generator_factory() if dp is not None and dp.generator_factory else None
        rows, rng = self.encode(deltas, weights, gen)
        values = rows.detach().to("cpu", torch.float64).numpy()
        # rows that cannot be encoded (NaN / inf: only clients that skipped their own checks
        # send them) and malformed attackers upload a malformed masked vector instead
        bad = {i for i in range(m) if int(clients[i]) in self.tampering}
        bad |= set(np.flatnonzero(~np.isfinite(values).all(axis=1)).tolist())
        values[sorted(bad)] = 0.0
        clipped = int((np.abs(values[:, :-1]) > rng).sum())
        values = np.clip(values, -rng, rng)
        threshold = round_threshold(self.secagg, m)
        neighbours = effective_neighbours(m, self.secagg.neighbours)
        plan = dropout_plan(self.secagg, m, self.seed, r)
        rec: dict[str, Any] = {
            "cohort": m,
            "threshold": threshold,
            "neighbours": neighbours,
            "range": rng,
            "bits": self.secagg.bits,
            "clipped_coordinates": clipped,
            "dropped": sorted(int(clients[i]) for rows_ in plan.values() for i in rows_),
        }
        self.last = rec
        if clipped:
            logger.warning(
                "secagg round %d: %d coordinates clipped to secagg.range %.3g", r + 1, clipped, rng
            )
        if m < threshold:
            rec["aborted"] = (
                f"{m} clients reached secure aggregation, fewer than threshold {threshold}"
            )
            raise RoundSkipped(rec["aborted"])
        try:
            res = secure_sum(
                values,
                rng,
                threshold,
                dropouts=plan,
                bits=self.secagg.bits,
                seed=round_seed(self.seed, r, SECAGG_STREAM),
                neighbours=neighbours,
                tamper=dict.fromkeys(bad, malformed_upload),
            )
        except SecAggAborted as err:
            rec["aborted"] = f"secure aggregation aborted: {err}"
            rec["seconds"] = time.perf_counter() - t0
            logger.warning("secagg round %d skipped: %s", r + 1, err)
            raise RoundSkipped(rec["aborted"]) from err
        survivors = [int(clients[i]) for i in res.survivors]
        late = plan.get("unmasking", set()) & set(res.survivors)
        rec.update(
            survivors=len(survivors),
            dropped=sorted(int(clients[i]) for i in res.dropped),
            # silent only at unmasking: their masked input was already in, so in the sum
            silent_at_unmasking=sorted(int(clients[i]) for i in late),
            excluded={int(clients[i]): why for i, why in res.excluded.items()},
            bytes_up=int(sum(res.bytes_up.values())),
            bytes_down=int(sum(res.bytes_down.values())),
            seconds_client=float(res.seconds_client),
            seconds_server=float(res.seconds_server),
        )
        if rec["dropped"] or rec["excluded"]:
            logger.warning(
                "secagg round %d: %d of %d survived; dropped %s, excluded %s",
                r + 1,
                len(survivors),
                m,
                rec["dropped"],
                rec["excluded"],
            )
        total = torch.as_tensor(res.total, dtype=torch.float64)
        n_surv = len(res.survivors)
        if dp is not None:
            if dp.record_norms:  # adaptive clipping: see docs/privacy.md on what this reveals
                keep = torch.as_tensor(list(res.survivors), dtype=torch.long)
                dp.last_norms = deltas.detach().norm(dim=1).cpu()[keep]
            s = total[:-1]
            if dp.placement == "central" and dp.noise_multiplier > 0.0:
                noise = torch.randn(s.shape, generator=gen, dtype=torch.float32)
                s = s + (dp.noise_multiplier * dp.clip) * noise.to(s)
            update = s / n_surv
        else:
            weight_share = float(total[-1]) / rng
            if not weight_share > 0.0:
                rec["aborted"] = "the survivors' weights sum to zero"
                raise RoundSkipped(rec["aborted"])
            update = total[:-1] / weight_share
        rec["seconds"] = time.perf_counter() - t0
        return update.to(device=deltas.device, dtype=deltas.dtype)


def secure_aggregator(sim: Simulation) -> SecureAggregator:
    """Install secure aggregation on ``sim``'s algorithm (after DP, which it wraps)."""
    store = sim.store
    if sim.cfg.training.weighting == "samples":
        w_max = float(np.max(store.sizes + store.sizes_u)) if store.n_clients else 1.0
    else:
        w_max = 1.0
    dp = sim.privacy.aggregator if sim.privacy is not None else None
    agg = SecureAggregator(
        sim.cfg.secagg, max(w_max, 1.0), sim.cfg.seed, lambda: sim.state.round, dp
    )
    sim.algorithm.aggregator = agg
    return agg
