"""One network run, round after round: the server's half of the federation.

Each round samples participants exactly as the simulation samples clients (same seed, same
slots), posts them training tasks, waits for their updates until the round's deadline (or
until every sampled participant has answered or gone offline), and aggregates those that
reported with the algorithm's own ``server_update`` — the code the simulation runs. With fewer
valid updates than ``network.min_participants`` (or than the aggregation rule needs), the round
is retried. After aggregation the model is evaluated (on the server's test set if it has one,
and by the participants on their local test splits), checkpointed, and the round, its metrics
and the model version are stored in one transaction: a crash after that loses nothing, and a
crash before it repeats the round.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from fedmetamal.config import RunConfig
from fedmetamal.errors import FedMetaMalError, TrainingDivergedError
from fedmetamal.fl.aggregate import remaining_byzantine, required_clients
from fedmetamal.fl.base import Algorithm, ClientOutput
from fedmetamal.fl.histogram_metrics import (
    BINS,
    histogram_metrics,
    histogram_threshold,
    score_histogram,
)
from fedmetamal.fl.schedule import client_lr, sample_clients
from fedmetamal.service.evaluation_data import (
    LOCAL_SPLITS,
    SERVER_TEST_SET,
    eval_metadata,
    eval_tensors,
)
from fedmetamal.service.network_runs import (
    build_run_algorithm,
    parse_run_config,
    upload_shapes,
)
from fedmetamal.service.records import ModelRecord, RoundRow, RunRecord
from fedmetamal.service.run_control import RunControl
from fedmetamal.service.run_heterogeneity import measure_run, stored_report
from fedmetamal.service.run_state import (
    RunState,
    feature_sums_from_blob,
    fresh_state,
    restore_state,
    save_round,
)
from fedmetamal.service.tasks import TaskRefused, TaskResult, TaskSpec
from fedmetamal.sim.update_checks import check_updates, select_rows

if TYPE_CHECKING:
    from fedmetamal.service.secure_rounds import SecureRounds
    from fedmetamal.service.server_core import ServerCore


class RunFailed(FedMetaMalError):
    """The run cannot go on (participants missing, inconsistent data, divergence)."""


@dataclass
class Collected:
    results: list[tuple[int, TaskResult]] = field(default_factory=list)  # (slot, result)
    rejected: dict[str, str] = field(default_factory=dict)  # participant id -> reason
    #: Why the round could not be aggregated, when it is not simply too few updates.
    failure: str = ""


class RunEngine(RunControl):
    def __init__(self, core: ServerCore, run: RunRecord) -> None:
        self.core = core
        self.run_id = run.run_id
        self.cfg: RunConfig = parse_run_config(run.config_json)
        self.slots = list(run.participant_ids)
        super().__init__()
        self.state: RunState | None = None
        self.algorithm: Algorithm | None = None
        self.sizes: list[int] = []
        self.n_test: list[int] = []
        self.threshold: dict[str, Any] | None = None
        #: Secure aggregation's round driver (``secagg.enabled``), set up with the run.
        self.secure: SecureRounds | None = None
        #: Participant-level DP (``privacy.mode: participant``), set up with the run.
        self.privacy: Any = None
        #: The evaluated round's pooled score histograms (benign, malware) and what they were
        #: computed on, stored in its checkpoint for the model report; None between rounds.
        self.eval_hists: tuple[np.ndarray, np.ndarray, str] | None = None

    # -- the run ---------------------------------------------------------------------------
    def _rounds_done(self) -> int:
        assert self.state is not None, "the run is not set up yet"
        return self.state.round

    def _finally(self) -> None:
        """Tasks of this run still on the board go: no participant should pick them up."""
        board = self.core.board
        board.withdraw([t["task_id"] for t in board.open_tasks() if t["run_id"] == self.run_id])

    async def _prepare(self) -> None:
        """Wait for every participant's dataset summary, check they agree, and build round 0
        (or restore the last completed round after a restart)."""
        core, cfg = self.core, self.cfg
        run = core.store.get_run(self.run_id)
        deadline = time.monotonic() + cfg.network.start_timeout_s
        while True:
            recs = [core.registry.get(pid) for pid in self.slots]
            missing = [
                pid for pid, r in zip(self.slots, recs, strict=True) if r is None or not r.summary
            ]
            if not missing:
                break
            if time.monotonic() > deadline:
                raise RunFailed(
                    f"Participants {', '.join(missing)} never reported their dataset summary "
                    f"within network.start_timeout_s = {cfg.network.start_timeout_s:g} s.",
                    "Start them (fedmetamal join ...) or create the run without them.",
                )
            await asyncio.sleep(0.5)
        summaries = [r.summary or {} for r in recs if r is not None]
        widths = {int(s.get("n_features", 0)) for s in summaries}
        digests = {s.get("schema_digest", "") for s in summaries}
        if len(widths) != 1 or len(digests) != 1:
            detail = ", ".join(
                f"{pid}: {s.get('n_features')} columns ({s.get('feature_schema') or 'no schema'})"
                for pid, s in zip(self.slots, summaries, strict=True)
            )
            raise RunFailed(
                f"The participants' data do not have the same feature columns ({detail}).",
                "Every participant must extract its features with the same schema.",
            )
        self.sizes = [int(s.get("n_train", 0)) for s in summaries]
        self.n_test = [int(s.get("n_test", 0)) for s in summaries]
        self.algorithm = build_run_algorithm(cfg, len(self.slots))
        if run.round > 0 and run.checkpoint_path:
            path = core.data_dir / run.checkpoint_path
            self.state = await asyncio.to_thread(restore_state, path, run.round)
            core.bus.publish(
                "log",
                f"resumed from round {run.round} ({run.checkpoint_path})",
                run_id=self.run_id,
            )
        else:
            sums = []
            for pid, rec in zip(self.slots, recs, strict=True):
                assert rec is not None
                if rec.feature_sums is None:
                    raise RunFailed(f"Participant {pid} sent no feature sums with its summary.")
                sums.append(feature_sums_from_blob(rec.feature_sums, int(rec.summary["n_train"])))
            names = list(summaries[0].get("feature_names") or [])
            d = widths.pop()
            if len(names) != d:
                names = [f"f{i}" for i in range(d)]
            schema = summaries[0].get("feature_schema") or None
            self.state = await asyncio.to_thread(
                fresh_state, cfg, self.algorithm, sums, names, schema
            )
        if not stored_report(core.data_dir, self.run_id):
            await measure_run(self)
        self.expected = {
            k: ("float32", shape)
            for k, shape in upload_shapes(self.algorithm, self.state.network).items()
        }
        if cfg.secagg.enabled:
            from fedmetamal.service.secure_rounds import SecureRounds

            self.secure = SecureRounds(self)
        if cfg.privacy.mode == "participant":
            self.privacy = self._setup_privacy(run)
        if (
            self.core.test_data is not None
            and self.core.test_data.n_features != self.state.network.n_features
        ):
            raise RunFailed(
                f"The server's test data has {self.core.test_data.n_features} feature columns "
                f"but the participants' data {self.state.network.n_features}.",
                "Start the server with test data of the same schema, or without --test-data.",
            )

    def _setup_privacy(self, run: RunRecord) -> Any:
        """Participant-level DP (the simulation's ``RoundPrivacy``: clip, central noise,
        accounting), its accountant restored from the last checkpoint after a restart."""
        from fedmetamal.privacy import PrivacyAccountant
        from fedmetamal.sim.round_privacy import RoundPrivacy

        n = len(self.slots)
        per_round = min(n, max(1, round(self.cfg.training.client_fraction * n)))
        privacy = RoundPrivacy(self, per_round, n)  # type: ignore[arg-type]
        if run.round > 0 and run.checkpoint_path:
            from fedmetamal.models.checkpoint import load_checkpoint

            meta = load_checkpoint(self.core.data_dir / run.checkpoint_path).metadata
            saved = meta.get("privacy") or {}
            privacy.accountant = PrivacyAccountant.from_history(
                saved.get("history", []), self.cfg.privacy.accountant
            )
            if "adaptive_clip" in saved:
                privacy.aggregator.clip = float(saved["adaptive_clip"]["clip"])
        return privacy

    # -- one round -------------------------------------------------------------------------
    async def _round(self, r: int) -> None:
        core, cfg = self.core, self.cfg
        net = cfg.network
        for attempt in range(1, net.max_attempts + 1):
            if self._stop:
                return
            if self.privacy is not None:
                self.privacy.check_next_round(r)
            await self._await_participants(r)
            if self._stop:
                return
            started = time.time()
            sampled = [
                int(s)
                for s in sample_clients(len(self.slots), cfg.training.client_fraction, cfg.seed, r)
                if self.sizes[int(s)] > 0
            ]
            core.bus.publish(
                "round_started",
                f"round {r + 1}/{cfg.training.rounds}"
                + (f" (attempt {attempt})" if attempt > 1 else "")
                + f": {len(sampled)} participant(s) sampled"
                + (" (secure aggregation)" if self.secure is not None else ""),
                run_id=self.run_id,
                round=r + 1,
            )
            if self.secure is not None:
                collected, outcome = await self.secure.run(r, sampled)
            else:
                collected = await self.dispatch(
                    r, "train", sampled, self._task_tensors(r), self.expected
                )
                outcome = None
                if len(collected.results) >= net.min_participants and not self._stop:
                    outcome = await asyncio.to_thread(self._aggregate, r, collected)
            if self._stop:
                return
            if outcome is not None:
                new_params, new_server, train_loss, excluded = outcome
                collected.rejected |= excluded
                await self._finish_round(
                    r, started, attempt, sampled, collected, new_params, new_server, train_loss
                )
                return
            why = collected.failure or (
                f"{len(collected.results)} usable update(s) from {len(sampled)} sampled; "
                f"needs {net.min_participants}"
            )
            core.bus.publish(
                "round_retried",
                f"round {r + 1}: {why} — "
                + (
                    f"retrying in {net.retry_delay_s:g} s"
                    if attempt < net.max_attempts
                    else "giving up"
                ),
                run_id=self.run_id,
                round=r + 1,
                level="warning",
            )
            if attempt < net.max_attempts:
                await asyncio.sleep(net.retry_delay_s)
        raise RunFailed(
            f"Round {r + 1} got too few updates in {net.max_attempts} attempts (needs "
            f"network.min_participants = {net.min_participants}).",
            "Check that enough participants are online and approved, then start a new run.",
        )

    async def _await_participants(self, r: int) -> None:
        """Before an attempt, wait (up to the round's deadline) until enough of the round's
        participants are online: after a server restart they reconnect one by one, with
        backoff, and an attempt with nobody to post a task to would be wasted."""
        cfg = self.cfg
        sampled = sample_clients(len(self.slots), cfg.training.client_fraction, cfg.seed, r)
        pids = [self.slots[int(s)] for s in sampled if self.sizes[int(s)] > 0]
        need = min(cfg.network.min_participants, len(pids))
        deadline = time.monotonic() + cfg.network.round_timeout_s
        noted = False
        while not self._stop and time.monotonic() < deadline:
            if sum(self.core.registry.can_train(pid) for pid in pids) >= need:
                return
            if not noted:
                self.core.bus.publish(
                    "log",
                    f"round {r + 1}: waiting for at least {need} of its participants to be online",
                    run_id=self.run_id,
                    round=r + 1,
                )
                noted = True
            await asyncio.sleep(0.5)

    def _task_tensors(self, r: int) -> dict[str, np.ndarray]:
        assert self.state is not None and self.algorithm is not None
        st = self.state
        tensors = {"params": st.params.detach().cpu().numpy()}
        for k, v in self.algorithm.broadcast(st.server_state).items():
            tensors[f"broadcast.{k}"] = v.detach().cpu().numpy()
        for k, v in st.preprocessor.tensors().items():
            tensors[f"pre.{k}"] = v.numpy()
        return tensors

    async def dispatch(
        self,
        r: int,
        kind: str,
        slots: list[int],
        tensors: dict[str, np.ndarray],
        expected: dict[str, tuple[str, tuple[int, ...]]],
        secagg: Callable[[int], Any] | None = None,
    ) -> Collected:
        """Post one task of ``kind`` to each of ``slots`` that can take it and collect the
        results until all are in, the round's deadline passes, or the rest went offline."""
        core, cfg = self.core, self.cfg
        deadline = time.time() + cfg.network.round_timeout_s
        lr = client_lr(cfg.training, r) if kind != "evaluate" else 0.0
        config_json = cfg.model_dump_json()
        futures: dict[asyncio.Future[TaskResult], tuple[int, str]] = {}
        collected = Collected()
        for slot in slots:
            pid = self.slots[slot]
            if not core.registry.can_train(pid):
                rec = core.registry.get(pid)
                collected.rejected[pid] = (
                    "revoked"
                    if rec and rec.state == "revoked"
                    else "not approved"
                    if rec and rec.state != "approved"
                    else "offline"
                )
                continue
            spec = TaskSpec(
                run_id=self.run_id,
                round=r,
                kind=kind,
                participant_id=pid,
                slot=slot,
                n_slots=len(self.slots),
                config_json=config_json,
                deadline=deadline,
                lr=lr,
                tensors=tensors,
                expected=expected,
                secagg=secagg(slot) if secagg is not None else None,
            )
            futures[core.board.post(spec)] = (slot, pid)
        await self._collect(futures, deadline, collected)
        core.board.withdraw(
            [t["task_id"] for t in core.board.open_tasks() if t["run_id"] == self.run_id]
        )
        return collected

    async def _collect(
        self,
        futures: dict[asyncio.Future[TaskResult], tuple[int, str]],
        deadline: float,
        collected: Collected,
    ) -> None:
        """Wait for results until all are in, the deadline passes, or the rest went offline."""
        pending = set(futures)
        while pending and not self._stop:
            left = deadline - time.time()
            if left <= 0:
                for f in pending:
                    collected.rejected.setdefault(futures[f][1], "missed the round's deadline")
                break
            done, pending = await asyncio.wait(pending, timeout=min(left, 0.5))
            for f in done:
                slot, pid = futures[f]
                if f.cancelled():
                    collected.rejected[pid] = "task withdrawn"
                elif isinstance(f.exception(), TaskRefused):
                    collected.rejected[pid] = str(f.exception())
                elif f.exception() is not None:
                    collected.rejected[pid] = f"failed: {f.exception()!r}"
                else:
                    collected.results.append((slot, f.result()))
            now = time.time()
            for f in list(pending):
                pid = futures[f][1]
                if not self.core.registry.can_train(pid, now):
                    collected.rejected[pid] = "went offline during the round"
                    pending.discard(f)
        collected.results.sort(key=lambda sr: sr[0])

    def _aggregate(
        self, r: int, collected: Collected
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], float, dict[str, str]] | None:
        """Validate and aggregate (runs in a worker thread); None when too few updates pass."""
        assert self.state is not None and self.algorithm is not None
        st, cfg, algo = self.state, self.cfg, self.algorithm
        slots = np.array([s for s, _ in collected.results])
        res = [x for _, x in collected.results]
        extras = [k.removeprefix("extra.") for k in self.expected if k.startswith("extra.")]
        out = ClientOutput(
            torch.stack([torch.from_numpy(x.tensors["delta"]) for x in res]),
            torch.tensor([float(x.num_samples) for x in res]),
            torch.tensor([float(x.steps) for x in res]),
            torch.tensor([float(x.train_loss) for x in res]),
            {
                k: torch.stack([torch.from_numpy(x.tensors[f"extra.{k}"]) for x in res])
                for k in extras
            },
        )
        check = check_updates(out.delta, slots, cfg.aggregation.max_update_norm)
        excluded = {self.slots[int(c)]: why for c, why in check.excluded.items()}
        n_keep = len(check.keep)
        agg = cfg.aggregation
        need = max(
            cfg.network.min_participants,
            required_clients(
                agg, remaining_byzantine(n_keep, agg.byzantine, None, len(excluded)), n_keep
            ),
        )
        if n_keep < need:
            return None
        algo.aggregator.excluded = len(slots) - n_keep
        if not check.all_pass:
            out = select_rows(out, check.keep)
        weights = (
            out.num_samples
            if cfg.training.weighting == "samples"
            else torch.ones_like(out.num_samples)
        )
        train_loss = float((weights * out.train_loss).sum() / weights.sum())
        new_params, new_server = algo.server_update(
            st.params, st.server_state, out, weights, len(self.slots)
        )
        if not (math.isfinite(train_loss) and bool(torch.isfinite(new_params).all())):
            raise TrainingDivergedError(
                f"Training diverged in round {r + 1}: the global model became NaN/inf.",
                f"Lower training.client_lr (now {cfg.training.client_lr}) or algorithm.server_lr.",
            )
        return (
            new_params.clone(),
            {k: v.clone() for k, v in new_server.items()},
            train_loss,
            excluded,
        )

    async def _finish_round(
        self,
        r: int,
        started: float,
        attempt: int,
        sampled: list[int],
        collected: Collected,
        new_params: torch.Tensor,
        new_server: dict[str, torch.Tensor],
        train_loss: float,
    ) -> None:
        core, cfg = self.core, self.cfg
        assert self.state is not None
        st = self.state
        metrics: dict[str, float] = {"train_loss": train_loss}
        if self.privacy is not None:  # before the round advances: it seeds the clip update
            self.privacy.account()
        st.params, st.server_state, st.round = new_params, new_server, r + 1
        if self.privacy is not None:
            metrics |= {"epsilon": self.privacy.epsilon(), "delta": self.cfg.privacy.delta}
            if self.cfg.privacy.adaptive_clip:
                metrics["clip"] = float(self.privacy.round_clip)
        client_metrics: dict[str, dict[str, float]] = {}
        for slot, res in collected.results:
            client_metrics[self.slots[slot]] = {"train_loss": res.train_loss, **res.metrics}
        rounds = cfg.training.rounds
        self.eval_hists = None
        if (r + 1) % cfg.evaluation.every == 0 or r + 1 == rounds:
            metrics |= await self._evaluate(r, client_metrics)
        meta = {
            **({"privacy": self.privacy.metadata()} if self.privacy is not None else {}),
            "algorithm": cfg.algorithm.name,
            "metrics": {k: v for k, v in metrics.items() if v == v},
            "threshold": self.threshold,
        }
        extra = None
        if self.eval_hists is not None:
            extra = eval_tensors(*self.eval_hists[:2])
            meta["evaluation"] = eval_metadata(*self.eval_hists)
        rel = f"runs/{self.run_id}/round-{r + 1:05d}.safetensors"
        sha, _ = await asyncio.to_thread(
            save_round, core.data_dir / rel, st, self.run_id, meta, extra
        )
        model_id = f"{self.run_id}-r{r + 1:05d}"
        reported = [self.slots[s] for s, _ in collected.results]
        row = RoundRow(
            run_id=self.run_id,
            round=r + 1,
            started_at=started,
            finished_at=time.time(),
            sampled=[self.slots[s] for s in sampled],
            reported=[p for p in reported if p not in collected.rejected],
            rejected=collected.rejected,
            metrics=metrics,
            attempts=attempt,
            model_id=model_id,
            client_metrics=client_metrics,
        )
        model = ModelRecord(
            model_id=model_id,
            run_id=self.run_id,
            round=r + 1,
            created_at=time.time(),
            path=rel,
            sha256=sha,
            num_params=st.network.num_params,
            feature_schema=st.feature_schema,
            metrics={k: v for k, v in metrics.items() if v == v},
        )
        clean = {k: v for k, v in metrics.items() if v == v}
        await asyncio.to_thread(
            core.store.complete_round,
            row,
            model,
            {"round": r + 1, "checkpoint_path": rel, "latest_metrics": clean},
        )
        for pid, why in collected.rejected.items():
            core.bus.publish(
                "update_rejected",
                f"{pid}: {why}",
                run_id=self.run_id,
                round=r + 1,
                participant_id=pid,
                level="warning",
            )
        core.bus.publish(
            "round_finished",
            f"round {r + 1}/{rounds} finished: {len(row.reported)} update(s)"
            + "".join(
                f", {k} {v:.4f}" for k, v in clean.items() if k in ("roc_auc", "accuracy", "loss")
            ),
            run_id=self.run_id,
            round=r + 1,
            metrics=clean,
        )

    # -- evaluation ------------------------------------------------------------------------
    async def _evaluate(
        self, r: int, client_metrics: dict[str, dict[str, float]]
    ) -> dict[str, float]:
        """Central metrics on the server's test set (if any), and federated ones from the
        participants' local test splits (plain names without a server test set, else
        ``local_*``); each participant's own metrics go to ``client_metrics``."""
        assert self.state is not None
        out: dict[str, float] = {}
        if self.core.test_data is not None:
            out |= await asyncio.to_thread(self._central_metrics)
        hists = await self._federated_eval(r)
        if hists:
            b = sum(h[0] for h in hists.values())
            m = sum(h[1] for h in hists.values())
            loss = sum(h[2] for h in hists.values())
            if self.eval_hists is None:  # the server test set's, when it has one, come first
                self.eval_hists = (b, m, LOCAL_SPLITS)
            fed = histogram_metrics(b, m, loss)
            prefix = "local_" if self.core.test_data is not None else ""
            out |= {f"{prefix}{k}": v for k, v in fed.items()}
            for pid, (hb, hm, ls) in hists.items():
                client_metrics.setdefault(pid, {}).update(
                    {f"test_{k}": v for k, v in histogram_metrics(hb, hm, ls).items()}
                )
            from fedmetamal.detect.threshold import DEFAULT_THRESHOLD, TARGET_FPR

            value = histogram_threshold(b, TARGET_FPR)
            self.threshold = {
                "value": float(value if value is not None else DEFAULT_THRESHOLD),
                "target_fpr": TARGET_FPR,
                "source": "pooled participant validation histograms (local test splits)"
                if value is not None
                else "none: no benign files in the participants' test splits",
                "benign": int(b.sum()),
                "malware": int(m.sum()),
            }
        return out

    def _central_metrics(self) -> dict[str, float]:
        from fedmetamal.fl.metrics import detection_metrics
        from fedmetamal.sim.evaluate import predict

        assert self.state is not None and self.core.test_data is not None
        st, ds = self.state, self.core.test_data
        X = torch.from_numpy(st.preprocessor.apply(np.asarray(ds.X)))
        scores = predict(st.network, st.params, X)
        if not np.isfinite(scores).all():
            raise TrainingDivergedError(f"The global model outputs NaN after round {st.round}.")
        y = np.asarray(ds.y)
        self.eval_hists = (
            score_histogram(scores[y == 0]),
            score_histogram(scores[y == 1]),
            SERVER_TEST_SET,
        )
        return detection_metrics(scores, ds.y)

    async def _federated_eval(self, r: int) -> dict[str, tuple[np.ndarray, np.ndarray, float]]:
        slots = [
            slot
            for slot, pid in enumerate(self.slots)
            if self.n_test[slot] > 0 and self.core.registry.can_train(pid)
        ]
        if not slots:
            return {}
        assert self.state is not None
        tensors = {"params": self.state.params.detach().cpu().numpy()}
        for k, v in self.state.preprocessor.tensors().items():
            tensors[f"pre.{k}"] = v.numpy()
        expected = {"hist.benign": ("int64", (BINS,)), "hist.malware": ("int64", (BINS,))}
        collected = await self.dispatch(r, "evaluate", slots, tensors, expected)
        return {
            self.slots[slot]: (
                res.tensors["hist.benign"],
                res.tensors["hist.malware"],
                float(res.metrics.get("loss_sum", math.nan)),
            )
            for slot, res in collected.results
        }
