"""Plain, immutable records the store hands out, so no ORM or database object leaks past it.

Times are unix seconds (float). Paths are relative to the server's data directory, so a data
directory can be moved or mounted elsewhere without rewriting the database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PARTICIPANT_STATES = ("pending", "approved", "revoked")
RUN_STATES = ("created", "running", "paused", "stopped", "completed", "failed")
#: How a run trains: with enrolled participants over the network, or inside the server.
RUN_MODES = ("network", "simulated")


@dataclass(frozen=True)
class ParticipantRecord:
    """An enrolled participant and what it told the server about its data."""

    participant_id: str
    name: str
    public_key: bytes  # raw Ed25519, 32 bytes
    state: str  # "pending" | "approved" | "revoked"
    platform: str
    enrolled_at: float  # unix seconds
    last_seen: float | None = None
    summary: dict[str, Any] | None = None  # JSON-ready dataset summary (no feature sums)
    feature_sums: bytes | None = None  # opaque blob (safetensors bytes) or None


@dataclass(frozen=True)
class TokenRecord:
    """A single-use join token, stored only as a hash."""

    token_hash: str
    created_at: float
    expires_at: float
    auto_approve: bool = False
    note: str = ""
    used_at: float | None = None
    used_by: str | None = None


@dataclass(frozen=True)
class RunRecord:
    """A federated training run and where it stands."""

    run_id: str
    name: str
    state: str  # created | running | paused | stopped | completed | failed
    config_json: str
    participant_ids: list[str]
    created_at: float
    updated_at: float
    round: int = 0  # rounds completed
    error: str | None = None
    checkpoint_path: str | None = None  # relative to the server's data dir
    latest_metrics: dict[str, float] = field(default_factory=dict)
    #: "network" (enrolled participants) or "simulated" (the simulation runtime in the server).
    mode: str = "network"


@dataclass(frozen=True)
class RoundRow:
    """One completed round of a run: who took part, what came back, what it scored."""

    run_id: str
    round: int  # 1-based
    started_at: float
    finished_at: float
    sampled: list[str]
    reported: list[str]
    rejected: dict[str, str]  # participant id -> reason
    metrics: dict[str, float]
    attempts: int = 1
    model_id: str | None = None
    skipped: str | None = None  # why the model was left unchanged, if it was
    client_metrics: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class EventRecord:
    """Something that happened, for the operator's event stream (seq orders them)."""

    kind: str
    time: float
    run_id: str | None = None
    round: int | None = None
    participant_id: str | None = None
    state: str | None = None
    level: str = "info"
    message: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    seq: int = 0  # assigned by the store


@dataclass(frozen=True)
class ModelRecord:
    """A saved global model version (the weights live in a file under the data dir)."""

    model_id: str
    run_id: str
    round: int
    created_at: float
    path: str  # relative to the server's data dir
    sha256: str
    num_params: int
    feature_schema: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
