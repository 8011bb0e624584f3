"""``fedmetamal extract``: a folder of PE files -> a labelled dataset file, with progress.

Parsing and printing only; the work is in :mod:`fedmetamal.features.extract_run`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated

import typer

from fedmetamal.cli_common import console, progress_bar, titled_table
from fedmetamal.errors import ConfigError


def extract(
    directory: Annotated[Path, typer.Argument(help="Folder of files to extract (recursive).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Dataset file to write.")],
    schema: Annotated[str, typer.Option(help="Feature schema (pe-header).")] = "pe-header",
    labels: Annotated[
        Path | None,
        typer.Option(
            help="CSV with label (benign/malware/0/1) and sha256 or path; optional family, "
            "first_seen. Without it, labels come from benign/ and malware/<family>/ folders."
        ),
    ] = None,
    jobs: Annotated[
        int, typer.Option("--jobs", "-j", help="Worker processes (0: one per core).")
    ] = 1,
    max_size_mb: Annotated[float, typer.Option(help="Refuse files larger than this (MB).")] = 256.0,
    timeout: Annotated[
        float, typer.Option(help="Seconds one file may take (with --jobs > 1).")
    ] = 30.0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Extract features from every file under DIRECTORY into a dataset for `simulate`."""
    from fedmetamal.features.extract_run import ExtractOptions, run_extract
    from fedmetamal.features.labels import CsvLabels, FolderLabels
    from fedmetamal.features.schema import get_schema

    if max_size_mb <= 0 or timeout <= 0 or jobs < 0:
        raise ConfigError(
            "--max-size-mb and --timeout must be positive and --jobs at least 0.",
            "Fix the option values.",
        )
    label_source = CsvLabels.read(labels, directory) if labels else FolderLabels()
    opts = ExtractOptions(
        root=directory,
        output=output,
        schema=get_schema(schema),
        labels=label_source,
        jobs=jobs or (os.cpu_count() or 1),
        max_bytes=int(max_size_mb * 1024 * 1024),
        timeout_s=timeout,
    )
    bar = progress_bar(console, "files", disable=quiet)
    task = bar.add_task("extracting", total=None, latest="", start=False)
    started = time.perf_counter()

    def on_start(total: int) -> None:
        """Show the bar only once the inputs are checked, so errors print alone."""
        nonlocal started
        bar.start()
        bar.start_task(task)
        bar.update(task, total=total)
        started = time.perf_counter()

    def on_file(record: object) -> None:
        bar.advance(task)
        rate = bar.tasks[0].completed / max(time.perf_counter() - started, 1e-9)
        bar.update(task, latest=f"{rate:,.0f} files/s")

    try:
        summary = run_extract(opts, on_start=on_start, on_file=on_file)
    finally:
        bar.stop()
    rate = summary.processed / summary.seconds if summary.seconds > 0 else 0.0
    counts = ", ".join(
        f"{summary.labels[v]} {name}"
        for v, name in ((1, "malware"), (0, "benign"), (-1, "unlabelled"))
    )
    console.print(
        f"{summary.written} rows written to {summary.output} ({counts}); "
        f"{summary.processed} files in {summary.seconds:.1f} s ({rate:,.0f} files/s)"
        + (f"; {summary.resumed} already done, skipped" if summary.resumed else "")
        + (f"; {summary.duplicates} duplicates" if summary.duplicates else "")
    )
    if summary.failures:
        table = titled_table("files without a row", ["reason", "files", "example"], ["files"])
        for kind, n in summary.failures.most_common():
            table.add_row(kind, str(n), summary.examples[kind])
        console.print(table)
    if summary.failures or summary.duplicates:
        console.print(f"every file without a row is listed in {summary.errors_path}")
