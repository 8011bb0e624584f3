"""Scanning: paths -> files -> schema rows -> scores, verdicts and explanations, in input order.

Files are extracted one at a time with :func:`fedmetamal.features.extract_file.extract_file`
(bounded reads, never raises) and scored in batches, so the model runs once per batch rather
than per file. A file the schema's extractor rejects as not PE is reported as such and never
scored: a model trained on PE headers says nothing about a PDF.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import numpy as np

from fedmetamal.detect.explain import (
    Contribution,
    Method,
    grad_input,
    integrated_gradients,
    top_contributions,
)
from fedmetamal.detect.model import Detector
from fedmetamal.errors import DataError
from fedmetamal.features.extract_file import DEFAULT_MAX_BYTES, extract_file
from fedmetamal.features.outcome import FileRecord, Row
from fedmetamal.features.schema import FeatureSchema

#: Failure kinds (text before the colon) that mean "this is not a PE file", not "it broke".
NOT_PE_KINDS = frozenset({"not a PE file", "empty file"})
NOT_PE_PREFIX = "not a PE file"
_DLL_FLAG = 0x2000
_PE32_PLUS = 0x20B


class Verdict(StrEnum):
    """What a scan says about one file."""

    MALWARE = "malware"
    BENIGN = "benign"
    NOT_PE = "not a PE file"
    ERROR = "error"


@dataclass(frozen=True)
class ScanOptions:
    """How to scan: threshold override, explanation method and size, size limit, batch size."""

    threshold: float | None = None
    top: int = 5
    explain: Method | None = "ig"
    max_bytes: int = DEFAULT_MAX_BYTES
    batch: int = 256


@dataclass(frozen=True)
class ScanResult:
    """One file's outcome; ``score``/``threshold`` are None unless the file was scored."""

    path: str
    verdict: Verdict
    score: float | None
    threshold: float | None
    file_type: str
    sha256: str | None
    size: int
    reason: str | None = None
    warnings: tuple[str, ...] = ()
    top: tuple[Contribution, ...] = field(default_factory=tuple)


def iter_files(paths: Iterable[Path]) -> Iterator[Path]:
    """Every file named or under a named directory (recursively, sorted, symlinked dirs not
    followed). A path that does not exist is a usage error, raised before anything is read."""
    paths = list(paths)
    missing = [str(p) for p in paths if not p.exists() and not p.is_symlink()]
    if missing:
        raise DataError(
            f"Cannot scan {', '.join(repr(m) for m in missing)}: no such file or directory.",
            "Check the paths.",
        )
    for path in paths:
        if not path.is_dir():
            yield path
            continue
        for root, dirs, files in os.walk(path, onerror=_raise_walk_error):
            dirs.sort()
            for name in sorted(files):
                yield Path(root) / name


def _raise_walk_error(err: OSError) -> None:
    raise DataError(
        f"Cannot read directory '{err.filename}': {err.strerror}.", "Check permissions."
    )


def scan_paths(
    detector: Detector, paths: Iterable[Path], options: ScanOptions = ScanOptions()
) -> Iterator[ScanResult]:
    """Scan every file under ``paths`` with ``detector``, yielding results in file order."""
    batch: list[FileRecord] = []
    for path in iter_files(paths):
        batch.append(extract_file(path, detector.info.schema, max_bytes=options.max_bytes))
        if len(batch) >= options.batch:
            yield from _score_batch(detector, batch, options)
            batch = []
    if batch:
        yield from _score_batch(detector, batch, options)


def _score_batch(
    detector: Detector, records: list[FileRecord], options: ScanOptions
) -> list[ScanResult]:
    schema = detector.info.schema
    threshold = detector.info.threshold if options.threshold is None else options.threshold
    rows = [r for r in records if isinstance(r.outcome, Row) and _not_pe_note(r.outcome) is None]
    values = np.array([r.outcome.values for r in rows], dtype=np.float64).reshape(-1, schema.width)  # type: ignore[union-attr]
    X = detector.model_inputs(values)
    want_explain = options.explain is not None and options.top > 0 and detector.explains
    scores = detector.run(X, explain=want_explain)
    tops: list[list[Contribution]] = [[] for _ in rows]
    if want_explain and rows:
        if options.explain == "ig" and detector.info.standardizer is not None:
            contrib = integrated_gradients(detector, X, detector.info.standardizer)
        else:
            assert scores.gradient is not None
            contrib = grad_input(X, scores.gradient)
        tops = top_contributions(contrib, X, detector.feature_names, options.top)
    scored = {id(r): i for i, r in enumerate(rows)}
    out = []
    for record in records:
        i = scored.get(id(record))
        if i is None:
            out.append(_unscored(record))
            continue
        row = record.outcome
        assert isinstance(row, Row)
        score = float(scores.probability[i])
        out.append(
            ScanResult(
                path=record.path,
                verdict=Verdict.MALWARE if score >= threshold else Verdict.BENIGN,
                score=score,
                threshold=threshold,
                file_type=_pe_type(schema, row),
                sha256=record.sha256,
                size=record.size,
                warnings=row.warnings,
                top=tuple(tops[i]),
            )
        )
    return out


def _not_pe_note(row: Row) -> str | None:
    """The warning of a schema that still emits a row for a non-PE file (EMBER2024 does, with
    ``general_is_pe`` 0): such a file is reported as not PE, never scored."""
    return next((w for w in row.warnings if w.startswith(NOT_PE_PREFIX)), None)


def _unscored(record: FileRecord) -> ScanResult:
    """A file without a row: not PE (with what it is instead), or an error with its reason."""
    failure = record.outcome
    note = _not_pe_note(failure) if isinstance(failure, Row) else None
    reason = note or getattr(failure, "reason", "no features")
    kind = NOT_PE_PREFIX if note else getattr(failure, "kind", "")
    not_pe = kind in NOT_PE_KINDS or (kind == "truncated" and not _starts_with_mz(record.path))
    detail = reason.split(":", 1)[1].strip() if ":" in reason else reason
    return ScanResult(
        path=record.path,
        verdict=Verdict.NOT_PE if not_pe else Verdict.ERROR,
        score=None,
        threshold=None,
        file_type=detail if not_pe else "unknown",
        sha256=record.sha256,
        size=record.size,
        reason=reason,
    )


def _starts_with_mz(path: str) -> bool:
    """Whether a file too short for a DOS header still begins like one (a damaged PE file)
    rather than being some other tiny file."""
    try:
        with Path(path).open("rb") as fh:
            return fh.read(2) == b"MZ"
    except OSError:
        return False


def _pe_type(schema: FeatureSchema, row: Row) -> str:
    """ "PE32 executable", "PE32+ DLL" ... from the header fields, when the schema has them."""
    index = {c: i for i, c in enumerate(schema.columns)}
    if "Magic" not in index or "Characteristics" not in index:
        return "PE"
    bits = "PE32+" if row.values[index["Magic"]] == _PE32_PLUS else "PE32"
    dll = int(row.values[index["Characteristics"]]) & _DLL_FLAG
    return f"{bits} {'DLL' if dll else 'executable'}"
