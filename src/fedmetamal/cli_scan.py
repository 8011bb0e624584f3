"""``fedmetamal scan``: score files with an exported detector and say which look malicious.

Parsing and printing only; the work is in :mod:`fedmetamal.detect`. Exit status: 0 when no
file was found to be malware, 1 when at least one was, 2 for bad usage or input (missing or
foreign model, schema mismatch, a path that does not exist).
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from fedmetamal.cli_common import console
from fedmetamal.errors import ConfigError

#: Exit status when at least one file is judged malware.
EXIT_MALWARE = 1


class OutputFormat(StrEnum):
    table = "table"
    jsonl = "jsonl"
    csv = "csv"


class ExplainMethod(StrEnum):
    ig = "ig"
    grad_input = "grad-input"
    none = "none"


def scan(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders (scanned recursively).")],
    model: Annotated[Path, typer.Option("--model", "-m", help="Detector (model.onnx of a run).")],
    output_format: Annotated[
        OutputFormat, typer.Option("--format", "-f", help="table, jsonl or csv (on stdout).")
    ] = OutputFormat.table,
    top: Annotated[int, typer.Option(help="Top contributing features shown per file.")] = 5,
    threshold: Annotated[
        float | None,
        typer.Option(help="Malware when score >= this (default: the one stored in the model)."),
    ] = None,
    explain: Annotated[
        ExplainMethod,
        typer.Option(help="ig (integrated gradients), grad-input, or none."),
    ] = ExplainMethod.ig,
    schema: Annotated[
        str | None, typer.Option(help="Refuse the model unless it uses this feature schema.")
    ] = None,
    max_size_mb: Annotated[float, typer.Option(help="Refuse files larger than this (MB).")] = 256.0,
) -> None:
    """Scan files with a trained detector; exit 1 if any is malware, 0 if none, 2 on bad input."""
    from fedmetamal.detect import ScanOptions, Verdict, load_detector, scan_paths
    from fedmetamal.detect.report import CsvWriter, write_jsonl

    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"--threshold must lie in [0, 1], got {threshold}.", "Fix the value.")
    if top < 0 or max_size_mb <= 0:
        raise ConfigError("--top must be at least 0 and --max-size-mb positive.", "Fix the value.")
    detector = load_detector(model, expect_schema=schema)
    for notice in detector.info.notices:
        console.print(f"[yellow]note:[/] {notice}", highlight=False, soft_wrap=True)
    if explain is not ExplainMethod.none and top > 0 and not detector.explains:
        console.print(
            "[yellow]note:[/] this model has no gradient output (exported before explanations); "
            "no top features. Re-export it to get them.",
            highlight=False,
        )
    options = ScanOptions(
        threshold=threshold,
        top=top,
        explain=None if explain is ExplainMethod.none else explain.value,  # type: ignore[arg-type]
        max_bytes=int(max_size_mb * 1024 * 1024),
    )
    counts: Counter[str] = Counter()
    started = time.perf_counter()
    results = []
    csv_out = CsvWriter(sys.stdout) if output_format is OutputFormat.csv else None
    for result in scan_paths(detector, paths, options):
        counts[result.verdict.value] += 1
        if output_format is OutputFormat.jsonl:
            write_jsonl(result, sys.stdout)
        elif csv_out is not None:
            csv_out.write(result)
        else:
            results.append(result)
    seconds = time.perf_counter() - started
    if output_format is OutputFormat.table:
        Console(soft_wrap=False).print(_table(results))
    _summary(counts, seconds, detector.info.threshold if threshold is None else threshold)
    if counts[Verdict.MALWARE.value]:
        # not typer.Exit: the entry point runs click with standalone_mode=False, which turns
        # Exit into a return value and would lose the status
        raise SystemExit(EXIT_MALWARE)


def _table(results: list) -> Table:  # list[ScanResult]; untyped so detect imports lazily
    """Verdict, score and file, then one details cell: type, top features, warnings/reason."""
    table = Table(title="scan results", title_justify="left")
    table.add_column("verdict", no_wrap=True)
    table.add_column("score", justify="right", no_wrap=True)
    table.add_column("file", overflow="fold")
    table.add_column("details", overflow="fold")
    style = {"malware": "bold red", "benign": "green", "not a PE file": "dim", "error": "yellow"}
    for r in results:
        lines = [r.file_type]
        if r.top:
            lines.append(", ".join(f"{c.feature} {c.contribution:+.2g}" for c in r.top))
        lines += [f"[yellow]{w}[/]" for w in r.warnings]
        if r.reason and r.verdict.value == "error":
            lines.append(r.reason)
        table.add_row(
            f"[{style[r.verdict.value]}]{r.verdict.value}[/]",
            "" if r.score is None else f"{r.score:.4f}",
            r.path,
            "\n".join(lines),
        )
    return table


def _summary(counts: Counter[str], seconds: float, threshold: float) -> None:
    total = sum(counts.values())
    parts = ", ".join(f"{n} {v}" for v, n in counts.most_common())
    rate = total / seconds if seconds > 0 else 0.0
    console.print(
        f"{total} files ({parts or 'none'}) in {seconds:.2f} s ({rate:,.0f} files/s); "
        f"threshold {threshold:.4g}",
        highlight=False,
    )
