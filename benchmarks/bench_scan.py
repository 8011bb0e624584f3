"""Scanning throughput end to end: files/s of ``fedmetamal scan``'s engine with a trained model.

Trains a small pe-header detector on ../shared/data/pe-headers (or takes ``--model``), then scans
a folder of real PE files (default: the test PE corpus) copied ``--copies`` times as hard links,
so the page cache serves every read and the figure is the engine's: hashing every byte,
extracting the headers, one onnxruntime call per batch, and (unless ``none``) the explanations.
Each explanation method is timed ``--repeat`` times in the same run; the best counts.

    .venv/bin/python benchmarks/bench_scan.py                      # the test corpus x 40
    .venv/bin/python benchmarks/bench_scan.py samples/ --copies 1 --model runs/x/model.onnx
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from fedmetamal.detect.model import load_detector
from fedmetamal.detect.scan import ScanOptions, scan_paths

DEFAULT_FOLDER = Path.home() / ".cache" / "fedmetamal" / "pe-corpus"
METHODS: tuple[str | None, ...] = ("ig", "grad-input", None)


def train_model(out: Path, rounds: int) -> Path:
    """A small pe-header detector trained on the shared pe-headers table."""
    from fedmetamal.api import simulate

    run = simulate(
        {
            "dataset": {"source": "pe-headers"},
            "partition": {"clients": 5},
            "model": {"hidden": [64]},
            "training": {"rounds": rounds},
            "evaluation": {"per_client": False},
            "output": {"dir": str(out), "name": "bench-scan"},
        }
    )
    assert run.run_dir is not None
    return Path(run.run_dir) / "model.onnx"


def replicate(folder: Path, into: Path, copies: int) -> list[Path]:
    """Every file under ``folder``, hard-linked ``copies`` times into ``into``."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    out = []
    for i in range(copies):
        for j, src in enumerate(files):
            dst = into / f"{i:03d}-{j:04d}-{src.name}"
            try:
                os.link(src, dst)
            except OSError:  # another file system: a copy serves as well
                dst.write_bytes(src.read_bytes())
            out.append(dst)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, nargs="?", default=DEFAULT_FOLDER)
    parser.add_argument("--model", type=Path, help="a model.onnx (default: train one)")
    parser.add_argument("--copies", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=10, help="training rounds of the model")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if not args.folder.is_dir():
        print(f"error: '{args.folder}' is not a folder of files to scan", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or train_model(Path(tmp) / "runs", args.rounds)
        detector = load_detector(model)
        files = replicate(args.folder, Path(tmp), args.copies)
        megabytes = sum(p.stat().st_size for p in files) / 1e6
        results = []
        for method in METHODS:
            best = float("inf")
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                done = list(scan_paths(detector, files, ScanOptions(explain=method)))
                best = min(best, time.perf_counter() - t0)
            verdicts = sorted({r.verdict.value for r in done})
            results.append({"explain": method or "none", "seconds": best, "verdicts": verdicts})
    print(f"{len(files)} files ({megabytes:.0f} MB), schema {detector.info.schema.name}, "
          f"one onnxruntime thread, best of {args.repeat}")  # fmt: skip
    print("| explanation | seconds | files/s | MB/s |")
    print("| --- | ---: | ---: | ---: |")
    for r in results:
        s = r["seconds"]
        print(f"| {r['explain']} | {s:.2f} | {len(files) / s:,.0f} | {megabytes / s:,.0f} |")
    if args.json:
        payload = {"files": len(files), "megabytes": megabytes, "results": results}
        args.json.write_text(json.dumps(payload, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
