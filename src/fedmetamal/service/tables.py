"""SQLAlchemy Core tables of the service store (SQLite and PostgreSQL).

Lists and dicts are JSON text columns (portable, and the store never queries inside them).
Times are DOUBLE PRECISION unix seconds. Bump SCHEMA_VERSION when a table changes, so a later
release can tell which migrations an existing database needs.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Double,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

#: 2: runs.mode ("network" | "simulated"); a version-1 database gets the column on open.
SCHEMA_VERSION = 2

ID = String(200)

metadata = MetaData()

settings = Table(
    "settings",
    metadata,
    Column("key", ID, primary_key=True),
    Column("value", Text, nullable=False),
)

tokens = Table(
    "tokens",
    metadata,
    Column("token_hash", ID, primary_key=True),
    Column("created_at", Double, nullable=False),
    Column("expires_at", Double, nullable=False),
    Column("auto_approve", Boolean, nullable=False, default=False),
    Column("note", Text, nullable=False, default=""),
    Column("used_at", Double, nullable=True),
    Column("used_by", ID, nullable=True),
)

participants = Table(
    "participants",
    metadata,
    Column("participant_id", ID, primary_key=True),
    Column("name", Text, nullable=False),
    Column("public_key", LargeBinary, nullable=False),
    Column("state", String(16), nullable=False),
    Column("platform", Text, nullable=False),
    Column("enrolled_at", Double, nullable=False, index=True),
    Column("last_seen", Double, nullable=True),
    Column("summary_json", Text, nullable=True),
    Column("feature_sums", LargeBinary, nullable=True),
)

runs = Table(
    "runs",
    metadata,
    Column("run_id", ID, primary_key=True),
    Column("name", Text, nullable=False),
    Column("state", String(16), nullable=False),
    Column("config_json", Text, nullable=False),
    Column("participant_ids_json", Text, nullable=False),
    Column("created_at", Double, nullable=False, index=True),
    Column("updated_at", Double, nullable=False),
    Column("round", Integer, nullable=False, default=0),
    Column("error", Text, nullable=True),
    Column("checkpoint_path", Text, nullable=True),
    Column("latest_metrics_json", Text, nullable=False),
    Column("mode", String(16), nullable=False, default="network", server_default="network"),
)

# The primary key (run_id, round) is the index that list_rounds(run_id) uses.
rounds = Table(
    "rounds",
    metadata,
    Column("run_id", ID, ForeignKey("runs.run_id"), primary_key=True),
    Column("round", Integer, primary_key=True, autoincrement=False),
    Column("started_at", Double, nullable=False),
    Column("finished_at", Double, nullable=False),
    Column("sampled_json", Text, nullable=False),
    Column("reported_json", Text, nullable=False),
    Column("rejected_json", Text, nullable=False),
    Column("metrics_json", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("model_id", ID, nullable=True),
    Column("skipped", Text, nullable=True),
)

# Per-participant metrics of a round: one row each, so they can be queried per participant.
round_clients = Table(
    "round_clients",
    metadata,
    Column("run_id", ID, primary_key=True),
    Column("round", Integer, primary_key=True, autoincrement=False),
    Column("participant_id", ID, primary_key=True),
    Column("metrics_json", Text, nullable=False),
    ForeignKeyConstraint(["run_id", "round"], ["rounds.run_id", "rounds.round"]),
)

models = Table(
    "models",
    metadata,
    Column("model_id", ID, primary_key=True),
    Column("run_id", ID, ForeignKey("runs.run_id"), nullable=False),
    Column("round", Integer, nullable=False),
    Column("created_at", Double, nullable=False),
    Column("path", Text, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("num_params", BigInteger, nullable=False),
    Column("feature_schema", Text, nullable=True),
    Column("metrics_json", Text, nullable=False),
    Index("ix_models_run_round", "run_id", "round"),
)

# seq is the primary key (events_after scans it); (run_id, seq) serves the per-run stream.
# On SQLite it must be a plain INTEGER to alias the rowid; AUTOINCREMENT never reuses a seq.
events = Table(
    "events",
    metadata,
    Column(
        "seq",
        BigInteger().with_variant(Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    Column("kind", String(64), nullable=False),
    Column("time", Double, nullable=False),
    Column("run_id", ID, nullable=True),
    Column("round", Integer, nullable=True),
    Column("participant_id", ID, nullable=True),
    Column("state", String(32), nullable=True),
    Column("level", String(16), nullable=False),
    Column("message", Text, nullable=False),
    Column("metrics_json", Text, nullable=False),
    Index("ix_events_run_seq", "run_id", "seq"),
    sqlite_autoincrement=True,
)
