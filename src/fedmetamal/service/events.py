"""Run and participant events: stored for replay, pushed live to every watcher.

Watchers (``ControlService.WatchRun``, later the dashboard) first replay stored events after the
sequence number they last saw, then receive new ones as they happen, so a reloaded page refills
and a live one misses nothing. Events may be published from any thread; watchers live on the
server's event loop.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from fedmetamal.errors import ConfigError
from fedmetamal.service.records import EventRecord
from fedmetamal.service.store import Store

#: Events a slow watcher may fall behind by before its stream is closed (it can reconnect and
#: replay from its last sequence number).
WATCH_BACKLOG = 10_000
#: Run states after which a run's watch stream ends.
FINAL_RUN_STATES = frozenset({"completed", "failed", "stopped"})


#: Events in one ListEvents page: the default, and the most a caller may ask for.
LIST_DEFAULT = 200
LIST_MAX = 1000
#: Kinds one ListEvents call may filter on, and what a kind looks like.
LIST_MAX_KINDS = 32
_KIND = re.compile(r"[a-z][a-z0-9_]{0,63}")
#: The databases' largest integer: a larger before_seq means "from the newest".
_MAX_SEQ = 2**63 - 1


@dataclass(frozen=True)
class EventPage:
    """One page of stored events, newest first; ``has_more``: older ones match too."""

    events: list[EventRecord]
    has_more: bool


def list_events(
    store: Store,
    run_id: str = "",
    before_seq: int = 0,
    limit: int = 0,
    kinds: Sequence[str] = (),
) -> EventPage:
    """A page of a log's history, so a reloaded page shows what happened before it opened.

    ``run_id`` "" lists every event; ``before_seq`` 0 starts at the newest, otherwise only
    older events come back (page back with the oldest seq seen). Raises ConfigError for a bad
    limit or kind, NotFound for an unknown run.
    """
    if limit < 0 or limit > LIST_MAX:
        raise ConfigError(
            f"limit must be at most {LIST_MAX} events (0: {LIST_DEFAULT}), not {limit}.",
            "Page back with before_seq to see more.",
        )
    if len(kinds) > LIST_MAX_KINDS:
        raise ConfigError(
            f"At most {LIST_MAX_KINDS} kinds may be filtered on, not {len(kinds)}.",
            "Leave kinds empty to list every kind.",
        )
    for kind in kinds:
        if not _KIND.fullmatch(kind):
            raise ConfigError(
                f"{kind[:70]!r} is not an event kind.",
                "Kinds are lower-case names such as round_finished or participant_state.",
            )
    if run_id:
        store.get_run(run_id)  # NotFound, with the fix, for an unknown run
    n = limit or LIST_DEFAULT
    before = min(before_seq, _MAX_SEQ) if before_seq > 0 else None
    found = store.events_before(before, run_id or None, n + 1, sorted(set(kinds)))
    return EventPage(found[:n], len(found) > n)


class WatcherTooSlow(Exception):
    """A watcher's queue overflowed; it should reconnect with ``after_seq``."""


class EventBus:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queues: set[asyncio.Queue[EventRecord | None]] = set()

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    @property
    def watchers(self) -> int:
        return len(self._queues)

    def publish(
        self,
        kind: str,
        message: str = "",
        *,
        run_id: str | None = None,
        round: int | None = None,
        participant_id: str | None = None,
        state: str | None = None,
        level: str = "info",
        metrics: dict[str, float] | None = None,
    ) -> EventRecord:
        """Store an event and hand it to every watcher (in sequence order)."""
        ev = EventRecord(
            kind=kind,
            time=time.time(),
            run_id=run_id,
            round=round,
            participant_id=participant_id,
            state=state,
            level=level,
            message=message,
            metrics=dict(metrics or {}),
        )
        with self._lock:  # one publisher at a time: watchers see sequence numbers in order
            stored = self.store.add_event(ev)
            loop = self._loop
            if loop is not None and self._queues and not loop.is_closed():
                loop.call_soon_threadsafe(self._dispatch, stored)
        return stored

    def _dispatch(self, ev: EventRecord) -> None:
        for q in list(self._queues):
            try:
                q.put_nowait(ev)
            except asyncio.QueueFull:
                self._queues.discard(q)
                q._queue.clear()  # type: ignore[attr-defined]  # make room for the end marker
                q.put_nowait(None)

    async def watch(self, run_id: str | None, after_seq: int = 0) -> AsyncIterator[EventRecord]:
        """Stored events after ``after_seq``, then live ones; for one run, until it ends."""
        q: asyncio.Queue[EventRecord | None] = asyncio.Queue(WATCH_BACKLOG)
        self._queues.add(q)  # subscribe before replaying: nothing falls between the two
        try:
            last = after_seq
            while True:
                page = await asyncio.to_thread(self.store.events_after, last, run_id, 1000)
                for ev in page:
                    last = ev.seq
                    yield ev
                    if _ends_run(ev, run_id):
                        return
                if len(page) < 1000:
                    break
            if run_id and self.store.get_run(run_id).state in FINAL_RUN_STATES:
                return
            while True:
                ev = await q.get()
                if ev is None:
                    raise WatcherTooSlow(
                        f"the watcher fell {WATCH_BACKLOG} events behind; reconnect with "
                        f"after_seq={last}"
                    )
                if ev.seq <= last or (run_id and ev.run_id != run_id):
                    continue
                last = ev.seq
                yield ev
                if _ends_run(ev, run_id):
                    return
        finally:
            self._queues.discard(q)


def _ends_run(ev: EventRecord, run_id: str | None) -> bool:
    return bool(run_id) and ev.kind == "run_state" and ev.state in FINAL_RUN_STATES
