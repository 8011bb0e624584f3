"""Experiment suites: a grid of run configurations, run (and resumed) as one study, then turned
into tables, figures and a report.

``load_suite`` reads and validates a suite file, ``run_suite`` runs it, ``build_report`` writes
the report of a suite directory. They are imported lazily so that ``import fedmetamal`` stays
light and ``experiments`` modules do not pull in each other's dependencies.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "load_suite": "fedmetamal.experiments.suite",
    "run_suite": "fedmetamal.experiments.runner",
    "suite_status": "fedmetamal.experiments.runner",
    "build_report": "fedmetamal.experiments.report",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        from importlib import import_module

        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'fedmetamal.experiments' has no attribute '{name}'")
