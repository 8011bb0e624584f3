"""What a suite directory holds and how its runs' directories are named.

The runner writes this layout and two readers read it (the runner itself on resume, the results
reader for tables and reports); the names they must agree on are kept here.
"""

from __future__ import annotations

import glob
import re
from pathlib import Path

#: The suite directory layout version written to (and required in) ``manifest.json``.
SUITE_FORMAT = "fedmetamal-suite/1"

#: The replicate axis: tables aggregate over it (mean ± std).
SEED_AXIS = "seed"

#: Errors that stop a run without failing it: such a run is redone on resume.
INTERRUPTS = frozenset({"KeyboardInterrupt", "SystemExit"})

_FAILED_SUFFIX = re.compile(r"\.failed(-\d+)?")


def failed_dirs(runs_dir: Path, run_id: str) -> list[Path]:
    """The ``<run_id>.failed`` and ``<run_id>.failed-N`` directories, oldest first.

    A run that failed several times has several; the last one says why it failed most recently.
    """
    found = [
        p
        for p in runs_dir.glob(glob.escape(run_id) + ".failed*")
        if p.is_dir() and _FAILED_SUFFIX.fullmatch(p.name[len(run_id) :])
    ]
    return sorted(found, key=lambda p: (p.stat().st_mtime, p.name))
