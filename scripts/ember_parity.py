"""Parity report: our ember-v3 extractor against the EMBER2024 reference on a folder of files.

Runs both on every regular, non-empty file under FOLDER (the reference in its own environment,
by default ``.cache/ember-ref``, built with
``python3 -m venv .cache/ember-ref && .cache/ember-ref/bin/pip install ember-cdd-wdis``) and
writes a Markdown report: per feature group, the share of files matching exactly or within the
float tolerance, then every differing column with its reason. Exit status 1 when a group the
reference can compute matches on fewer than ``--min-share`` of the files.

    .venv/bin/python scripts/ember_parity.py ~/.cache/fedmetamal/pe-corpus -o parity.md
    .venv/bin/python scripts/ember_parity.py samples/ --json parity.json --min-share 0.99
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fedmetamal.features.ember.parity import (
    DEFAULT_REFERENCE_PYTHON,
    compare,
    report_markdown,
    run_ours,
    run_reference,
)


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.stat().st_size > 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("-o", "--output", type=Path, help="Markdown report (default: stdout)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON")
    parser.add_argument("--reference-python", type=Path, default=DEFAULT_REFERENCE_PYTHON)
    parser.add_argument("--min-share", type=float, default=0.99)
    args = parser.parse_args(argv)
    if not args.reference_python.exists():
        print(f"error: no reference interpreter at {args.reference_python}", file=sys.stderr)
        return 2
    paths = _files(args.folder)
    if not paths:
        print(f"error: no files under {args.folder}", file=sys.stderr)
        return 2
    reference = run_reference(paths, args.reference_python)
    ours, _, seconds = run_ours(paths)
    results, one_sided = compare(paths, ours, reference)
    report = report_markdown(results, one_sided, len(paths))
    report += (
        f"\nSeconds on these files, one process each: ours {sum(seconds):.2f}, "
        f"reference {sum(reference.seconds):.2f}.\n"
    )
    if args.output:
        args.output.write_text(report)
    else:
        print(report, end="")
    if args.json:
        payload = {
            "files": len(paths),
            "one_sided": one_sided,
            "groups": [
                {
                    "name": r.name,
                    "computable": r.computable,
                    "files": r.files,
                    "exact": r.exact,
                    "within_tolerance": r.within_tolerance,
                    "share": r.share,
                    "differences": r.differences,
                }
                for r in results
            ],
        }
        args.json.write_text(json.dumps(payload, indent=1))
    failing = [r.name for r in results if r.computable and r.share < args.min_share]
    if failing or one_sided:
        print(f"parity below {args.min_share:.0%} in: {', '.join(failing) or 'none'}; "
              f"files only one side extracted: {len(one_sided)}", file=sys.stderr)  # fmt: skip
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
