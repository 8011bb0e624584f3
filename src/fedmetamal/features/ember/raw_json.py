"""EMBER2024 raw JSON features (one object per ``.jsonl`` line) -> the ember-v3 vector.

The EMBER2024 archives hold what the reference extractor computes *before* vectorization: per
group, counts, names and header fields. Turning those into the 2568 columns is the same
arithmetic our extractor does after reading a file, so we reuse its pieces (the feature
hashing, the header category codes, the histogram normalisation, the column layout) and only
read the values from JSON instead of from pefile. Rows made here line up, column for column,
with rows from ``fedmetamal extract --schema ember-v3``.

:func:`vectorize_jsonl` streams any number of ``.jsonl`` files into one stamped dataset file
(see :mod:`fedmetamal.features.dataset_file`) in batches, so memory stays bounded however
large the split is.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from fedmetamal.errors import DataError
from fedmetamal.features.dataset_file import arrow_schema
from fedmetamal.features.ember import SCHEMA
from fedmetamal.features.ember.byte_histogram import byte_histogram_features
from fedmetamal.features.ember.exports import vectorize_exports
from fedmetamal.features.ember.hashing import hash_names, hash_pairs
from fedmetamal.features.ember.header import MACHINE_CODE, SUBSYSTEM_CODE
from fedmetamal.features.ember.imports import vectorize_imports
from fedmetamal.features.ember.layout import (
    AUTHENTICODE_FIELDS,
    DATA_DIRECTORY_NAMES,
    DLL_CHARACTERISTICS,
    DOS_MEMBERS,
    GROUP_BY_NAME,
    GROUPS,
    HEADER_SCALARS,
    IMAGE_CHARACTERISTICS,
    STRING_PATTERN_NAMES,
    WARNING_PATTERN_COUNT,
    WIDTH,
)
from fedmetamal.features.ember.parser_warnings import PATTERNS
from fedmetamal.features.ember.rich_header import WIDTH as RICH_WIDTH

#: The JSON keys every record must have: the twelve groups, named as EMBER2024 names them.
GROUP_KEYS: tuple[str, ...] = tuple(g.name for g in GROUPS)
#: Keys that give a sample's first-seen time, most specific first (EMBER2024, then 2017/2018).
FIRST_SEEN_KEYS = ("first_seen", "first_submission_date", "appeared")
#: Keys that give a malware family (EMBER2024 ``family``, EMBER 2017/2018 ``avclass``).
FAMILY_KEYS = ("family", "avclass")
#: Rows per Parquet row group: bounds memory (about 10 MiB of features per batch).
BATCH_ROWS = 1024

_STRING_INDEX = {name: i for i, name in enumerate(STRING_PATTERN_NAMES)}
_WARNING_INDEX = {pattern: i for i, pattern in enumerate(PATTERNS)}
_DIRECTORY_INDEX = {name: i for i, name in enumerate(DATA_DIRECTORY_NAMES)}


class RawFeatureError(ValueError):
    """A raw record lacks a group or holds a value of the wrong shape (says which)."""


def _zeros(group: str) -> np.ndarray:
    return np.zeros(GROUP_BY_NAME[group].width, dtype=np.float32)


def _general(raw: dict[str, Any]) -> np.ndarray:
    start = list(raw["start_bytes"])
    if len(start) != 4:
        raise ValueError(f"start_bytes holds {len(start)} values, not 4")
    return np.array([raw["size"], raw["entropy"], raw["is_pe"], *start], dtype=np.float32)


def _counts(raw: list[int], width: int) -> np.ndarray:
    """A histogram normalised as the reference does (float32 counts over their float32 sum)."""
    counts = np.asarray(raw, dtype=np.float64)
    if counts.shape != (width,):
        raise ValueError(f"holds {counts.size} counts, not {width}")
    return byte_histogram_features(counts)


def _strings(raw: dict[str, Any]) -> np.ndarray:
    distribution = np.asarray(raw["printabledist"], dtype=np.float64)
    if distribution.shape != (96,):
        raise ValueError(f"printabledist holds {distribution.size} values, not 96")
    printables = raw["printables"]
    divisor = float(printables) if printables > 0 else 1.0
    counts = np.zeros(len(STRING_PATTERN_NAMES), dtype=np.float32)
    for name, count in raw["string_counts"].items():
        if name not in _STRING_INDEX:
            raise ValueError(f"unknown string pattern {name!r}")
        counts[_STRING_INDEX[name]] = count
    head = [raw["numstrings"], raw["avlength"], printables]
    return np.hstack([head, distribution / divisor, raw["entropy"], counts]).astype(np.float32)


def _header(raw: dict[str, Any]) -> np.ndarray:
    if not raw:
        return _zeros("header")
    coff, optional, dos = raw["coff"], raw["optional"], raw["dos"]
    scalars = []
    for name in HEADER_SCALARS:
        if name == "coff_machine":
            scalars.append(MACHINE_CODE.get(coff["machine"], 0))
        elif name == "optional_subsystem":
            scalars.append(SUBSYSTEM_CODE.get(optional["subsystem"], 0))
        else:
            part, key = name.split("_", 1)
            scalars.append((coff if part == "coff" else optional)[key])
    image = set(coff["characteristics"])
    dll = set(optional["dll_characteristics"])
    flags = [c in image for c in IMAGE_CHARACTERISTICS] + [c in dll for c in DLL_CHARACTERISTICS]
    # One hstack, like the reference and header_features, so large integers round the same way.
    return np.hstack([scalars, flags, [dos[m] for m in DOS_MEMBERS]]).astype(np.float32)


def _section(raw: dict[str, Any]) -> np.ndarray:
    if not raw:
        return _zeros("section")
    sections, overlay = raw["sections"], raw["overlay"]
    props = [set(s["props"]) for s in sections]
    entropies = [s["entropy"] for s in sections] + [overlay["entropy"], 0]
    size_ratios = [s["size_ratio"] for s in sections] + [overlay["size_ratio"], 0]
    vsize_ratios = [s["vsize_ratio"] for s in sections] + [0]
    general = [
        len(sections),
        sum(1 for s in sections if s["size"] == 0),
        sum(1 for s in sections if s["name"] == ""),
        sum(1 for p in props if "MEM_READ" in p and "MEM_EXECUTE" in p),
        sum(1 for p in props if "MEM_WRITE" in p),
        max(entropies),
        min(entropies),
        max(size_ratios),
        min(size_ratios),
        max(vsize_ratios),
        min(vsize_ratios),
    ]
    flags = (f"{s['name']}:{p}" for s in sections for p in s["props"])
    return np.hstack(
        [
            general,
            hash_pairs(((s["name"], s["size"]) for s in sections), 50),
            hash_pairs(((s["name"], s["vsize"]) for s in sections), 50),
            hash_pairs(((s["name"], s["entropy"]) for s in sections), 50),
            hash_names(flags, 50),
            hash_names([raw["entry"]], 10),
            overlay["size"],
            overlay["size_ratio"],
            overlay["entropy"],
        ]
    ).astype(np.float32)


def _data_directories(raw: list[dict[str, Any]]) -> np.ndarray:
    out = _zeros("datadirectories")
    if not raw:
        return out
    # raw[0] holds the relocation flags; the reference skips the last directory (see
    # data_directories.py), so the columns match rows extracted from files.
    for directory in raw[1:-1]:
        index = _DIRECTORY_INDEX.get(directory["name"])
        if index is None:
            continue
        out[2 * index] = directory["size"]
        out[2 * index + 1] = directory["virtual_address"]
    out[-2] = raw[0]["has_relocs"]
    out[-1] = raw[0]["has_dynamic_relocs"]
    return out


def _rich_header(raw: list[int]) -> np.ndarray:
    if not raw:
        return np.zeros(RICH_WIDTH, dtype=np.float32)
    pairs = [(str(raw[i]), raw[i + 1]) for i in range(0, len(raw) - 1, 2)]
    return np.hstack([[len(raw) // 2], hash_pairs(pairs, 32)]).astype(np.float32)


def _authenticode(raw: dict[str, Any]) -> np.ndarray:
    if not raw:
        return _zeros("authenticode")
    return np.hstack([raw[name] for name in AUTHENTICODE_FIELDS]).astype(np.float32)


def _warnings(raw: list[str], notes: list[str]) -> np.ndarray:
    """Flags of the normalised patterns EMBER2024 stores (``Prefix...`` / ``...suffix``)."""
    out = np.zeros(WARNING_PATTERN_COUNT + 1, dtype=np.float32)
    if not raw:
        return out
    unknown = sorted({w for w in raw if w not in _WARNING_INDEX})
    if unknown:
        notes.append(f"unknown pefile warning patterns not counted: {'; '.join(unknown)}")
    for pattern in raw:
        if pattern in _WARNING_INDEX:
            out[_WARNING_INDEX[pattern]] = 1.0
    out[-1] = len(set(raw)) - len(unknown)
    return out


def vectorize_raw(obj: dict[str, Any], notes: list[str] | None = None) -> np.ndarray:
    """The 2568 ember-v3 values (float32, schema order) of one raw EMBER2024 record.

    ``notes`` collects what was odd but not fatal (unknown warning patterns); a missing group
    or a malformed value raises :class:`RawFeatureError` naming the group.
    """
    if not isinstance(obj, dict):
        raise RawFeatureError(f"expected a JSON object, got {type(obj).__name__}")
    missing = [key for key in GROUP_KEYS if key not in obj]
    if missing:
        raise RawFeatureError(f"missing feature groups: {', '.join(missing)}")
    notes = [] if notes is None else notes
    builders: dict[str, Callable[[Any], np.ndarray]] = {
        "general": _general,
        "histogram": lambda raw: _counts(raw, 256),
        "byteentropy": lambda raw: _counts(raw, 256),
        "strings": _strings,
        "header": _header,
        "section": _section,
        "imports": vectorize_imports,
        "exports": vectorize_exports,
        "datadirectories": _data_directories,
        "richheader": _rich_header,
        "authenticode": _authenticode,
        "pefilewarnings": lambda raw: _warnings(raw, notes),
    }
    out = np.zeros(WIDTH, dtype=np.float32)
    for group in GROUPS:
        try:
            values = builders[group.name](obj[group.name])
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as err:
            what = f"missing key {err}" if isinstance(err, KeyError) else str(err)
            raise RawFeatureError(f"group '{group.name}' is malformed: {what}") from None
        if values.shape != (group.width,):  # pragma: no cover - guarded by the builders
            raise RawFeatureError(f"group '{group.name}' gave {values.size} values")
        out[group.start : group.stop] = values
    return out


def _first_seen(obj: dict[str, Any]) -> str | None:
    """The record's first-seen time as text: epoch seconds become ISO 8601 UTC."""
    for key in FIRST_SEEN_KEYS:
        value = obj.get(key)
        if value is None or value == "":
            continue
        if isinstance(value, int | float) and not isinstance(value, bool):
            return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return str(value)
    return None


def _family(obj: dict[str, Any]) -> str | None:
    for key in FAMILY_KEYS:
        value = obj.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def _label(obj: dict[str, Any]) -> int:
    if "label" not in obj:
        raise RawFeatureError("missing field: label")
    value = obj["label"]
    if isinstance(value, bool) or value not in (1, 0, -1):
        raise RawFeatureError(f"label is {value!r}; expected 1 (malware), 0 (benign), -1")
    return int(value)


@dataclass
class VectorizeSummary:
    """What a conversion wrote: rows, label counts and the files read."""

    output: Path
    rows: int = 0
    labels: Counter[int] = field(default_factory=Counter)
    files: list[Path] = field(default_factory=list)
    with_notes: int = 0


def _records(paths: Iterable[Path]) -> Iterator[tuple[Path, int, dict[str, Any]]]:
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
                    raise DataError(
                        f"'{path}', line {number}: not JSON lines ({err}).",
                        "Pass EMBER2024 raw-feature .jsonl files (one JSON object per line).",
                    ) from None
                if not isinstance(obj, dict):
                    raise DataError(
                        f"'{path}', line {number}: a JSON {type(obj).__name__}, not an object.",
                        "Pass EMBER2024 raw-feature .jsonl files (one JSON object per line).",
                    )
                yield path, number, obj


def _peek_first_seen(paths: list[Path]) -> bool:
    """Whether the first record carries a first-seen time (decides the ``first_seen`` column)."""
    for _, _, obj in _records(paths[:1]):
        return _first_seen(obj) is not None
    return False


def _batch_table(
    vectors: list[np.ndarray], meta: list[dict[str, Any]], layout: pa.Schema
) -> pa.Table:
    matrix = np.vstack(vectors)
    arrays: list[pa.Array] = [pa.array([m["label"] for m in meta], type=pa.int8())]
    arrays += [pa.array(matrix[:, j], type=pa.float32()) for j in range(WIDTH)]
    for name in layout.names[1 + WIDTH :]:
        arrays.append(pa.array([m.get(name) for m in meta], type=layout.field(name).type))
    return pa.Table.from_arrays(arrays, schema=layout)


def vectorize_jsonl(
    paths: Iterable[Path | str],
    out_parquet: Path | str,
    limit: int | None = None,
    batch_rows: int = BATCH_ROWS,
    on_row: Callable[[int], None] = lambda rows: None,
) -> VectorizeSummary:
    """Convert raw EMBER2024 ``.jsonl`` files into one ember-v3 dataset file.

    Rows keep the file's order. Labels come from ``label`` (1 malware, 0 benign, -1
    unlabelled); ``sha256``, ``family`` (or ``avclass``) and the first-seen time are kept as
    metadata, ``path`` names the source line. The file is written under a temporary name and
    renamed when complete, so an error leaves no half-written dataset behind. ``on_row`` is
    told the rows written so far after each batch (progress without a per-row cost).
    """
    files = [Path(p) for p in paths]
    if not files:
        raise DataError("No input files given.", "Pass one or more EMBER2024 .jsonl files.")
    output = Path(out_parquet)
    output.parent.mkdir(parents=True, exist_ok=True)
    layout = arrow_schema(SCHEMA, with_first_seen=_peek_first_seen(files))
    summary = VectorizeSummary(output=output, files=files)
    tmp = output.with_name(output.name + ".partial")
    vectors: list[np.ndarray] = []
    meta: list[dict[str, Any]] = []
    try:
        with pq.ParquetWriter(tmp, layout) as writer:
            for path, number, obj in _records(files):
                if limit is not None and summary.rows >= limit:
                    break
                notes: list[str] = []
                try:
                    label = _label(obj)
                    vector = vectorize_raw(obj, notes)
                except RawFeatureError as err:
                    raise DataError(
                        f"'{path}', line {number}: {err}.",
                        "Only EMBER feature version 3 (EMBER2024) raw records can be "
                        "vectorized; each needs 'label' and the groups "
                        f"{', '.join(GROUP_KEYS)}.",
                    ) from None
                size = obj["general"].get("size") if isinstance(obj["general"], dict) else None
                meta.append(
                    {
                        "label": label,
                        "sha256": obj.get("sha256"),
                        "path": f"{path.name}:{number}",
                        "size": int(size) if isinstance(size, int | float) else None,
                        "family": _family(obj),
                        "first_seen": _first_seen(obj),
                        "warnings": "; ".join(notes),
                    }
                )
                vectors.append(vector)
                summary.rows += 1
                summary.labels[label] += 1
                summary.with_notes += bool(notes)
                if len(vectors) >= batch_rows:
                    writer.write_table(_batch_table(vectors, meta, layout))
                    vectors, meta = [], []
                    on_row(summary.rows)
            if vectors:
                writer.write_table(_batch_table(vectors, meta, layout))
            on_row(summary.rows)
        if summary.rows == 0:
            raise DataError(
                f"No records in {', '.join(str(f) for f in files)}.",
                "Pass EMBER2024 raw-feature .jsonl files.",
            )
        tmp.replace(output)
    finally:
        tmp.unlink(missing_ok=True)
    return summary
