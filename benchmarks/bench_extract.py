"""ember-v3 extraction throughput: our extractor against the EMBER2024 reference.

Both extract every non-empty file under FOLDER (default: the test PE corpus) in the same run;
the reference runs in its own environment (``.cache/ember-ref``).

* One core: one process each, pinned to one CPU with ``OMP_NUM_THREADS=1``, each side timed per
  file around extraction only (file read included for the reference, mapping for ours;
  interpreter start and imports excluded), repeated ``--repeat`` times; the best total counts.
* All cores: ours through the worker pool of ``fedmetamal extract --jobs N`` (N = the CPUs this
  process may use), the reference as N interpreters on N slices of the files; wall time of the
  whole thing, start-up included, best of ``--repeat``.

Target (issue 6): ours >= 3x the reference's files/s on one core, with the parity of
``scripts/ember_parity.py``.

    .venv/bin/python benchmarks/bench_extract.py                      # the test corpus
    .venv/bin/python benchmarks/bench_extract.py samples/ --repeat 3 --json extract.json
"""

from __future__ import annotations

import os

os.environ["OMP_NUM_THREADS"] = "1"

import argparse
import json
import platform
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fedmetamal.features.ember.parity import DEFAULT_REFERENCE_PYTHON, run_ours, run_reference
from fedmetamal.features.schema import get_schema
from fedmetamal.features.worker_pool import WorkerPool

DEFAULT_FOLDER = Path.home() / ".cache" / "fedmetamal" / "pe-corpus"


def _pin_one_core() -> None:
    """Keep this process (and the reference it starts) on one CPU, where the OS allows it."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


def all_cores(paths: list[Path], jobs: int, reference: Path | None) -> tuple[float, float | None]:
    """Wall seconds of ours (worker pool) and of the reference (``jobs`` interpreters)."""
    t0 = time.perf_counter()
    pool = WorkerPool(jobs, get_schema("ember-v3"), max_bytes=1 << 31, timeout_s=120.0)
    records = list(pool.run([(str(p), str(p)) for p in paths]))
    ours = time.perf_counter() - t0
    assert len(records) == len(paths)
    if reference is None:
        return ours, None
    slices = [paths[i::jobs] for i in range(jobs)]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(jobs) as ex:
        list(ex.map(lambda part: run_reference(part, reference), slices))
    return ours, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, nargs="?", default=DEFAULT_FOLDER)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--reference-python", type=Path, default=DEFAULT_REFERENCE_PYTHON)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    paths = sorted(p for p in args.folder.rglob("*") if p.is_file() and p.stat().st_size > 0)
    if not paths:
        print(f"error: no files under {args.folder}", file=sys.stderr)
        return 2
    megabytes = sum(p.stat().st_size for p in paths) / 1e6
    have_reference = args.reference_python.exists()
    jobs = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    jobs = max(1, jobs or 1)
    par_ours, par_ref = float("inf"), float("inf")
    for _ in range(args.repeat):  # before pinning: the pool and the slices use every core
        o, r = all_cores(paths, jobs, args.reference_python if have_reference else None)
        par_ours, par_ref = min(par_ours, o), min(par_ref, r if r is not None else par_ref)
    _pin_one_core()
    ours_best, ref_best = float("inf"), float("inf")
    for _ in range(args.repeat):
        ours_best = min(ours_best, sum(run_ours(paths)[2]))
        if have_reference:
            ref_best = min(ref_best, sum(run_reference(paths, args.reference_python).seconds))
    rows = [("ours (fedmetamal ember-v3)", ours_best)]
    if have_reference:
        rows.append(("reference (ember-cdd-wdis 1.2.1)", ref_best))
    print(f"{len(paths)} files, {megabytes:.1f} MB, one core, best of {args.repeat}")
    print(f"CPU: {platform.processor() or platform.machine()}, Python {platform.python_version()}")
    print("| extractor | seconds | files/s | MB/s |")
    print("| --- | ---: | ---: | ---: |")
    for name, seconds in rows:
        print(
            f"| {name} | {seconds:.2f} | {len(paths) / seconds:.1f} | {megabytes / seconds:.2f} |"
        )
    speedup = ref_best / ours_best if have_reference else None
    if speedup is not None:
        print(f"speed-up in files/s: {speedup:.1f}x (target >= 3x)")
    else:
        print(f"reference not found at {args.reference_python}: ours only")
    print(f"\nAll {jobs} cores, wall time with start-up, best of {args.repeat}:")
    print("| extractor | seconds | files/s | MB/s |")
    print("| --- | ---: | ---: | ---: |")
    par_rows = [("ours (worker pool)", par_ours)]
    if have_reference:
        par_rows.append((f"reference ({jobs} processes)", par_ref))
    for name, seconds in par_rows:
        print(
            f"| {name} | {seconds:.2f} | {len(paths) / seconds:.1f} | {megabytes / seconds:.2f} |"
        )
    if args.json:
        payload = {
            "files": len(paths),
            "megabytes": megabytes,
            "ours_seconds": ours_best,
            "reference_seconds": ref_best if have_reference else None,
            "speedup": speedup,
            "all_cores": {
                "jobs": jobs,
                "ours_seconds": par_ours,
                "reference_seconds": par_ref if have_reference else None,
            },
        }
        args.json.write_text(json.dumps(payload, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
