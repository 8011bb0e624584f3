"""The service store: participants, tokens, runs, rounds, events and model versions.

One ``Store`` wraps one SQLAlchemy engine (SQLite or PostgreSQL through psycopg 3). Every method
runs in its own short transaction on a pooled connection, so the server may call it from several
threads at once. Records go in and come out as the frozen dataclasses of ``records``; no database
object leaks out.

SQLite runs in WAL mode with foreign keys on and a 30 s busy timeout; write transactions start
with ``BEGIN IMMEDIATE`` so two writers queue instead of failing when one of them read first.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Row,
    Select,
    create_engine,
    event,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import (
    ArgumentError,
    IntegrityError,
    InterfaceError,
    NoSuchModuleError,
    OperationalError,
)
from sqlalchemy.pool import StaticPool

from fedmetamal.errors import FedMetaMalError
from fedmetamal.service import tables as t
from fedmetamal.service.records import (
    PARTICIPANT_STATES,
    RUN_MODES,
    RUN_STATES,
    EventRecord,
    ModelRecord,
    ParticipantRecord,
    RoundRow,
    RunRecord,
    TokenRecord,
)

__all__ = ["NotFound", "RoundExists", "Store", "StoreError", "TokenRefused"]

URL_FIX = (
    "Use sqlite:///PATH/TO/fedmetamal.db or postgresql://USER:PASSWORD@HOST:PORT/DATABASE "
    "(--database or FEDMETAMAL_DATABASE_URL)."
)
NEW_TOKEN_FIX = "Ask the operator for a new join token (fedmetamal token create)."
# Key of the PostgreSQL advisory lock that orders event inserts (ASCII "FMMe").
_EVENTS_LOCK = 0x464D4D65
_RUN_FIELDS = frozenset(
    {
        "state",
        "round",
        "error",
        "checkpoint_path",
        "latest_metrics",
        "participant_ids",
        "name",
        "updated_at",
    }
)


class StoreError(FedMetaMalError):
    """The database cannot be used: a bad URL, an unreachable server, a conflicting record."""


class NotFound(StoreError):
    """A run, participant or model that the caller named does not exist."""


class TokenRefused(StoreError):
    """A join token cannot be used; ``reason`` is "unknown", "used" or "expired"."""

    def __init__(self, reason: str, problem: str, fix: str | None = NEW_TOKEN_FIX) -> None:
        self.reason = reason
        super().__init__(problem, fix)


class RoundExists(StoreError):
    """The round was completed before; a round is written once."""


def mask_url(url: str) -> str:
    """The URL with its password replaced by ***, safe for messages and logs."""
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _engine_url(url: str) -> tuple[URL, str]:
    """Parse ``url`` and pick the driver: PostgreSQL always goes through psycopg 3."""
    shown = mask_url(url)
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise StoreError(f"The database URL {shown!r} is not a valid URL.", URL_FIX) from exc
    backend = parsed.get_backend_name()
    if backend in ("postgresql", "postgres"):
        driver = parsed.get_driver_name() if "+" in parsed.drivername else "psycopg"
        return parsed.set(drivername=f"postgresql+{driver}"), "postgresql"
    if backend == "sqlite":
        return parsed, "sqlite"
    raise StoreError(
        f"The database URL {shown!r} names {backend!r}; only SQLite and PostgreSQL are supported.",
        URL_FIX,
    )


class Store:
    """Persistence of the federation server (see the module docstring)."""

    def __init__(self, url: str) -> None:
        self.url = mask_url(url)
        sa_url, self.dialect = _engine_url(url)
        self._serial: AbstractContextManager[Any] = nullcontext()
        try:
            if self.dialect == "sqlite":
                self._engine = self._sqlite_engine(sa_url)
            else:
                self._engine = create_engine(
                    sa_url, pool_pre_ping=True, connect_args={"connect_timeout": 10}
                )
        except (ArgumentError, NoSuchModuleError, ImportError, TypeError) as exc:
            raise StoreError(
                f"Cannot use the database URL {self.url!r}: {exc}".rstrip(".") + ".", URL_FIX
            ) from exc
        self._writer = self._engine.execution_options(fmm_write=True)
        try:
            try:
                t.metadata.create_all(self._engine)
            except (OperationalError, InterfaceError) as exc:
                raise self._connection_problem(exc) from exc
            self._check_schema_version()
        except BaseException:
            self._engine.dispose()
            raise

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine, for modules that keep their own tables in the same database
        (the dashboard's accounts); write transactions should use
        ``engine.execution_options(fmm_write=True)`` so SQLite begins them IMMEDIATE."""
        return self._engine

    # -- engine setup -----------------------------------------------------------------------

    def _sqlite_engine(self, sa_url: URL) -> Engine:
        """A SQLite engine in WAL mode whose write transactions begin IMMEDIATE."""
        database = sa_url.database or ""
        memory = database in ("", ":memory:")
        if memory:
            # One shared connection, so every thread sees the same in-memory database; the
            # lock serializes the methods, as SQLite transactions on one connection would mix.
            engine = create_engine(
                sa_url, poolclass=StaticPool, connect_args={"check_same_thread": False}
            )
            self._serial = threading.RLock()
        else:
            if not sa_url.query.get("uri"):
                path = Path(database).expanduser()
                sa_url = sa_url.set(database=str(path))
                parent = path.parent
                try:
                    parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise StoreError(
                        f"Cannot create the directory {str(parent)!r} of the SQLite database "
                        f"{self.url!r}: {exc.strerror}.",
                        "Choose a database path in a directory you can write to.",
                    ) from exc
            engine = create_engine(sa_url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # SQLAlchemy emits BEGIN itself (below)
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            if not memory:
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            write = conn.get_execution_options().get("fmm_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

        return engine

    def _connection_problem(self, exc: Exception) -> StoreError:
        """A StoreError naming the database and what to check, for a failed connection."""
        detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        reason = detail[0] if detail else type(exc).__name__
        if self.dialect == "postgresql":
            fix = (
                "Check that the PostgreSQL server is running and reachable at that host and "
                "port, and that the user, password and database name are right (set the URL "
                "with --database or FEDMETAMAL_DATABASE_URL)."
            )
        else:
            fix = (
                "Check that the SQLite path is a file you can write (not a directory) on a "
                "local disk, and that no other program holds it locked."
            )
        return StoreError(f"The database {self.url!r} failed: {reason}.", fix)

    @contextmanager
    def _tx(self, write: bool = False) -> Iterator[Connection]:
        """One short transaction: committed on success, rolled back on any error."""
        with self._serial:
            try:
                with (self._writer if write else self._engine).begin() as conn:
                    yield conn
            except (OperationalError, InterfaceError) as exc:
                raise self._connection_problem(exc) from exc

    def _check_schema_version(self) -> None:
        key = t.settings.c.key
        try:
            with self._tx(write=True) as conn:
                found = conn.execute(
                    select(t.settings.c.value).where(key == "schema_version").with_for_update()
                ).scalar_one_or_none()
                if found is None:
                    conn.execute(
                        insert(t.settings).values(key="schema_version", value=str(t.SCHEMA_VERSION))
                    )
                elif found == "1":  # before runs.mode: every run so far was a network run
                    conn.exec_driver_sql(
                        "ALTER TABLE runs ADD COLUMN mode VARCHAR(16) NOT NULL DEFAULT 'network'"
                    )
                    conn.execute(
                        update(t.settings)
                        .where(key == "schema_version")
                        .values(value=str(t.SCHEMA_VERSION))
                    )
                    found = str(t.SCHEMA_VERSION)
        except IntegrityError:  # another process wrote it first: fine
            return
        if found is not None and (not found.isdigit() or int(found) > t.SCHEMA_VERSION):
            raise StoreError(
                f"The database {self.url!r} has schema version {found!r}; this FedMetaMal "
                f"understands up to {t.SCHEMA_VERSION}.",
                "Upgrade fedmetamal, or point --database at another database.",
            )

    def close(self) -> None:
        """Close every pooled connection (the Store must not be used afterwards)."""
        self._engine.dispose()

    # -- settings ---------------------------------------------------------------------------

    def get_setting(self, key: str) -> str | None:
        with self._tx() as conn:
            return conn.execute(
                select(t.settings.c.value).where(t.settings.c.key == key)
            ).scalar_one_or_none()

    def set_setting(self, key: str, value: str) -> None:
        upsert = pg_insert if self.dialect == "postgresql" else sqlite_insert
        stmt = upsert(t.settings).values(key=key, value=value)
        stmt = stmt.on_conflict_do_update(index_elements=[t.settings.c.key], set_={"value": value})
        with self._tx(write=True) as conn:
            conn.execute(stmt)

    # -- tokens -----------------------------------------------------------------------------

    def add_token(
        self,
        token_hash: str,
        expires_at: float,
        auto_approve: bool = False,
        note: str = "",
        now: float | None = None,
    ) -> TokenRecord:
        rec = TokenRecord(
            token_hash=token_hash,
            created_at=time.time() if now is None else now,
            expires_at=expires_at,
            auto_approve=auto_approve,
            note=note,
        )
        try:
            with self._tx(write=True) as conn:
                conn.execute(
                    insert(t.tokens).values(
                        token_hash=rec.token_hash,
                        created_at=rec.created_at,
                        expires_at=rec.expires_at,
                        auto_approve=rec.auto_approve,
                        note=rec.note,
                    )
                )
        except IntegrityError as exc:
            raise StoreError(
                "A join token with this hash exists already.", "Generate a new random token."
            ) from exc
        return rec

    def consume_token(self, token_hash: str, now: float, participant_id: str) -> TokenRecord:
        """Mark the token used by ``participant_id``; of concurrent callers exactly one wins."""
        tok = t.tokens.c
        with self._tx(write=True) as conn:
            won = conn.execute(
                update(t.tokens)
                .where(tok.token_hash == token_hash, tok.used_at.is_(None), tok.expires_at > now)
                .values(used_at=now, used_by=participant_id)
            ).rowcount
            row = conn.execute(select(t.tokens).where(tok.token_hash == token_hash)).first()
        if won == 1 and row is not None:
            return _token(row)
        if row is None:
            raise TokenRefused(
                "unknown",
                "The join token is not known to this server.",
                "Check that you passed the whole token to the right server, or "
                + NEW_TOKEN_FIX[0].lower()
                + NEW_TOKEN_FIX[1:],
            )
        if row.used_at is not None:
            raise TokenRefused(
                "used", f"The join token was used already (at {_iso(row.used_at)}); it works once."
            )
        raise TokenRefused("expired", f"The join token expired at {_iso(row.expires_at)}.")

    # -- participants -----------------------------------------------------------------------

    def add_participant(self, rec: ParticipantRecord) -> None:
        _check_state(rec.state, PARTICIPANT_STATES, "participant")
        try:
            with self._tx(write=True) as conn:
                conn.execute(
                    insert(t.participants).values(
                        participant_id=rec.participant_id,
                        name=rec.name,
                        public_key=bytes(rec.public_key),
                        state=rec.state,
                        platform=rec.platform,
                        enrolled_at=rec.enrolled_at,
                        last_seen=rec.last_seen,
                        summary_json=None if rec.summary is None else _dumps(rec.summary),
                        feature_sums=rec.feature_sums,
                    )
                )
        except IntegrityError as exc:
            raise StoreError(
                f"A participant {rec.participant_id!r} exists already.",
                "Enroll it under a new participant id.",
            ) from exc

    def get_participant(self, participant_id: str) -> ParticipantRecord | None:
        with self._tx() as conn:
            row = conn.execute(
                select(t.participants).where(t.participants.c.participant_id == participant_id)
            ).first()
        return None if row is None else _participant(row)

    def list_participants(self) -> list[ParticipantRecord]:
        """All participants, earliest enrolled first."""
        c = t.participants.c
        with self._tx() as conn:
            rows = conn.execute(
                select(t.participants).order_by(c.enrolled_at, c.participant_id)
            ).all()
        return [_participant(r) for r in rows]

    def set_participant_state(self, participant_id: str, state: str) -> ParticipantRecord:
        _check_state(state, PARTICIPANT_STATES, "participant")
        c = t.participants.c
        with self._tx(write=True) as conn:
            conn.execute(
                update(t.participants).where(c.participant_id == participant_id).values(state=state)
            )
            row = conn.execute(select(t.participants).where(c.participant_id == participant_id))
            found = row.first()
        if found is None:
            raise _no_participant(participant_id)
        return _participant(found)

    def set_participant_summary(
        self, participant_id: str, summary: dict[str, Any], feature_sums: bytes | None
    ) -> None:
        c = t.participants.c
        with self._tx(write=True) as conn:
            changed = conn.execute(
                update(t.participants)
                .where(c.participant_id == participant_id)
                .values(summary_json=_dumps(summary), feature_sums=feature_sums)
            ).rowcount
        if not changed:
            raise _no_participant(participant_id)

    def touch_participants(self, last_seen: dict[str, float]) -> None:
        """Record when participants were last heard from (ids not enrolled are ignored)."""
        if not last_seen:
            return
        c = t.participants.c
        with self._tx(write=True) as conn:
            for pid, seen in sorted(last_seen.items()):
                conn.execute(
                    update(t.participants).where(c.participant_id == pid).values(last_seen=seen)
                )

    # -- runs -------------------------------------------------------------------------------

    def add_run(self, rec: RunRecord) -> None:
        _check_state(rec.state, RUN_STATES, "run")
        if rec.mode not in RUN_MODES:
            raise ValueError(f"run mode must be one of {', '.join(RUN_MODES)}, not {rec.mode!r}")
        try:
            with self._tx(write=True) as conn:
                conn.execute(
                    insert(t.runs).values(
                        run_id=rec.run_id,
                        name=rec.name,
                        state=rec.state,
                        config_json=rec.config_json,
                        participant_ids_json=_dumps(list(rec.participant_ids)),
                        created_at=rec.created_at,
                        updated_at=rec.updated_at,
                        round=rec.round,
                        error=rec.error,
                        checkpoint_path=rec.checkpoint_path,
                        latest_metrics_json=_dumps(dict(rec.latest_metrics)),
                        mode=rec.mode,
                    )
                )
        except IntegrityError as exc:
            raise StoreError(
                f"A run {rec.run_id!r} exists already.", "Create the run under a new run id."
            ) from exc

    def get_run(self, run_id: str) -> RunRecord:
        with self._tx() as conn:
            return _get_run(conn, run_id)

    def list_runs(self) -> list[RunRecord]:
        """All runs, newest first."""
        c = t.runs.c
        with self._tx() as conn:
            rows = conn.execute(select(t.runs).order_by(c.created_at.desc(), c.run_id.desc()))
            return [_run(r) for r in rows.all()]

    def update_run(self, run_id: str, **fields: Any) -> RunRecord:
        """Change some fields of a run; ``updated_at`` defaults to now."""
        with self._tx(write=True) as conn:
            return _update_run(conn, run_id, fields)

    # -- rounds and models ------------------------------------------------------------------

    def complete_round(
        self, row: RoundRow, model: ModelRecord | None, run_fields: dict[str, Any]
    ) -> None:
        """Write a finished round, its model version and the run's new state, all or nothing."""
        if model is not None and model.run_id != row.run_id:
            raise ValueError(
                f"model {model.model_id!r} belongs to run {model.run_id!r}, not to {row.run_id!r}"
            )
        r, m = t.rounds.c, t.models.c
        with self._tx(write=True) as conn:
            _get_run(conn, row.run_id)  # NotFound before anything is written
            there = conn.execute(
                select(r.round).where(r.run_id == row.run_id, r.round == row.round)
            ).first()
            if there is not None:
                raise _round_exists(row)
            try:
                conn.execute(insert(t.rounds).values(**_round_values(row)))
            except IntegrityError as exc:
                raise _round_exists(row) from exc
            if row.client_metrics:
                conn.execute(
                    insert(t.round_clients),
                    [
                        {
                            "run_id": row.run_id,
                            "round": row.round,
                            "participant_id": pid,
                            "metrics_json": _dumps(dict(metrics)),
                        }
                        for pid, metrics in sorted(row.client_metrics.items())
                    ],
                )
            if model is not None:
                dup = conn.execute(select(m.model_id).where(m.model_id == model.model_id)).first()
                if dup is not None:
                    raise _model_exists(model.model_id)
                try:
                    conn.execute(insert(t.models).values(**_model_values(model)))
                except IntegrityError as exc:
                    raise _model_exists(model.model_id) from exc
            _update_run(conn, row.run_id, dict(run_fields))

    def list_rounds(self, run_id: str) -> list[RoundRow]:
        """The completed rounds of a run, in order."""
        r, rc = t.rounds.c, t.round_clients.c
        with self._tx() as conn:
            rows = conn.execute(select(t.rounds).where(r.run_id == run_id).order_by(r.round)).all()
            clients = conn.execute(
                select(t.round_clients)
                .where(rc.run_id == run_id)
                .order_by(rc.round, rc.participant_id)
            ).all()
        per_round: dict[int, dict[str, dict[str, float]]] = {}
        for c in clients:
            per_round.setdefault(c.round, {})[c.participant_id] = json.loads(c.metrics_json)
        return [_round(row, per_round.get(row.round, {})) for row in rows]

    def list_models(self, run_id: str | None = None) -> list[ModelRecord]:
        """Model versions (of one run, or all), ordered by run id, then round."""
        m = t.models.c
        query = select(t.models).order_by(m.run_id, m.round, m.created_at, m.model_id)
        if run_id is not None:
            query = query.where(m.run_id == run_id)
        with self._tx() as conn:
            return [_model(row) for row in conn.execute(query).all()]

    def get_model(self, model_id: str) -> ModelRecord:
        with self._tx() as conn:
            row = conn.execute(select(t.models).where(t.models.c.model_id == model_id)).first()
        if row is None:
            raise NotFound(
                f"No model {model_id[:64]!r}.",
                "Check the model id against the run's model versions.",
            )
        return _model(row)

    # -- events -----------------------------------------------------------------------------

    def add_event(self, ev: EventRecord) -> EventRecord:
        """Store an event; its seq is larger than that of every event committed before it.

        Inserts are serialized (SQLite's write lock; an advisory lock on PostgreSQL) so seqs
        also become visible in order, and a reader polling events_after never skips one.
        """
        with self._tx(write=True) as conn:
            if self.dialect == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _EVENTS_LOCK})
            result = conn.execute(
                insert(t.events).values(
                    kind=ev.kind,
                    time=ev.time,
                    run_id=ev.run_id,
                    round=ev.round,
                    participant_id=ev.participant_id,
                    state=ev.state,
                    level=ev.level,
                    message=ev.message,
                    metrics_json=_dumps(dict(ev.metrics)),
                )
            )
            seq = int(result.inserted_primary_key[0])
        return EventRecord(
            kind=ev.kind,
            time=ev.time,
            run_id=ev.run_id,
            round=ev.round,
            participant_id=ev.participant_id,
            state=ev.state,
            level=ev.level,
            message=ev.message,
            metrics=dict(ev.metrics),
            seq=seq,
        )

    def last_event_seq(self) -> int:
        """The newest event's sequence number (0 without events): watch from it to see only
        what happens next."""
        with self._tx() as conn:
            found = conn.execute(select(func.max(t.events.c.seq))).scalar()
        return int(found or 0)

    def events_after(
        self, after_seq: int, run_id: str | None = None, limit: int = 1000
    ) -> list[EventRecord]:
        """Events with seq > after_seq (of one run, or all), oldest first, at most ``limit``."""
        e = t.events.c
        query = select(t.events).where(e.seq > after_seq)
        if run_id is not None:
            query = query.where(e.run_id == run_id)
        query = query.order_by(e.seq).limit(max(0, int(limit)))
        with self._tx() as conn:
            return [_event(row) for row in conn.execute(query).all()]

    def events_before(
        self,
        before_seq: int | None,
        run_id: str | None = None,
        limit: int = 200,
        kinds: Sequence[str] = (),
    ) -> list[EventRecord]:
        """Events with seq < before_seq (None: the newest), of one run or all, newest first,
        at most ``limit``; only ``kinds`` when given.

        The scan walks the primary key (all runs) or ix_events_run_seq (one run) backwards
        from before_seq and stops after ``limit`` matches, on SQLite and PostgreSQL alike.
        """
        query = events_before_query(before_seq, run_id, limit, kinds)
        with self._tx() as conn:
            return [_event(row) for row in conn.execute(query).all()]


# -- helpers (module level so complete_round can reuse them inside its transaction) -------------


def events_before_query(
    before_seq: int | None, run_id: str | None, limit: int, kinds: Sequence[str] = ()
) -> Select[Any]:
    """The query of :meth:`Store.events_before` (tests read its plan)."""
    e = t.events.c
    query = select(t.events)
    if before_seq is not None:
        query = query.where(e.seq < before_seq)
    if run_id is not None:
        query = query.where(e.run_id == run_id)
    if kinds:
        query = query.where(e.kind.in_(list(kinds)))
    return query.order_by(e.seq.desc()).limit(max(0, int(limit)))


def _check_state(state: str, allowed: tuple[str, ...], what: str) -> None:
    if state not in allowed:
        raise ValueError(f"{what} state must be one of {', '.join(allowed)}, not {state!r}")


def _no_participant(participant_id: str) -> NotFound:
    return NotFound(
        f"No participant {participant_id[:64]!r}.",
        "List participants with: fedmetamal participants list",
    )


def _round_exists(row: RoundRow) -> RoundExists:
    return RoundExists(
        f"Round {row.round} of run {row.run_id!r} was completed already.",
        "Complete the next round instead; a completed round is never rewritten.",
    )


def _model_exists(model_id: str) -> StoreError:
    return StoreError(
        f"A model version {model_id!r} exists already.", "Give each model version a new id."
    )


def _get_run(conn: Connection, run_id: str) -> RunRecord:
    row = conn.execute(select(t.runs).where(t.runs.c.run_id == run_id)).first()
    if row is None:
        raise NotFound(f"No run {run_id[:64]!r}.", "List runs with: fedmetamal runs list")
    return _run(row)


def _update_run(conn: Connection, run_id: str, fields: Mapping[str, Any]) -> RunRecord:
    unknown = sorted(set(fields) - _RUN_FIELDS)
    if unknown:
        raise TypeError(f"update_run() got unknown fields: {', '.join(unknown)}")
    values: dict[str, Any] = {}
    for key, value in fields.items():
        if key == "latest_metrics":
            values["latest_metrics_json"] = _dumps(dict(value))
        elif key == "participant_ids":
            values["participant_ids_json"] = _dumps(list(value))
        else:
            values[key] = value
    if "state" in values:
        _check_state(values["state"], RUN_STATES, "run")
    values.setdefault("updated_at", time.time())
    changed = conn.execute(update(t.runs).where(t.runs.c.run_id == run_id).values(**values))
    if not changed.rowcount:
        _get_run(conn, run_id)  # raises NotFound
    return _get_run(conn, run_id)


def _token(row: Row[Any]) -> TokenRecord:
    return TokenRecord(
        token_hash=row.token_hash,
        created_at=row.created_at,
        expires_at=row.expires_at,
        auto_approve=bool(row.auto_approve),
        note=row.note,
        used_at=row.used_at,
        used_by=row.used_by,
    )


def _participant(row: Row[Any]) -> ParticipantRecord:
    return ParticipantRecord(
        participant_id=row.participant_id,
        name=row.name,
        public_key=bytes(row.public_key),
        state=row.state,
        platform=row.platform,
        enrolled_at=row.enrolled_at,
        last_seen=row.last_seen,
        summary=None if row.summary_json is None else json.loads(row.summary_json),
        feature_sums=None if row.feature_sums is None else bytes(row.feature_sums),
    )


def _run(row: Row[Any]) -> RunRecord:
    return RunRecord(
        run_id=row.run_id,
        name=row.name,
        state=row.state,
        config_json=row.config_json,
        participant_ids=json.loads(row.participant_ids_json),
        created_at=row.created_at,
        updated_at=row.updated_at,
        round=row.round,
        error=row.error,
        checkpoint_path=row.checkpoint_path,
        latest_metrics=json.loads(row.latest_metrics_json),
        mode=row.mode,
    )


def _round_values(row: RoundRow) -> dict[str, Any]:
    return {
        "run_id": row.run_id,
        "round": row.round,
        "started_at": row.started_at,
        "finished_at": row.finished_at,
        "sampled_json": _dumps(list(row.sampled)),
        "reported_json": _dumps(list(row.reported)),
        "rejected_json": _dumps(dict(row.rejected)),
        "metrics_json": _dumps(dict(row.metrics)),
        "attempts": row.attempts,
        "model_id": row.model_id,
        "skipped": row.skipped,
    }


def _round(row: Row[Any], client_metrics: dict[str, dict[str, float]]) -> RoundRow:
    return RoundRow(
        run_id=row.run_id,
        round=row.round,
        started_at=row.started_at,
        finished_at=row.finished_at,
        sampled=json.loads(row.sampled_json),
        reported=json.loads(row.reported_json),
        rejected=json.loads(row.rejected_json),
        metrics=json.loads(row.metrics_json),
        attempts=row.attempts,
        model_id=row.model_id,
        skipped=row.skipped,
        client_metrics=client_metrics,
    )


def _model_values(model: ModelRecord) -> dict[str, Any]:
    return {
        "model_id": model.model_id,
        "run_id": model.run_id,
        "round": model.round,
        "created_at": model.created_at,
        "path": model.path,
        "sha256": model.sha256,
        "num_params": model.num_params,
        "feature_schema": model.feature_schema,
        "metrics_json": _dumps(dict(model.metrics)),
    }


def _model(row: Row[Any]) -> ModelRecord:
    return ModelRecord(
        model_id=row.model_id,
        run_id=row.run_id,
        round=row.round,
        created_at=row.created_at,
        path=row.path,
        sha256=row.sha256,
        num_params=row.num_params,
        feature_schema=row.feature_schema,
        metrics=json.loads(row.metrics_json),
    )


def _event(row: Row[Any]) -> EventRecord:
    return EventRecord(
        kind=row.kind,
        time=row.time,
        run_id=row.run_id,
        round=row.round,
        participant_id=row.participant_id,
        state=row.state,
        level=row.level,
        message=row.message,
        metrics=json.loads(row.metrics_json),
        seq=row.seq,
    )
