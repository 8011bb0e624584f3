"""EMBER 2017/2018 raw ``.jsonl`` files -> the vectorized folder the EMBER loader reads.

The folder is what EMBER's own ``create_vectorized_features`` writes: ``X_{split}.dat`` (float32
rows of 2381 values, no header) and ``y_{split}.dat`` (one float32 label per row), plus
``{split}_metadata.csv`` (sha256, md5, appeared, avclass, label) for
:mod:`fedmetamal.data.loaders_ember`. Files named ``test*`` feed the test split, all others the
train split (EMBER's ``train_features_*.jsonl`` / ``test_features.jsonl``), unless a split is
forced. Rows are streamed in batches, so memory stays bounded; files are written under
temporary names and renamed when complete, so an error leaves no half-written split behind.
A record whose sha256 was already written is dropped (the first one is kept).
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from fedmetamal.errors import DataError
from fedmetamal.features.ember.raw_json import RawFeatureError
from fedmetamal.features.ember_v2.layout import GROUP_KEYS
from fedmetamal.features.ember_v2.vectorize import feature_version, vectorize_raw_v2

SPLITS = ("train", "test")
#: Columns of ``{split}_metadata.csv`` (``label`` repeats y, as EMBER's metadata.csv does).
METADATA_COLUMNS = ("sha256", "md5", "appeared", "avclass", "label")
#: Rows written at once (about 10 MiB of features).
BATCH_ROWS = 1024
_FIX = "Pass EMBER 2017/2018 raw-feature .jsonl files (one JSON object per line)."


def split_of(path: Path, choice: str = "auto") -> str:
    """The split a file feeds: ``test`` for ``test*`` names, else ``train``."""
    if choice != "auto":
        return choice
    return "test" if path.name.lower().startswith("test") else "train"


def output_files(folder: Path, split: str) -> tuple[Path, Path, Path]:
    """Features, labels and metadata file of one split in ``folder``."""
    return folder / f"X_{split}.dat", folder / f"y_{split}.dat", folder / f"{split}_metadata.csv"


def read_records(
    paths: Iterable[Path], fix: str = _FIX
) -> Iterator[tuple[Path, int, dict[str, Any]]]:
    """(file, line number, record) of every non-blank line; a line that is not a JSON object
    is a DataError naming the file and line."""
    for path in paths:
        try:
            handle = path.open("rb")
        except OSError as err:
            raise DataError(f"'{path}' cannot be read ({err.strerror}).") from None
        with handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except ValueError as err:
                    problem = f"'{path}', line {number}: not JSON lines ({err})."
                    raise DataError(problem, fix) from None
                if not isinstance(obj, dict):
                    raise DataError(
                        f"'{path}', line {number}: a JSON {type(obj).__name__}, not an object.", fix
                    )
                yield path, number, obj


def detect_feature_version(paths: list[Path]) -> int | None:
    """The feature version of the first record of the first file (``None``: not EMBER)."""
    for _, _, obj in read_records(paths[:1]):
        return feature_version(obj)
    return None


def _label(obj: dict[str, Any]) -> int:
    if "label" not in obj:
        raise RawFeatureError("missing field: label")
    value = obj["label"]
    if isinstance(value, bool) or value not in (1, 0, -1):
        raise RawFeatureError(f"label is {value!r}; expected 1 (malware), 0 (benign), -1")
    return int(value)


def _text(value: Any) -> str:
    return "" if value is None else str(value)


@dataclass
class V2Summary:
    """What a conversion wrote: rows per split, labels, duplicates dropped, files read."""

    output: Path
    rows: Counter[str] = field(default_factory=Counter)
    labels: Counter[int] = field(default_factory=Counter)
    files: list[Path] = field(default_factory=list)
    duplicates: int = 0

    @property
    def total(self) -> int:
        return sum(self.rows.values())


class _SplitWriter:
    """Appends rows of one split to its three temporary files."""

    def __init__(self, folder: Path, split: str) -> None:
        self.final = output_files(folder, split)
        self.partial = tuple(p.with_name(p.name + ".partial") for p in self.final)
        self._x: IO[bytes] = self.partial[0].open("wb")
        self._y: IO[bytes] = self.partial[1].open("wb")
        self._meta_handle = self.partial[2].open("w", newline="", encoding="utf-8")
        self._meta = csv.writer(self._meta_handle)
        self._meta.writerow(METADATA_COLUMNS)
        self.vectors: list[np.ndarray] = []
        self.labels: list[int] = []

    def add(self, vector: np.ndarray, label: int, obj: dict[str, Any]) -> None:
        self.vectors.append(vector)
        self.labels.append(label)
        self._meta.writerow([_text(obj.get(k)) for k in METADATA_COLUMNS[:-1]] + [label])

    def flush(self) -> None:
        if self.vectors:
            np.vstack(self.vectors).astype(np.float32).tofile(self._x)
            np.asarray(self.labels, dtype=np.float32).tofile(self._y)
            self.vectors, self.labels = [], []

    def close(self) -> None:
        self.flush()
        for handle in (self._x, self._y, self._meta_handle):
            handle.close()

    def commit(self) -> None:
        for partial, final in zip(self.partial, self.final, strict=True):
            partial.replace(final)

    def discard(self) -> None:
        for partial in self.partial:
            partial.unlink(missing_ok=True)


def _check_output(folder: Path) -> None:
    if folder.exists() and not folder.is_dir():
        raise DataError(
            f"'{folder}' is a file; EMBER 2017/2018 features are written as a folder "
            "(X_train.dat, y_train.dat, ...).",
            "Pass a new or empty folder as --output.",
        )
    present = [p.name for split in SPLITS for p in output_files(folder, split) if p.exists()] + (
        ["metadata.csv"] if (folder / "metadata.csv").exists() else []
    )
    if present:
        raise DataError(
            f"'{folder}' already holds vectorized EMBER files ({', '.join(present)}).",
            "Pass a new or empty folder as --output, or delete those files first.",
        )


def vectorize_v2_jsonl(
    paths: Iterable[Path | str],
    out_dir: Path | str,
    limit: int | None = None,
    split: str = "auto",
    batch_rows: int = BATCH_ROWS,
    on_row: Callable[[int], None] = lambda rows: None,
) -> V2Summary:
    """Convert EMBER feature-version-2 raw ``.jsonl`` files into a vectorized EMBER folder.

    Train files are read before test files, each group in the order given. Labels come from
    ``label`` (1 malware, 0 benign, -1 unlabelled). A record whose ``sha256`` was already
    written is dropped and counted in ``duplicates``; records without one are all kept.
    ``limit`` caps the rows written. ``on_row`` is told the rows written after each batch.
    """
    files = [Path(p) for p in paths]
    if not files:
        raise DataError("No input files given.", "Pass one or more EMBER .jsonl files.")
    if split not in ("auto", *SPLITS):
        raise DataError(f"Unknown split {split!r}.", "Use auto, train or test.")
    folder = Path(out_dir)
    _check_output(folder)
    ordered = sorted(files, key=lambda p: SPLITS.index(split_of(p, split)))
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    summary = V2Summary(output=folder, files=files)
    writers: dict[str, _SplitWriter] = {}
    seen: set[str] = set()
    try:
        for path, number, obj in read_records(ordered):
            if limit is not None and summary.total >= limit:
                break
            sha = obj.get("sha256")
            if isinstance(sha, str) and sha:
                if sha in seen:
                    summary.duplicates += 1
                    continue
                seen.add(sha)
            try:
                label = _label(obj)
                vector = vectorize_raw_v2(obj)
            except RawFeatureError as err:
                version = feature_version(obj)
                hint = (
                    f"This record is EMBER feature version {version}; "
                    if version not in (None, 2)
                    else ""
                )
                raise DataError(
                    f"'{path}', line {number}: {err}.",
                    f"{hint}EMBER 2017/2018 (feature version 2) records need 'label' and the "
                    f"groups {', '.join(GROUP_KEYS)}.",
                ) from None
            name = split_of(path, split)
            if name not in writers:
                writers[name] = _SplitWriter(folder, name)
            writer = writers[name]
            writer.add(vector, label, obj)
            summary.rows[name] += 1
            summary.labels[label] += 1
            if len(writer.vectors) >= batch_rows:
                writer.flush()
                on_row(summary.total)
        for writer in writers.values():
            writer.close()
        on_row(summary.total)
        if summary.total == 0:
            raise DataError(
                f"No records in {', '.join(str(f) for f in files)}.",
                "Pass EMBER 2017/2018 raw-feature .jsonl files.",
            )
        for writer in writers.values():
            writer.commit()
    finally:
        for writer in writers.values():
            writer.close()
            writer.discard()
        if created and not any(folder.iterdir()):
            folder.rmdir()
    return summary
