"""A run's life, the same for every kind of run engine (network or simulated): prepare, play
rounds until done, pause / resume / stop between rounds, and record how the run ended.

An engine supplies ``_prepare`` (build or restore round 0), ``_rounds_done`` and ``_round``;
this class owns the states the dashboard and the CLI see (paused, running, stopped,
completed, failed with its reason).
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

from fedmetamal.errors import FedMetaMalError

if TYPE_CHECKING:
    from fedmetamal.config import RunConfig
    from fedmetamal.service.server_core import ServerCore

logger = logging.getLogger(__name__)


class RunControl(ABC):
    """The round loop with pause/resume/stop; ``_stop`` is also checked inside rounds."""

    core: ServerCore
    run_id: str
    cfg: RunConfig

    def __init__(self) -> None:
        self._resume = asyncio.Event()
        self._resume.set()
        self._stop = False

    def pause(self) -> None:
        self._resume.clear()

    def resume(self) -> None:
        self._resume.set()

    def stop(self) -> None:
        self._stop = True
        self._resume.set()

    @abstractmethod
    async def _prepare(self) -> None:
        """Everything before round one (or the restored round after a restart)."""

    @abstractmethod
    def _rounds_done(self) -> int:
        """Rounds completed so far (the next round to play)."""

    @abstractmethod
    async def _round(self, r: int) -> None:
        """Play round ``r`` to its end."""

    def _finally(self) -> None:
        """Clean-up however the run ended (an engine may hand out tasks to withdraw)."""
        return None

    async def run(self) -> None:
        """The whole run; ends with its final state recorded, whatever happened."""
        core = self.core
        try:
            await self._prepare()
            rounds = self.cfg.training.rounds
            while self._rounds_done() < rounds and not self._stop:
                if not self._resume.is_set():
                    done = self._rounds_done()
                    core.set_run_state(self.run_id, "paused", f"paused after round {done}")
                    await self._resume.wait()
                    if self._stop:
                        break
                    core.set_run_state(self.run_id, "running", "resumed")
                await self._round(self._rounds_done())
            if self._stop:
                done = self._rounds_done()
                core.set_run_state(self.run_id, "stopped", f"stopped after round {done}")
            else:
                core.set_run_state(self.run_id, "completed", f"completed {rounds} rounds")
        except asyncio.CancelledError:
            raise
        except FedMetaMalError as err:
            core.set_run_state(self.run_id, "failed", str(err), error=str(err))
        except Exception as err:  # a bug: keep the server up, record the run as failed
            logger.exception("run %s failed", self.run_id)
            why = f"internal error: {err!r}"
            core.set_run_state(self.run_id, "failed", why, error=why)
        finally:
            self._finally()
