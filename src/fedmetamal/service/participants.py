"""Who the participants are, whether they may take part, and whether they are online.

Approval state, keys and dataset summaries live in the store. Presence (last heartbeat, what a
participant is doing) changes every few seconds per participant, so it is kept in memory and
written to the store in one transaction per sweep; a participant silent for longer than the
heartbeat timeout is marked offline, with an event.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, replace
from typing import Any

from fedmetamal.errors import FedMetaMalError
from fedmetamal.service.events import EventBus
from fedmetamal.service.records import ParticipantRecord
from fedmetamal.service.store import Store, TokenRefused

PENDING, APPROVED, REVOKED = "pending", "approved", "revoked"


class EnrollmentRefused(FedMetaMalError):
    """A join token that cannot be used; the message says why."""


@dataclass
class Presence:
    last_seen: float
    activity: str = "idle"
    task_id: str = ""
    progress: float = 0.0
    online: bool = True


@dataclass(frozen=True)
class ParticipantView:
    """A participant as the operator sees it: stored record plus live presence."""

    record: ParticipantRecord
    online: bool
    activity: str
    last_seen: float | None


class ParticipantRegistry:
    def __init__(
        self, store: Store, bus: EventBus, heartbeat_timeout_s: float, auto_approve: bool = False
    ) -> None:
        self.store = store
        self.bus = bus
        self.timeout = heartbeat_timeout_s
        self.auto_approve = auto_approve
        self._presence: dict[str, Presence] = {}
        self._records: dict[str, ParticipantRecord] = {
            p.participant_id: p for p in store.list_participants()
        }

    # -- enrollment and approval -----------------------------------------------------------
    def enroll(
        self, token_hash: str, name: str, public_key: bytes, platform: str, now: float
    ) -> ParticipantRecord:
        participant_id = f"p-{uuid.uuid4().hex[:12]}"
        try:
            token = self.store.consume_token(token_hash, now, participant_id)
        except TokenRefused as err:
            why = {
                "unknown": "is not a token this server issued",
                "used": "was already used (join tokens are single-use)",
                "expired": "has expired",
            }.get(err.reason, err.reason)
            raise EnrollmentRefused(
                f"The join token {why}.",
                "Ask the operator for a new one (fedmetamal token create).",
            ) from None
        state = APPROVED if (token.auto_approve or self.auto_approve) else PENDING
        rec = ParticipantRecord(
            participant_id=participant_id,
            name=name or participant_id,
            public_key=public_key,
            state=state,
            platform=platform,
            enrolled_at=now,
            last_seen=now,
        )
        self.store.add_participant(rec)
        self._records[participant_id] = rec
        self._presence[participant_id] = Presence(now)
        self.bus.publish(
            "participant_state",
            f"{rec.name} enrolled ({state})",
            participant_id=participant_id,
            state=state,
        )
        return rec

    def get(self, participant_id: str) -> ParticipantRecord | None:
        rec = self._records.get(participant_id)
        if rec is None:
            rec = self.store.get_participant(participant_id)
            if rec is not None:
                self._records[participant_id] = rec
        return rec

    def public_key(self, participant_id: str) -> bytes | None:
        rec = self.get(participant_id)
        return rec.public_key if rec is not None else None

    def set_state(self, participant_id: str, state: str) -> ParticipantRecord:
        rec = self.store.set_participant_state(participant_id, state)
        self._records[participant_id] = rec
        self.bus.publish(
            "participant_state",
            f"{rec.name} {state}",
            participant_id=participant_id,
            state=state,
        )
        return rec

    def set_summary(
        self, participant_id: str, summary: dict[str, Any], feature_sums: bytes | None
    ) -> None:
        self.store.set_participant_summary(participant_id, summary, feature_sums)
        rec = self._records.get(participant_id)
        if rec is not None:
            self._records[participant_id] = replace(rec, summary=summary, feature_sums=feature_sums)

    # -- presence --------------------------------------------------------------------------
    def seen(
        self,
        participant_id: str,
        now: float,
        activity: str | None = None,
        task_id: str = "",
        progress: float = 0.0,
    ) -> None:
        """Any authenticated call counts as a sign of life; heartbeats also say what it does."""
        p = self._presence.get(participant_id)
        came_back = p is None or not p.online
        if p is None:
            p = self._presence[participant_id] = Presence(now)
        p.last_seen, p.online = now, True
        if activity is not None:
            p.activity, p.task_id, p.progress = activity, task_id, progress
        if came_back:
            rec = self.get(participant_id)
            self.bus.publish(
                "participant_state",
                f"{rec.name if rec else participant_id} online",
                participant_id=participant_id,
                state="online",
            )

    def is_online(self, participant_id: str, now: float | None = None) -> bool:
        p = self._presence.get(participant_id)
        if p is None or not p.online:
            return False
        return (now or time.time()) - p.last_seen <= self.timeout

    def can_train(self, participant_id: str, now: float | None = None) -> bool:
        rec = self.get(participant_id)
        return rec is not None and rec.state == APPROVED and self.is_online(participant_id, now)

    def sweep(self, now: float) -> list[str]:
        """Mark silent participants offline (with an event) and store last-seen times."""
        gone = []
        for pid, p in self._presence.items():
            if p.online and now - p.last_seen > self.timeout:
                p.online, p.activity = False, "offline"
                gone.append(pid)
                rec = self.get(pid)
                self.bus.publish(
                    "participant_state",
                    f"{rec.name if rec else pid} offline (no heartbeat for "
                    f"{now - p.last_seen:.0f} s)",
                    participant_id=pid,
                    state="offline",
                    level="warning",
                )
        if self._presence:
            self.store.touch_participants({pid: p.last_seen for pid, p in self._presence.items()})
        return gone

    def views(self) -> list[ParticipantView]:
        now = time.time()
        out = []
        for rec in self.store.list_participants():
            self._records[rec.participant_id] = rec
            p = self._presence.get(rec.participant_id)
            online = self.is_online(rec.participant_id, now)
            out.append(
                ParticipantView(
                    rec,
                    online,
                    (p.activity if p and online else "offline"),
                    p.last_seen if p else rec.last_seen,
                )
            )
        return out

    def online_count(self) -> int:
        now = time.time()
        return sum(self.is_online(pid, now) for pid in self._presence)
