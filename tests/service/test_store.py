"""The service store on SQLite and PostgreSQL: records round-trip, atomic tokens and rounds."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy import func, select

from fedmetamal.service import tables
from fedmetamal.service.records import (
    EventRecord,
    ModelRecord,
    ParticipantRecord,
    RoundRow,
    RunRecord,
)
from fedmetamal.service.store import (
    NotFound,
    RoundExists,
    Store,
    StoreError,
    TokenRefused,
    events_before_query,
)

T0 = 1_700_000_000.25


def participant(pid: str, enrolled_at: float = T0, **kw: object) -> ParticipantRecord:
    return ParticipantRecord(
        participant_id=pid,
        name=f"name-{pid}",
        public_key=bytes(range(32)),
        state="pending",
        platform="linux-x86_64",
        enrolled_at=enrolled_at,
        **kw,  # type: ignore[arg-type]
    )


def run(run_id: str = "r1", created_at: float = T0, **kw: object) -> RunRecord:
    return RunRecord(
        run_id=run_id,
        name=f"run {run_id}",
        state="created",
        config_json='{"rounds": 3}',
        participant_ids=["p1", "p2"],
        created_at=created_at,
        updated_at=created_at,
        **kw,  # type: ignore[arg-type]
    )


def round_row(rnd: int = 1, run_id: str = "r1", model_id: str | None = "m1") -> RoundRow:
    return RoundRow(
        run_id=run_id,
        round=rnd,
        started_at=T0 + rnd,
        finished_at=T0 + rnd + 0.5,
        sampled=["p1", "p2", "p3"],
        reported=["p1", "p2"],
        rejected={"p3": "norm too large"},
        metrics={"loss": 0.25, "auc": 0.875},
        attempts=2,
        model_id=model_id,
        client_metrics={"p1": {"loss": 0.5}, "p2": {"loss": 0.125, "n": 40.0}},
    )


def model(model_id: str = "m1", rnd: int = 1, run_id: str = "r1") -> ModelRecord:
    return ModelRecord(
        model_id=model_id,
        run_id=run_id,
        round=rnd,
        created_at=T0 + rnd,
        path=f"models/{run_id}/{rnd}.safetensors",
        sha256="ab" * 32,
        num_params=5_000_000_000,
        feature_schema="ember-v3",
        metrics={"auc": 0.875},
    )


# -- opening ----------------------------------------------------------------------------------


def test_tables_and_schema_version_are_created(store: Store) -> None:
    assert store.get_setting("schema_version") == str(tables.SCHEMA_VERSION)
    assert store.get_setting("missing") is None


def test_settings_are_overwritten(store: Store) -> None:
    store.set_setting("operator_token_hash", "a")
    store.set_setting("operator_token_hash", "b")
    assert store.get_setting("operator_token_hash") == "b"


def test_sqlite_file_creates_parent_dirs_and_persists(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "fm.db"
    s = Store(f"sqlite:///{path}")
    assert s.dialect == "sqlite"
    s.add_run(run())
    s.close()
    assert path.is_file()
    again = Store(f"sqlite:///{path}")
    try:
        assert again.get_run("r1") == run()
    finally:
        again.close()


def test_sqlite_memory_is_shared_between_threads() -> None:
    s = Store("sqlite://")
    try:
        worker = threading.Thread(target=s.add_run, args=(run(),))
        worker.start()
        worker.join()
        assert s.get_run("r1").name == "run r1"
    finally:
        s.close()


def test_newer_schema_version_is_refused(store_url: str) -> None:
    s = Store(store_url)
    s.set_setting("schema_version", str(tables.SCHEMA_VERSION + 1))
    s.close()
    with pytest.raises(StoreError, match="schema version") as info:
        Store(store_url)
    assert "Upgrade fedmetamal" in str(info.value)


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_unreachable_postgres_names_masked_url(scheme: str) -> None:
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"{scheme}://fmm:s3cret@127.0.0.1:{port}/nodb"
    with pytest.raises(StoreError) as info:
        Store(url)
    message = str(info.value)
    assert f"fmm:***@127.0.0.1:{port}/nodb" in message
    assert "s3cret" not in message
    assert "PostgreSQL server is running" in message


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("not a url", "not a valid URL"),
        ("mysql://u:pw@host/db", "only SQLite and PostgreSQL"),
    ],
)
def test_bad_url_says_what_to_use(url: str, expected: str) -> None:
    with pytest.raises(StoreError, match=expected) as info:
        Store(url)
    assert "sqlite:///" in str(info.value)
    assert ":pw@" not in str(info.value)


def test_sqlite_path_that_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="failed") as info:
        Store(f"sqlite:///{tmp_path}")
    assert str(tmp_path) in str(info.value)


def test_postgres_url_gets_psycopg3_driver() -> None:
    from fedmetamal.service.store import _engine_url

    for url in ("postgres://u@h:5/d", "postgresql://u@h:5/d", "postgresql+psycopg://u@h:5/d"):
        sa_url, dialect = _engine_url(url)
        assert (sa_url.drivername, dialect) == ("postgresql+psycopg", "postgresql")


def test_postgres_scheme_alias_connects(store: Store, store_url: str) -> None:
    if store.dialect != "postgresql":
        pytest.skip("PostgreSQL only")
    alias = Store(store_url.replace("postgresql://", "postgres://", 1))
    try:
        assert alias._engine.dialect.driver == "psycopg"
        assert alias.get_setting("schema_version") == str(tables.SCHEMA_VERSION)
    finally:
        alias.close()


# -- tokens -----------------------------------------------------------------------------------


def test_token_consumed_once(store: Store) -> None:
    made = store.add_token("h1", expires_at=T0 + 60, auto_approve=True, note="lab", now=T0)
    assert (made.created_at, made.used_at, made.auto_approve) == (T0, None, True)
    used = store.consume_token("h1", now=T0 + 1, participant_id="p1")
    assert (used.used_at, used.used_by, used.note, used.auto_approve) == (T0 + 1, "p1", "lab", True)
    with pytest.raises(TokenRefused) as info:
        store.consume_token("h1", now=T0 + 2, participant_id="p2")
    assert info.value.reason == "used"
    assert "new join token" in str(info.value)


def test_token_unknown_and_expired(store: Store) -> None:
    store.add_token("h1", expires_at=T0 + 60, now=T0)
    with pytest.raises(TokenRefused) as unknown:
        store.consume_token("nope", now=T0, participant_id="p1")
    assert unknown.value.reason == "unknown"
    with pytest.raises(TokenRefused) as expired:
        store.consume_token("h1", now=T0 + 60, participant_id="p1")  # expires_at is exclusive
    assert expired.value.reason == "expired"
    assert "expired at 2023-11-14" in str(expired.value)
    # A refused attempt leaves the token untouched: still usable before it expires.
    assert store.consume_token("h1", now=T0 + 59, participant_id="p1").used_by == "p1"


def test_duplicate_token_hash_is_refused(store: Store) -> None:
    store.add_token("h1", expires_at=T0 + 60)
    with pytest.raises(StoreError, match="exists already"):
        store.add_token("h1", expires_at=T0 + 60)


def test_concurrent_consumers_exactly_one_wins(store: Store) -> None:
    store.add_token("race", expires_at=T0 + 60, now=T0)
    threads = 8
    barrier = threading.Barrier(threads)
    winners: list[str] = []
    reasons: list[str] = []
    errors: list[BaseException] = []

    def consume(pid: str) -> None:
        barrier.wait()
        try:
            winners.append(store.consume_token("race", now=T0 + 1, participant_id=pid).used_by)
        except TokenRefused as exc:
            reasons.append(exc.reason)
        except BaseException as exc:  # surfaced below: a crash must not pass as a refusal
            errors.append(exc)

    workers = [threading.Thread(target=consume, args=(f"p{i}",)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert errors == []
    assert len(winners) == 1
    assert reasons == ["used"] * (threads - 1)
    with store._engine.connect() as conn:
        used_by = conn.execute(select(tables.tokens.c.used_by)).scalar_one()
    assert used_by == winners[0]


# -- participants -----------------------------------------------------------------------------


def test_participant_round_trip_and_order(store: Store) -> None:
    late = participant("late", enrolled_at=T0 + 10)
    early = participant(
        "early", summary={"rows": 10, "labels": {"0": 4}}, feature_sums=b"\x00\x01blob"
    )
    store.add_participant(late)
    store.add_participant(early)
    assert store.get_participant("early") == early
    assert store.get_participant("nobody") is None
    assert [p.participant_id for p in store.list_participants()] == ["early", "late"]
    with pytest.raises(StoreError, match="exists already"):
        store.add_participant(late)


def test_participant_state_summary_and_touch(store: Store) -> None:
    store.add_participant(participant("p1"))
    store.add_participant(participant("p2"))
    approved = store.set_participant_state("p1", "approved")
    assert approved.state == "approved"
    store.set_participant_summary("p1", {"rows": 3}, b"sums")
    store.touch_participants({"p1": T0 + 5, "p2": T0 + 6, "ghost": T0 + 7})
    p1, p2 = store.list_participants()
    assert (p1.state, p1.summary, p1.feature_sums, p1.last_seen) == (
        "approved",
        {"rows": 3},
        b"sums",
        T0 + 5,
    )
    assert p2.last_seen == T0 + 6
    with pytest.raises(NotFound, match="No participant 'ghost'"):
        store.set_participant_state("ghost", "revoked")
    with pytest.raises(NotFound):
        store.set_participant_summary("ghost", {}, None)
    with pytest.raises(ValueError, match="state must be one of"):
        store.set_participant_state("p1", "banned")


# -- runs -------------------------------------------------------------------------------------


def test_run_round_trip_list_and_update(store: Store) -> None:
    store.add_run(run("old", created_at=T0))
    store.add_run(run("new", created_at=T0 + 1, latest_metrics={"auc": 0.5}))
    assert store.get_run("new") == run("new", created_at=T0 + 1, latest_metrics={"auc": 0.5})
    assert [r.run_id for r in store.list_runs()] == ["new", "old"]
    updated = store.update_run(
        "old",
        state="failed",
        error="diverged",
        round=2,
        checkpoint_path="runs/old/ckpt",
        latest_metrics={"loss": 1.5},
        participant_ids=["p9"],
        name="renamed",
        updated_at=T0 + 9,
    )
    assert updated == store.get_run("old")
    assert (updated.state, updated.error, updated.round, updated.updated_at) == (
        "failed",
        "diverged",
        2,
        T0 + 9,
    )
    assert (updated.latest_metrics, updated.participant_ids, updated.name) == (
        {"loss": 1.5},
        ["p9"],
        "renamed",
    )
    assert store.update_run("old", state="running").updated_at > T0 + 9  # defaults to now


def test_run_errors(store: Store) -> None:
    store.add_run(run())
    with pytest.raises(StoreError, match="exists already"):
        store.add_run(run())
    with pytest.raises(NotFound, match="No run 'zz'"):
        store.get_run("zz")
    with pytest.raises(NotFound):
        store.update_run("zz", state="running")
    with pytest.raises(TypeError, match="unknown fields: colour"):
        store.update_run("r1", colour="red")
    with pytest.raises(ValueError, match="state must be one of"):
        store.update_run("r1", state="exploded")


# -- rounds and models ------------------------------------------------------------------------


def test_complete_round_writes_everything(store: Store) -> None:
    store.add_run(run())
    store.complete_round(round_row(1), model("m1", 1), {"round": 1, "state": "running"})
    store.complete_round(
        round_row(2, model_id=None), None, {"round": 2, "latest_metrics": {"auc": 0.9}}
    )
    assert store.list_rounds("r1") == [round_row(1), round_row(2, model_id=None)]
    assert store.list_rounds("other") == []
    got = store.get_run("r1")
    assert (got.round, got.state, got.latest_metrics) == (2, "running", {"auc": 0.9})
    assert store.get_model("m1") == model("m1", 1)
    with pytest.raises(RoundExists, match="Round 2 of run 'r1'"):
        store.complete_round(round_row(2, model_id=None), None, {"round": 3})
    assert store.get_run("r1").round == 2


def test_complete_round_failure_leaves_nothing(store: Store) -> None:
    store.add_run(run())
    store.complete_round(round_row(1), model("m1", 1), {"round": 1})
    before = store.get_run("r1")
    # Round 2 reuses model id m1: the model insert fails after the round row went in.
    with pytest.raises(StoreError, match="model version 'm1' exists already"):
        store.complete_round(round_row(2), model("m1", 2), {"round": 2, "state": "completed"})
    assert [r.round for r in store.list_rounds("r1")] == [1]
    assert store.get_run("r1") == before
    assert store.list_models("r1") == [model("m1", 1)]
    with store._engine.connect() as conn:
        clients = conn.execute(
            select(func.count())
            .select_from(tables.round_clients)
            .where(tables.round_clients.c.round == 2)
        ).scalar_one()
    assert clients == 0
    # A bad run field fails last, after round, client metrics and model were written.
    with pytest.raises(TypeError):
        store.complete_round(round_row(2, model_id="m2"), model("m2", 2), {"bogus": 1})
    assert [r.round for r in store.list_rounds("r1")] == [1]
    with pytest.raises(NotFound):
        store.get_model("m2")
    # And the same round then completes cleanly.
    store.complete_round(round_row(2, model_id="m2"), model("m2", 2), {"round": 2})
    assert store.get_run("r1").round == 2


def test_complete_round_of_missing_run(store: Store) -> None:
    with pytest.raises(NotFound, match="No run 'ghost'"):
        store.complete_round(round_row(1, run_id="ghost"), None, {"round": 1})


def test_models_listed_by_run_then_round(store: Store) -> None:
    store.add_run(run("b"))
    store.add_run(run("a"))
    store.complete_round(round_row(2, "b", "b2"), model("b2", 2, "b"), {})
    store.complete_round(round_row(1, "b", "b1"), model("b1", 1, "b"), {})
    store.complete_round(round_row(1, "a", "a1"), model("a1", 1, "a"), {})
    assert [m.model_id for m in store.list_models()] == ["a1", "b1", "b2"]
    assert [m.model_id for m in store.list_models("b")] == ["b1", "b2"]
    assert store.get_model("b2").num_params == 5_000_000_000
    with pytest.raises(NotFound, match="No model 'zz'"):
        store.get_model("zz")


# -- events -----------------------------------------------------------------------------------


def test_events_seq_filter_and_limit(store: Store) -> None:
    first = store.add_event(EventRecord(kind="run_created", time=T0, run_id="r1"))
    second = store.add_event(
        EventRecord(
            kind="round_done",
            time=T0 + 1,
            run_id="r1",
            round=1,
            participant_id="p1",
            state="running",
            level="warning",
            message="slow",
            metrics={"auc": 0.5},
        )
    )
    third = store.add_event(EventRecord(kind="joined", time=T0 + 2, participant_id="p2"))
    assert 0 < first.seq < second.seq < third.seq
    assert store.events_after(0) == [first, second, third]
    assert store.events_after(first.seq) == [second, third]
    assert store.events_after(0, run_id="r1") == [first, second]
    assert store.events_after(0, limit=2) == [first, second]
    assert store.events_after(third.seq) == []


def test_events_before_pages_back_newest_first(store: Store) -> None:
    made = [
        store.add_event(
            EventRecord(kind="log" if i % 3 else "round_finished", time=T0 + i, run_id=f"r{i % 2}")
        )
        for i in range(12)
    ]
    r0 = [e for e in made if e.run_id == "r0"]
    assert store.events_before(None, "r0", 100) == r0[::-1]
    first = store.events_before(None, "r0", 4)
    assert first == r0[::-1][:4]
    assert store.events_before(first[-1].seq, "r0", 4) == r0[::-1][4:]
    assert store.events_before(None, None, 3) == made[::-1][:3]
    finished = store.events_before(None, None, 100, ["round_finished"])
    assert finished == [e for e in made[::-1] if e.kind == "round_finished"]
    assert store.events_before(made[0].seq, None, 10) == []
    assert store.events_before(None, "other", 10) == []


def test_events_before_walks_an_index_backwards(store: Store) -> None:
    """The log's history must not sort the events table: pages read an index backwards."""
    if store.dialect != "sqlite":
        pytest.skip("EXPLAIN QUERY PLAN is SQLite's")
    from sqlalchemy import text

    for run_id, index in (("r1", "ix_events_run_seq"), (None, "INTEGER PRIMARY KEY")):
        query = events_before_query(100, run_id, 201, ["log", "round_finished"])
        sql = str(query.compile(store._engine, compile_kwargs={"literal_binds": True}))
        with store._engine.connect() as conn:
            plan = " ".join(str(row[-1]) for row in conn.execute(text(f"EXPLAIN QUERY PLAN {sql}")))
        assert index in plan and "TEMP B-TREE" not in plan, plan


def test_concurrent_events_get_distinct_increasing_seqs(store: Store) -> None:
    threads, each = 4, 10
    barrier = threading.Barrier(threads)
    seqs: dict[int, list[int]] = {}

    def add(worker: int) -> None:
        barrier.wait()
        seqs[worker] = [
            store.add_event(EventRecord(kind="tick", time=T0, message=f"{worker}-{i}")).seq
            for i in range(each)
        ]

    workers = [threading.Thread(target=add, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    everything = [s for worker_seqs in seqs.values() for s in worker_seqs]
    assert len(set(everything)) == threads * each
    assert all(s == sorted(s) for s in seqs.values())
    listed = store.events_after(0)
    assert sorted(everything) == [e.seq for e in listed]
    by_seq = {e.seq: e.message for e in listed}
    for worker, worker_seqs in seqs.items():
        assert [by_seq[s] for s in worker_seqs] == [f"{worker}-{i}" for i in range(each)]


# -- the CI guard -----------------------------------------------------------------------------


def test_ci_without_postgres_url_fails(tmp_path: Path) -> None:
    """Under CI=true the PostgreSQL variant fails (not skips) when no server was started."""
    conftest = Path(__file__).with_name("conftest.py")
    (tmp_path / "conftest.py").write_text(conftest.read_text())
    (tmp_path / "test_probe.py").write_text(
        "def test_probe(store):\n    assert store.get_setting('schema_version')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "FEDMETAMAL_TEST_POSTGRES_URL"}
    outcomes = {}
    for ci in ("true", ""):
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-rfs",
                "-p",
                "no:cacheprovider",
                "-c",
                os.devnull,
                "--rootdir",
                str(tmp_path),
                str(tmp_path),
            ],
            env={**env, "CI": ci},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        outcomes[ci] = (result.returncode, result.stdout)
    code, out = outcomes["true"]
    assert code == 1, out
    assert "1 passed, 1 error" in out  # pytest.fail in a fixture reports an error
    assert "scripts/postgres.sh did not start a server" in out
    code, out = outcomes[""]
    assert code == 0, out
    assert "1 passed, 1 skipped" in out
