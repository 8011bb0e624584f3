"""A simulated run inside the server: the simulation runtime, recorded like a network run.

``CreateRun`` with ``simulated_participants = n`` trains the run's configuration on ``n``
simulated clients (``partition.clients = n``), in this process. Each round runs
``Simulation.run_round`` in a worker thread, so the server keeps answering; between rounds the
run honours pause and stop. After every round the engine writes what a network round writes:
the ``round_started`` / ``round_finished`` events, a :class:`RoundRow` (clients named
``client-<i>``), a checkpoint that is a regular model version (plus the client state, so the run
can continue), and its :class:`ModelRecord`, all in one transaction. After a server restart the
run continues from its last checkpoint: the federation is rebuilt from the configuration
(deterministic) and the model, server, client and privacy state come from the checkpoint; as
every random choice of a round derives from the seed and the round number, the continued run
ends with the model an uninterrupted one ends with.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from fedmetamal.config import RunConfig
from fedmetamal.errors import FedMetaMalError
from fedmetamal.fl.histogram_metrics import score_histogram
from fedmetamal.fl.schedule import sample_clients
from fedmetamal.service.evaluation_data import GLOBAL_TEST_SET, eval_metadata, eval_tensors
from fedmetamal.service.network_runs import parse_run_config
from fedmetamal.service.records import ModelRecord, RoundRow, RunRecord
from fedmetamal.service.run_control import RunControl
from fedmetamal.service.run_heterogeneity import REPORT_FILE, stored_report
from fedmetamal.service.run_state import RunState, save_round

if TYPE_CHECKING:
    from fedmetamal.data.preprocess import Preprocessor
    from fedmetamal.service.server_core import ServerCore
    from fedmetamal.sim.runtime import RoundRecord, Simulation


CLIENT_PREFIX = "client."
SEMI_PREFIX = "semi."


def check_simulated_run(cfg: RunConfig) -> None:
    """Refuse, when the run is created, settings the simulation would refuse before its first
    round and that do not depend on the data (the rest fail the run with the same message)."""
    from fedmetamal.fl.aggregate import check_aggregation
    from fedmetamal.fl.registry import algorithm_class
    from fedmetamal.sim.attacks import malicious_clients
    from fedmetamal.sim.sample_privacy import check_sample_dp, sample_dp_enabled
    from fedmetamal.sim.secure_round import check_secagg_config, secagg_enabled

    n = cfg.partition.clients
    per_round = min(n, max(1, round(cfg.training.client_fraction * n)))
    known = len(malicious_clients(n, cfg.attack, cfg.seed)) if cfg.attack.kind != "none" else None
    check_aggregation(cfg.aggregation, per_round, byzantine=known)
    if cfg.privacy.mode == "participant":
        from fedmetamal.privacy import check_privacy_compatible

        check_privacy_compatible(algorithm_class(cfg.algorithm.name), cfg.aggregation)
    if sample_dp_enabled(cfg):
        check_sample_dp(cfg)
    if secagg_enabled(cfg):
        check_secagg_config(cfg, per_round)


def client_name(i: int) -> str:
    """How a simulated client appears where a network run names its participants."""
    return f"client-{i}"


@dataclass
class _Built:
    """What the run's set-up built (in a worker thread)."""

    sim: Simulation
    preprocessor: Preprocessor
    feature_names: list[str]
    schema: dict[str, Any] | None
    dataset: str
    #: The clients' local test splits (preprocessed), for the validation threshold.
    local_tests: list[tuple[torch.Tensor, np.ndarray]]
    heterogeneity: dict[str, Any] | None


@dataclass
class _Trained:
    """One round's results, computed and checkpointed in a worker thread."""

    record: RoundRecord
    metrics: dict[str, float]
    rel_path: str
    sha256: str


class SimulatedRunEngine(RunControl):
    """One simulated run: the interface of :class:`~fedmetamal.service.run_engine.RunEngine`
    (``run``, ``pause``, ``resume``, ``stop``) over the simulation runtime."""

    def __init__(self, core: ServerCore, run: RunRecord) -> None:
        self.core = core
        self.run_id = run.run_id
        self.cfg: RunConfig = parse_run_config(run.config_json)
        super().__init__()
        self.built: _Built | None = None

    # -- the run ---------------------------------------------------------------------------
    async def _prepare(self) -> None:
        core = self.core
        run = core.store.get_run(self.run_id)
        core.bus.publish(
            "log",
            f"loading data and building {self.cfg.partition.clients} simulated clients",
            run_id=self.run_id,
        )
        self.built = await asyncio.to_thread(self._build, run)
        if self.built.heterogeneity is not None:
            self._announce_heterogeneity(self.built.heterogeneity)
        if run.round > 0:
            core.bus.publish(
                "log", f"resumed from round {run.round} ({run.checkpoint_path})", run_id=self.run_id
            )

    def _rounds_done(self) -> int:
        assert self.built is not None, "the run is not set up yet"
        return self.built.sim.state.round

    # -- set-up (worker thread) ------------------------------------------------------------
    def _build(self, run: RunRecord) -> _Built:
        """Load and partition the data, measure it, preprocess it and build the simulation
        exactly as ``fedmetamal.api.simulate`` does; restore the last round after a restart."""
        from fedmetamal.api import _feature_schema, build_federation, load_data
        from fedmetamal.data.heterogeneity import measure_federation
        from fedmetamal.data.preprocess import preprocess_federation
        from fedmetamal.data.semi import reveal_labels
        from fedmetamal.sim.runtime import Simulation

        cfg = self.cfg
        torch.manual_seed(cfg.seed)
        ds = load_data(cfg)
        fed = build_federation(cfg, ds)
        heterogeneity = None
        if not stored_report(self.core.data_dir, self.run_id):
            heterogeneity = measure_federation(reveal_labels(fed)).to_dict()
            heterogeneity["participants"] = [client_name(c.client_id) for c in fed.clients]
            heterogeneity["missing"] = []
            path = self.core.data_dir / "runs" / self.run_id / REPORT_FILE
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(heterogeneity))
            tmp.replace(path)
        fed, pre = preprocess_federation(fed, cfg.preprocess)
        sim = Simulation(cfg, fed)
        local_tests = [
            (torch.from_numpy(np.ascontiguousarray(c.test.X)).to(sim.device), np.asarray(c.test.y))
            for c in fed.clients
            if c.test.n_samples
        ]
        built = _Built(
            sim=sim,
            preprocessor=pre,
            feature_names=list(fed.feature_names),
            schema=_feature_schema(fed),
            dataset=str(ds.name),
            local_tests=local_tests,
            heterogeneity=heterogeneity,
        )
        if run.round > 0:
            if not run.checkpoint_path:
                raise FedMetaMalError(
                    f"Run '{self.run_id}' completed {run.round} round(s) but has no checkpoint.",
                    "Restore the server's data directory and database from the same backup.",
                )
            restore_simulation(sim, self.core.data_dir / run.checkpoint_path, run.round)
        return built

    def _announce_heterogeneity(self, report: dict[str, Any]) -> None:
        fed = {
            k: float(v)
            for k, v in report["federation"].items()
            if isinstance(v, int | float) and math.isfinite(v)
        }
        self.core.bus.publish(
            "heterogeneity",
            f"non-IID index {fed.get('index', float('nan')):.3f} over "
            f"{len(report['participants'])} simulated client(s)",
            run_id=self.run_id,
            metrics=fed,
        )

    # -- one round -------------------------------------------------------------------------
    async def _round(self, r: int) -> None:
        core, cfg = self.core, self.cfg
        assert self.built is not None
        sim = self.built.sim
        started = time.time()
        n_sampled = len(
            sample_clients(sim.store.n_clients, cfg.training.client_fraction, cfg.seed, r)
        )
        core.bus.publish(
            "round_started",
            f"round {r + 1}/{cfg.training.rounds}: {n_sampled} simulated client(s) sampled",
            run_id=self.run_id,
            round=r + 1,
        )
        done = await asyncio.to_thread(self._train_round)
        rec, metrics = done.record, done.metrics
        clean = {k: v for k, v in metrics.items() if v == v}
        rejected = {client_name(c): why for c, why in (rec.excluded or {}).items()}
        sampled = [client_name(c) for c in rec.clients]
        client_metrics: dict[str, dict[str, float]] = {}
        for row in rec.client_metrics or []:
            client_metrics[client_name(int(row["client"]))] = {
                f"test_{k}": float(v)
                for k, v in row.items()
                if k != "client" and isinstance(v, int | float)
            }
        model_id = f"{self.run_id}-r{r + 1:05d}"
        row = RoundRow(
            run_id=self.run_id,
            round=r + 1,
            started_at=started,
            finished_at=time.time(),
            sampled=sampled,
            reported=[c for c in sampled if c not in rejected],
            rejected=rejected,
            metrics=metrics,
            attempts=1,
            model_id=model_id,
            skipped=rec.skipped,
            client_metrics=client_metrics,
        )
        model = ModelRecord(
            model_id=model_id,
            run_id=self.run_id,
            round=r + 1,
            created_at=time.time(),
            path=done.rel_path,
            sha256=done.sha256,
            num_params=sim.network.num_params,
            feature_schema=(self.built.schema or {}).get("name"),
            metrics=clean,
        )
        await asyncio.to_thread(
            core.store.complete_round,
            row,
            model,
            {"round": r + 1, "checkpoint_path": done.rel_path, "latest_metrics": clean},
        )
        for cid, why in rejected.items():
            core.bus.publish(
                "update_rejected",
                f"{cid}: {why}",
                run_id=self.run_id,
                round=r + 1,
                participant_id=cid,
                level="warning",
            )
        if rec.skipped:
            core.bus.publish(
                "log",
                f"round {r + 1}: model unchanged ({rec.skipped})",
                run_id=self.run_id,
                round=r + 1,
                level="warning",
            )
        core.bus.publish(
            "round_finished",
            f"round {r + 1}/{cfg.training.rounds} finished: {len(row.reported)} update(s)"
            + "".join(
                f", {k} {v:.4f}" for k, v in clean.items() if k in ("roc_auc", "accuracy", "loss")
            ),
            run_id=self.run_id,
            round=r + 1,
            metrics=clean,
        )

    def _train_round(self) -> _Trained:
        """Train one round, choose the threshold, histogram the test scores, checkpoint."""
        from fedmetamal.sim.evaluate import predict

        assert self.built is not None
        b, cfg = self.built, self.cfg
        sim = b.sim
        rec = sim.run_round()
        metrics: dict[str, float] = {"train_loss": float(rec.train_loss)}
        if rec.epsilon is not None:
            metrics |= {"epsilon": float(rec.epsilon), "delta": cfg.privacy.delta}
        metrics |= {k: float(v) for k, v in (rec.metrics or {}).items()}
        params = sim.state.params
        meta: dict[str, Any] = {
            "mode": "simulated",
            "algorithm": cfg.algorithm.name,
            "dataset": b.dataset,
            "metrics": {k: v for k, v in metrics.items() if v == v},
            "threshold": self._threshold(params),
            "feature_schema": b.schema,
        }
        dp_run = sim.privacy or sim.sample_dp
        if dp_run is not None:  # the accountant's state: restored after a restart
            meta["privacy"] = dp_run.metadata()
        extra = {f"{CLIENT_PREFIX}{k}": v for k, v in sim.state.client_state.items()}
        extra |= {f"{SEMI_PREFIX}{k}": v for k, v in sim.state.semi_state.items()}
        if rec.metrics is not None:  # an evaluated round: keep its test scores' histograms
            scores = predict(sim.network, params, sim.evaluator.X)
            y = np.asarray(sim.evaluator.y)
            hb, hm = score_histogram(scores[y == 0]), score_histogram(scores[y == 1])
            extra |= eval_tensors(hb, hm)
            meta["evaluation"] = eval_metadata(hb, hm, GLOBAL_TEST_SET)
        state = RunState(
            sim.network,
            params,
            sim.state.server_state,
            b.preprocessor,
            b.feature_names,
            (b.schema or {}).get("name"),
            sim.state.round,
        )
        rel = f"runs/{self.run_id}/round-{sim.state.round:05d}.safetensors"
        sha, _ = save_round(self.core.data_dir / rel, state, self.run_id, meta, extra)
        return _Trained(rec, metrics, rel, sha)

    def _threshold(self, params: torch.Tensor) -> dict[str, Any]:
        """The decision threshold on the clients' pooled local test splits, as
        ``fedmetamal.api`` chooses it for a simulation's model."""
        from fedmetamal.detect.threshold import choose_threshold
        from fedmetamal.sim.evaluate import predict

        assert self.built is not None
        parts = self.built.local_tests
        if not parts:
            return choose_threshold(np.zeros(0), np.zeros(0), source="none: no client test splits")
        network = self.built.sim.network
        scores = np.concatenate([predict(network, params, X) for X, _ in parts])
        y = np.concatenate([yc for _, yc in parts])
        return choose_threshold(
            scores[y == 0], scores[y == 1], source="pooled client validation (local test splits)"
        )


def restore_simulation(sim: Simulation, path: Any, expected_round: int) -> None:
    """Put a freshly built simulation in the state a round's checkpoint holds: the model,
    the server, client and semi-supervised state, the privacy accountant, the round."""
    from fedmetamal.service.run_state import load_round_checkpoint

    ckpt = load_round_checkpoint(path, expected_round)
    meta = ckpt.metadata
    st, extra = sim.state, ckpt.extra_tensors

    def like(prefix: str, fresh: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        missing = [k for k in fresh if f"{prefix}{k}" not in extra]
        if missing:
            raise FedMetaMalError(
                f"Checkpoint '{path}' lacks the simulation state {', '.join(missing)}; the run "
                "cannot continue from it.",
                "Restore the run's checkpoints, or start a new run.",
            )
        return {
            k: extra[f"{prefix}{k}"].to(device=v.device, dtype=v.dtype).clone()
            for k, v in fresh.items()
        }

    st.params = ckpt.params.to(device=st.params.device, dtype=st.params.dtype).clone()
    st.server_state = like("server.", st.server_state)
    st.client_state = like(CLIENT_PREFIX, st.client_state)
    st.semi_state = like(SEMI_PREFIX, st.semi_state)
    st.round = expected_round
    saved = meta.get("privacy") or {}
    if sim.privacy is not None:
        from fedmetamal.privacy import PrivacyAccountant

        sim.privacy.accountant = PrivacyAccountant.from_history(
            saved.get("history", []), sim.cfg.privacy.accountant
        )
        if "adaptive_clip" in saved:
            sim.privacy.aggregator.clip = float(saved["adaptive_clip"]["clip"])
    if sim.sample_dp is not None:
        taken = [int(p.get("rounds", 0)) for p in saved.get("participants", [])]
        if len(taken) != len(sim.sample_dp.rounds_taken):
            raise FedMetaMalError(
                f"Checkpoint '{path}' has no DP-SGD accounting for every client.",
                "Restore the run's checkpoints, or start a new run.",
            )
        sim.sample_dp.rounds_taken = np.asarray(taken, dtype=np.int64)
