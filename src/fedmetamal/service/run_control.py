"""Pause, resume and stop, the same for every kind of run engine (network or simulated)."""

from __future__ import annotations

import asyncio


class RunControl:
    """An engine checks ``_resume`` between rounds and ``_stop`` wherever it may end early."""

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
