"""Scan results as records for machines: one JSON object per line, or CSV rows.

Both formats carry the same fields. In CSV, warnings are joined with ``"; "`` and the top
features become ``name=+0.1234`` items joined with ``"; "``, so a spreadsheet shows them in one
cell; JSON lines keep them as lists.
"""

from __future__ import annotations

import csv
import json
from typing import Any, TextIO

from fedmetamal.detect.scan import ScanResult

FIELDS = (
    "path",
    "verdict",
    "score",
    "threshold",
    "file_type",
    "sha256",
    "size",
    "reason",
    "warnings",
    "top_features",
)


def as_record(result: ScanResult) -> dict[str, Any]:
    """The JSON-ready fields of one result."""
    return {
        "path": result.path,
        "verdict": result.verdict.value,
        "score": result.score,
        "threshold": result.threshold,
        "file_type": result.file_type,
        "sha256": result.sha256,
        "size": result.size,
        "reason": result.reason,
        "warnings": list(result.warnings),
        "top_features": [
            {"feature": c.feature, "value": c.value, "contribution": c.contribution}
            for c in result.top
        ],
    }


def write_jsonl(result: ScanResult, out: TextIO) -> None:
    out.write(json.dumps(as_record(result)) + "\n")


class CsvWriter:
    """Writes the header once, then one row per result."""

    def __init__(self, out: TextIO) -> None:
        self._writer = csv.DictWriter(out, fieldnames=FIELDS, lineterminator="\n")
        self._writer.writeheader()

    def write(self, result: ScanResult) -> None:
        record = as_record(result)
        record["warnings"] = "; ".join(result.warnings)
        record["top_features"] = "; ".join(f"{c.feature}={c.contribution:+.4g}" for c in result.top)
        record["score"] = "" if result.score is None else f"{result.score:.6g}"
        record["threshold"] = "" if result.threshold is None else f"{result.threshold:.6g}"
        self._writer.writerow({k: "" if v is None else v for k, v in record.items()})
