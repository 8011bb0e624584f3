"""The server's state and operations, independent of the transport: the gRPC services (and
the dashboard) are thin layers over this.

It owns the store, the event bus, the participant registry, the task board and one
:class:`RunEngine` per active run; it creates and controls runs, issues join tokens, keeps the
operator credential, and after a restart resumes every run that was running.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from fedmetamal.data.dataset import Dataset
from fedmetamal.errors import ConfigError, FedMetaMalError
from fedmetamal.service.events import EventBus
from fedmetamal.service.network_runs import check_network_run, parse_run_config
from fedmetamal.service.participants import APPROVED, REVOKED, ParticipantRegistry
from fedmetamal.service.records import RunRecord
from fedmetamal.service.run_engine import RunEngine
from fedmetamal.service.simulated_runs import SimulatedRunEngine, check_simulated_run
from fedmetamal.service.store import NotFound, Store
from fedmetamal.service.tasks import TaskBoard

OPERATOR_TOKEN_FILE = "operator.token"
_OPERATOR_HASH_KEY = "operator_token_sha256"
ACTIVE_STATES = frozenset({"running", "paused"})


class RunNotAllowed(FedMetaMalError):
    """A run operation that does not fit the run's state."""


@dataclass
class ServerSettings:
    data_dir: Path
    database_url: str | None = None
    heartbeat_interval_s: float = 5.0
    heartbeat_timeout_s: float = 20.0
    auto_approve: bool = False
    token_ttl_s: float = 24 * 3600.0
    #: Address participants use to reach this server (for the join command shown to operators).
    public_address: str = "localhost:50051"
    #: CA certificate participants must trust ("" for plaintext on loopback).
    ca_path: str = ""


class ServerCore:
    def __init__(self, settings: ServerSettings, test_data: Dataset | None = None) -> None:
        self.settings = settings
        self.data_dir = settings.data_dir
        self.data_dir.mkdir(parents=True, exist_ok=True)
        url = settings.database_url or f"sqlite:///{self.data_dir / 'fedmetamal.db'}"
        self.store = Store(url)
        self.bus = EventBus(self.store)
        self.registry = ParticipantRegistry(
            self.store, self.bus, settings.heartbeat_timeout_s, settings.auto_approve
        )
        self.board = TaskBoard()
        self.test_data = test_data
        self.engines: dict[str, RunEngine | SimulatedRunEngine] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._operator_hash = ""

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        """Attach to the running loop, start the presence sweeper, resume active runs."""
        self.bus.attach(asyncio.get_running_loop())
        self._sweeper = asyncio.create_task(self._sweep_forever())
        for run in self.store.list_runs():
            if run.state in ACTIVE_STATES:
                self.bus.publish(
                    "log", f"server restarted: resuming run at round {run.round}", run_id=run.run_id
                )
                self._launch(run, paused=run.state == "paused")

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        for task in self._tasks.values():
            task.cancel()
        for task in [*self._tasks.values(), *([self._sweeper] if self._sweeper else [])]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.store.close()

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_interval_s)
            try:
                await asyncio.to_thread(self.registry.sweep, time.time())
            except Exception as err:  # the database may be briefly unreachable: keep trying
                self.bus_log_error(f"presence sweep failed: {err}")

    def bus_log_error(self, message: str) -> None:
        with contextlib.suppress(Exception):
            self.bus.publish("log", message, level="error")

    # -- operator credential ---------------------------------------------------------------
    def ensure_operator_token(self) -> Path:
        """The operator token's file; a new token is made when the database has none."""
        from fedmetamal.net.auth import hash_secret, new_secret

        path = self.data_dir / OPERATOR_TOKEN_FILE
        stored = self.store.get_setting(_OPERATOR_HASH_KEY)
        if stored and path.is_file() and hash_secret(path.read_text().strip()) == stored:
            return path
        if stored and not path.is_file():
            return path  # kept in the database only: the operator has it elsewhere
        token = new_secret()
        tmp = path.with_name(f".{path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(token + "\n")
        tmp.replace(path)
        self.store.set_setting(_OPERATOR_HASH_KEY, hash_secret(token))
        self._operator_hash = ""
        return path

    @property
    def operator_hash(self) -> str:
        """The operator token's hash (read once: every ControlService call checks it)."""
        if not self._operator_hash:
            self._operator_hash = self.store.get_setting(_OPERATOR_HASH_KEY) or ""
        return self._operator_hash

    # -- join tokens -----------------------------------------------------------------------
    def create_join_token(
        self, ttl_s: float = 0.0, auto_approve: bool = False, note: str = ""
    ) -> tuple[str, float, str]:
        """A single-use join token (only its hash is stored), its expiry and the command."""
        from fedmetamal.net.auth import hash_secret, new_secret

        now = time.time()
        ttl = ttl_s if ttl_s > 0 else self.settings.token_ttl_s
        token = new_secret()
        self.store.add_token(hash_secret(token), now + ttl, auto_approve, note, now=now)
        cmd = f"fedmetamal join --server {self.settings.public_address} --token {token}"
        cmd += f" --ca {self.settings.ca_path}" if self.settings.ca_path else " --insecure"
        return token, now + ttl, cmd + " --data PATH"

    # -- participants ----------------------------------------------------------------------
    def approve(self, participant_id: str) -> None:
        rec = self.registry.get(participant_id)
        if rec is None:
            raise NotFound(
                f"No participant '{participant_id[:64]}'.",
                "List them with `fedmetamal participants list`.",
            )
        if rec.state == REVOKED:
            raise RunNotAllowed(
                f"Participant '{participant_id}' was revoked; revocation is final.",
                "Give it a new join token to enroll again.",
            )
        self.registry.set_state(participant_id, APPROVED)

    def revoke(self, participant_id: str) -> None:
        if self.registry.get(participant_id) is None:
            raise NotFound(
                f"No participant '{participant_id[:64]}'.",
                "List them with `fedmetamal participants list`.",
            )
        self.registry.set_state(participant_id, REVOKED)
        self.board.withdraw_participant(participant_id, "participant revoked")

    # -- runs ------------------------------------------------------------------------------
    def create_run(
        self,
        name: str,
        config_json: str,
        participant_ids: list[str],
        start: bool = False,
        simulated: int = 0,
    ) -> RunRecord:
        """A new run: with enrolled participants (``simulated`` 0), or trained inside the
        server on ``simulated`` simulated clients (every simulation option allowed)."""
        if simulated:
            return self._create_simulated_run(name, config_json, participant_ids, start, simulated)
        cfg = parse_run_config(config_json)
        check_network_run(cfg, len(participant_ids) or None)
        for pid in participant_ids:
            rec = self.registry.get(pid)
            if rec is None:
                raise ConfigError(
                    f"No participant '{pid[:64]}' to put in the run.",
                    "List them with `fedmetamal participants list`.",
                )
            if rec.state == REVOKED:
                raise ConfigError(f"Participant '{pid}' is revoked and cannot take part.")
        if len(set(participant_ids)) != len(participant_ids):
            raise ConfigError("A participant is listed twice in the run.")
        now = time.time()
        rec = RunRecord(
            run_id=_new_run_id(now),
            name=name,
            state="created",
            config_json=cfg.model_dump_json(),
            participant_ids=list(participant_ids),
            created_at=now,
            updated_at=now,
        )
        return self._add_run(rec, start)

    def _create_simulated_run(
        self, name: str, config_json: str, participant_ids: list[str], start: bool, clients: int
    ) -> RunRecord:
        if participant_ids:
            raise ConfigError(
                "A simulated run trains simulated clients inside the server; it takes no "
                f"participants (got {len(participant_ids)}).",
                "Leave the participant list empty, or create a network run "
                "(simulated participants 0).",
            )
        max_clients = 100_000  # partition.clients' bound
        if not 1 <= clients <= max_clients:
            raise ConfigError(
                f"A simulated run needs 1 to {max_clients} simulated participants, not {clients}."
            )
        data = parse_run_config(config_json).model_dump(mode="json")
        data["partition"]["clients"] = clients
        cfg = parse_run_config(json.dumps(data))
        check_simulated_run(cfg)
        now = time.time()
        rec = RunRecord(
            run_id=_new_run_id(now),
            name=name,
            state="created",
            config_json=cfg.model_dump_json(),
            participant_ids=[],
            created_at=now,
            updated_at=now,
            mode="simulated",
        )
        return self._add_run(rec, start)

    def _add_run(self, rec: RunRecord, start: bool) -> RunRecord:
        if not rec.name:
            rec = dataclasses.replace(rec, name=rec.run_id)
        self.store.add_run(rec)
        what = ""
        if rec.mode == "simulated":
            clients = json.loads(rec.config_json)["partition"]["clients"]
            what = f" (simulated: {clients} clients)"
        self.bus.publish(
            "run_state",
            f"run '{rec.name}' created{what}",
            run_id=rec.run_id,
            state="created",
        )
        if start:
            return self.start_run(rec.run_id)
        return rec

    def start_run(self, run_id: str) -> RunRecord:
        run = self.store.get_run(run_id)
        if run.state != "created":
            raise RunNotAllowed(f"Run '{run_id}' is {run.state}; only a created run can start.")
        if run.mode == "simulated":
            n = parse_run_config(run.config_json).partition.clients
            run = self.set_run_state(run_id, "running", f"started: simulation of {n} clients")
            self._launch(run)
            return run
        pids = run.participant_ids
        if not pids:
            pids = [
                v.record.participant_id for v in self.registry.views() if v.record.state == APPROVED
            ]
            if not pids:
                raise RunNotAllowed(
                    "No approved participants to run with.",
                    "Enroll participants (fedmetamal join) and approve them first.",
                )
            run = self.store.update_run(run_id, participant_ids=pids)
        cfg = parse_run_config(run.config_json)
        check_network_run(cfg, len(pids))
        if cfg.network.min_participants > len(pids):
            raise RunNotAllowed(
                f"network.min_participants is {cfg.network.min_participants} but the run has "
                f"{len(pids)} participant(s).",
                "Add participants or lower network.min_participants.",
            )
        run = self.set_run_state(run_id, "running", f"started with {len(pids)} participant(s)")
        self._launch(run)
        return run

    def _launch(self, run: RunRecord, paused: bool = False) -> None:
        engine: RunEngine | SimulatedRunEngine
        engine = SimulatedRunEngine(self, run) if run.mode == "simulated" else RunEngine(self, run)
        if paused:
            engine.pause()
        self.engines[run.run_id] = engine
        task = asyncio.get_running_loop().create_task(engine.run())
        self._tasks[run.run_id] = task
        task.add_done_callback(lambda _t, rid=run.run_id: self._finished(rid))

    def _finished(self, run_id: str) -> None:
        self.engines.pop(run_id, None)
        self._tasks.pop(run_id, None)

    def _engine(self, run_id: str, action: str) -> RunEngine | SimulatedRunEngine:
        run = self.store.get_run(run_id)
        engine = self.engines.get(run_id)
        if engine is None or run.state not in ACTIVE_STATES:
            raise RunNotAllowed(f"Run '{run_id}' is {run.state}; it cannot {action}.")
        return engine

    def pause_run(self, run_id: str) -> RunRecord:
        self._engine(run_id, "pause").pause()
        self.bus.publish(
            "log", "pause requested: the run pauses after the current round", run_id=run_id
        )
        return self.store.get_run(run_id)

    def resume_run(self, run_id: str) -> RunRecord:
        self._engine(run_id, "resume").resume()
        return self.store.get_run(run_id)

    def stop_run(self, run_id: str) -> RunRecord:
        run = self.store.get_run(run_id)
        if run.state == "created":
            return self.set_run_state(run_id, "stopped", "stopped before it started")
        self._engine(run_id, "stop").stop()
        return self.store.get_run(run_id)

    def set_run_state(
        self, run_id: str, state: str, message: str, error: str | None = None
    ) -> RunRecord:
        fields: dict[str, object] = {"state": state}
        if error is not None:
            fields["error"] = error
        run = self.store.update_run(run_id, **fields)
        self.bus.publish(
            "run_state",
            message,
            run_id=run_id,
            state=state,
            level="error" if state == "failed" else "info",
        )
        return run

    def active_runs(self) -> int:
        return len(self.engines)


def _new_run_id(now: float) -> str:
    return f"run-{time.strftime('%Y%m%d-%H%M%S', time.gmtime(now))}-{secrets.token_hex(3)}"
