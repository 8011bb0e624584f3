"""``fedmetamal extract`` without the terminal: walk a folder, extract, label, deduplicate, write.

A run is resumable: files already in the output (by path) or in the errors sidecar are skipped,
and partial results are written every ``checkpoint`` files, atomically, so an interrupted run
loses at most one checkpoint's work. Files with the same SHA-256 are written once (the first
path in sorted order); the others are listed in the sidecar as duplicates. Every file that gives
no row is in the sidecar with its reason, so nothing is silently lost.
"""

from __future__ import annotations

import csv
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedmetamal.errors import DataError
from fedmetamal.features.dataset_file import arrow_schema, read_rows, write_rows
from fedmetamal.features.extract_file import DEFAULT_MAX_BYTES, extract_file
from fedmetamal.features.labels import FolderLabels, LabelSource
from fedmetamal.features.outcome import Failure, FileRecord, Row
from fedmetamal.features.schema import FeatureSchema
from fedmetamal.features.worker_pool import Item, WorkerPool

SIDECAR_COLUMNS = ("path", "size", "sha256", "reason")
DUPLICATE = "duplicate"


@dataclass
class ExtractOptions:
    """What to extract, from where, into which file, and the per-file bounds."""

    root: Path
    output: Path
    schema: FeatureSchema
    labels: LabelSource = field(default_factory=FolderLabels)
    jobs: int = 1
    max_bytes: int = DEFAULT_MAX_BYTES
    timeout_s: float = 30.0
    checkpoint: int = 1000


@dataclass
class ExtractSummary:
    """What a run did, for the summary table and for tests."""

    output: Path
    errors_path: Path
    found: int = 0
    resumed: int = 0
    written: int = 0
    duplicates: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)
    labels: Counter[int] = field(default_factory=Counter)
    seconds: float = 0.0
    bytes_read: int = 0

    @property
    def processed(self) -> int:
        return self.written + self.duplicates + sum(self.failures.values())


def errors_path_for(output: Path) -> Path:
    """``data.parquet`` -> ``data.errors.csv``, beside the output."""
    return output.with_name(output.with_suffix("").name + ".errors.csv")


def _walk(root: Path, skip: set[Path]) -> Iterator[tuple[Item, bool]]:
    """(absolute, relative posix) for every file under ``root``, sorted; flag is 'is a symlink'."""
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            path = Path(folder) / name
            if path in skip or name.endswith(".partial"):
                continue
            yield (str(path), path.relative_to(root).as_posix()), path.is_symlink()


def _read_sidecar(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"Errors file '{path}' cannot be read ({err}).", "Delete it.") from None


def _write_sidecar(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_name(path.name + ".partial")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=SIDECAR_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)


class _Collector:
    """Accumulates rows and error records, deduplicating by SHA-256 deterministically."""

    def __init__(self, opts: ExtractOptions, summary: ExtractSummary) -> None:
        self.opts = opts
        self.summary = summary
        self.old_rows: list[dict[str, Any]] = []
        self.first_seen = opts.labels.has_first_seen
        if opts.output.exists():
            self.old_rows, had_first_seen = read_rows(opts.output, opts.schema)
            self.first_seen = self.first_seen or had_first_seen
        self.old_errors = _read_sidecar(summary.errors_path)
        self.kept: dict[str, dict[str, Any]] = {}  # sha256 -> row, for this run
        self.old_sha = {r["sha256"]: r["path"] for r in self.old_rows}
        self.new_errors: list[dict[str, Any]] = []
        self.dupes: list[tuple[dict[str, Any], str]] = []  # (file, why it was not written)

    def done_paths(self) -> set[str]:
        return {r["path"] for r in self.old_rows} | {r["path"] for r in self.old_errors}

    def add(self, record: FileRecord) -> None:
        base = {"path": record.path, "size": record.size, "sha256": record.sha256}
        if isinstance(record.outcome, Failure):
            self.new_errors.append({**base, "reason": record.outcome.reason})
            kind = record.outcome.kind
            self.summary.failures[kind] += 1
            self.summary.examples.setdefault(kind, record.outcome.reason)
            return
        assert isinstance(record.outcome, Row) and record.sha256 is not None
        label = self.opts.labels.lookup(record.path, record.sha256)
        values = zip(self.opts.schema.columns, record.outcome.values, strict=True)
        row = {"label": label.value, **dict(values)}
        row.update(base, family=label.family, warnings="; ".join(record.outcome.warnings))
        if self.first_seen:
            row["first_seen"] = label.first_seen
        if record.sha256 in self.old_sha:
            self.dupes.append((base, f"same sha256 as {self.old_sha[record.sha256]}"))
        elif record.sha256 in self.kept:
            first, second = sorted([self.kept[record.sha256], row], key=lambda r: r["path"])
            self.kept[record.sha256] = first
            why = f"same sha256 as {first['path']}"
            if first["label"] != second["label"]:
                why += f" (labels differ: {second['label']} here, {first['label']} kept)"
            self.dupes.append(({k: second[k] for k in base}, why))
        else:
            self.kept[record.sha256] = row
            self.summary.labels[label.value] += 1
            self.summary.written += 1
            return
        self.summary.duplicates += 1

    def flush(self) -> None:
        """Write the output and the sidecar as they stand now (atomically)."""
        layout = arrow_schema(self.opts.schema, self.first_seen)
        new = sorted(self.kept.values(), key=lambda r: r["path"])
        if self.first_seen:
            for r in self.old_rows:
                r.setdefault("first_seen", None)
        write_rows(self.opts.output, self.old_rows + new, layout)
        dupes = [
            {**d, "reason": f"{DUPLICATE}: {why}"}
            for d, why in sorted(self.dupes, key=lambda x: x[0]["path"])
        ]
        errors = self.old_errors + sorted(self.new_errors, key=lambda r: r["path"]) + dupes
        _write_sidecar(self.summary.errors_path, errors)


def _records(opts: ExtractOptions, items: list[Item]) -> Iterator[FileRecord]:
    if opts.jobs <= 1:
        for path, shown in items:
            yield extract_file(path, opts.schema, opts.max_bytes, shown)
    else:
        pool = WorkerPool(opts.jobs, opts.schema, opts.max_bytes, opts.timeout_s)
        yield from pool.run(items)


def run_extract(
    opts: ExtractOptions,
    on_start: Callable[[int], None] = lambda total: None,
    on_file: Callable[[FileRecord], None] = lambda record: None,
) -> ExtractSummary:
    """Extract every file under ``opts.root`` into ``opts.output``; see the module docstring."""
    if not opts.root.is_dir():
        raise DataError(
            f"'{opts.root}' is not a folder."
            if opts.root.exists()
            else f"'{opts.root}' does not exist.",
            "Pass the folder that holds the PE files.",
        )
    output = opts.output.resolve()
    opts.output = output
    output.parent.mkdir(parents=True, exist_ok=True)
    summary = ExtractSummary(output=output, errors_path=errors_path_for(output))
    collector = _Collector(opts, summary)
    done = collector.done_paths()
    skip = {output, summary.errors_path}
    items: list[Item] = []
    for item, is_link in _walk(opts.root.resolve(), skip):
        summary.found += 1
        if item[1] in done:
            summary.resumed += 1
        elif is_link:
            collector.add(FileRecord(item[1], 0, None, Failure("symbolic link: not followed")))
        else:
            items.append(item)
    on_start(len(items))
    start = time.perf_counter()
    try:
        for n, record in enumerate(_records(opts, items), start=1):
            collector.add(record)
            summary.bytes_read += record.size if record.sha256 else 0
            on_file(record)
            if n % opts.checkpoint == 0:
                collector.flush()
    finally:
        summary.seconds = time.perf_counter() - start
        collector.flush()
    return summary
