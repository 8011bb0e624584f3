"""What datasets are on disk and what is in them: for ``data list`` and ``data info``.

Listing must stay fast on a data folder holding gigabytes, so :func:`find_datasets` looks only
at names, sizes and a few header bytes; :func:`summarize` reads one dataset (EMBER features stay
memory-mapped, so only labels and metadata are read) to give label balance, families and the
``first_seen`` range that decide how a federation can be partitioned.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from fedmetamal.data.dataset import Dataset
from fedmetamal.data.fetch import DOWNLOADS, MARKER, read_marker
from fedmetamal.data.loaders_ember import is_ember_folder
from fedmetamal.data.loaders_native import read_header
from fedmetamal.features.dataset_file import schema_stamp

_TABLE_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".csv.xz", ".csv.zip", ".tsv")
_FIRST_LINE_LIMIT = 8 << 20
VECTORIZE_HINT = (
    "raw EMBER JSON features: vectorize them first (EMBER2024: fedmetamal data vectorize "
    "FOLDER -o ember2024.parquet; EMBER 2017/2018: fedmetamal data vectorize FOLDER -o OUT, "
    "then pass OUT, the folder holding X_train.dat / y_train.dat)"
)


def disk_size(path: Path) -> int:
    """Bytes a file or a folder (recursively) occupies, counting file sizes."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _is_raw_ember_line(path: Path) -> bool:
    """Whether a JSON-lines file starts with an EMBER raw-feature record."""
    try:
        with path.open("rb") as fh:
            line = fh.readline(_FIRST_LINE_LIMIT)
        record = json.loads(line)
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and "sha256" in record and "histogram" in record


def raw_ember_files(folder: Path) -> list[Path]:
    """The EMBER raw-feature ``.jsonl`` files directly in ``folder``."""
    if not folder.is_dir():
        return []
    return [p for p in sorted(folder.glob("*.jsonl")) if _is_raw_ember_line(p)]


def kind_of(path: Path) -> str | None:
    """What a path holds: ``ember`` (vectorized), ``ember-raw``, ``extracted`` (stamped
    Parquet), ``fedmetamal``, ``parquet``, ``csv``, ``npz``; ``None`` for anything else."""
    if path.is_dir():
        if is_ember_folder(path):
            return "ember"
        return "ember-raw" if raw_ember_files(path) else None
    name = path.name.lower()
    if name.endswith((".parquet", ".pq")):
        if read_header(path) is not None:
            return "fedmetamal"
        return "extracted" if schema_stamp(path) is not None else "parquet"
    if name.endswith(_TABLE_SUFFIXES):
        return "csv"
    if name.endswith(".npz"):
        return "npz"
    return None


@dataclass
class DiskDataset:
    """One dataset found under the data directory."""

    path: Path
    kind: str
    size: int
    #: The catalog name when it lies in a folder made by ``data fetch``.
    fetched_as: str | None = None


def find_datasets(root: Path, max_depth: int = 4) -> list[DiskDataset]:
    """Datasets under ``root``, shallow first; partial downloads show as kind ``partial``."""
    found: list[DiskDataset] = []
    if not root.is_dir():
        return found

    def visit(folder: Path, depth: int, fetched: str | None) -> None:
        if (folder / MARKER).is_file():
            record = read_marker(folder)
            fetched = str(record.get("name")) if record else folder.name
        for path in sorted(folder.iterdir()):
            if path.name.startswith("."):
                continue
            if path.is_dir() and path.name == DOWNLOADS and folder == root:
                found.extend(
                    DiskDataset(p, "partial", p.stat().st_size) for p in sorted(path.glob("*.part"))
                )
                continue
            kind = kind_of(path)
            if kind is not None:
                found.append(DiskDataset(path, kind, disk_size(path), fetched))
            elif path.is_dir() and depth < max_depth:
                visit(path, depth + 1, fetched)

    visit(root, 1, None)
    return found


def _time_range(values: pd.Series) -> dict[str, str] | None:
    if pd.api.types.is_numeric_dtype(values):
        valid = values.dropna()
        return None if valid.empty else {"from": str(valid.min()), "to": str(valid.max())}
    dates = pd.to_datetime(values, utc=True, errors="coerce").dropna()
    if dates.empty:
        return None
    return {"from": dates.min().date().isoformat(), "to": dates.max().date().isoformat()}


def summarize(ds: Dataset, top: int = 10) -> dict[str, Any]:
    """Label balance, the ``top`` families and the ``first_seen`` range of a loaded dataset."""
    counts = ds.class_counts()
    labelled = counts["malware"] + counts["benign"]
    out: dict[str, Any] = {
        "samples": ds.n_samples,
        "features": ds.n_features,
        "labels": counts,
        "malware_share": round(counts["malware"] / labelled, 4) if labelled else None,
        "schema": ds.info.get("schema"),
    }
    stamp = ds.info.get("feature_schema")
    if isinstance(stamp, dict):
        out["schema"] = f"{stamp['name']} v{stamp['version']} ({len(stamp['columns'])} columns)"
    if ds.has_metadata("family"):
        fam = ds.metadata["family"].astype("string").str.strip().replace("", pd.NA)  # type: ignore[index]
        malware = pd.Series(ds.y == 1)
        names = fam[malware & fam.notna()]
        out["families"] = {
            "count": int(names.nunique()),
            "top": {str(k): int(v) for k, v in names.value_counts().head(top).items()},
        }
    if ds.has_metadata("first_seen"):
        out["first_seen"] = _time_range(ds.metadata["first_seen"])  # type: ignore[index]
    return out


def raw_summary(folder: Path) -> dict[str, Any]:
    """What can be said of a raw EMBER folder without vectorizing it."""
    files = raw_ember_files(folder)
    return {
        "format": "ember-raw",
        "files": {p.name: p.stat().st_size for p in files},
        "samples": None,
        "note": VECTORIZE_HINT.replace("FOLDER", f"'{folder}'"),
    }


def dataset_folders(folder: Path, max_depth: int = 3) -> list[DiskDataset]:
    """Datasets inside a fetched folder (the archive's own sub-folder, usually one)."""
    return [d for d in find_datasets(folder, max_depth) if d.kind != "partial"]


def label_shares(counts: dict[str, int]) -> str:
    """``'60.0% malware, 40.0% benign, 10 unlabelled'`` for tables."""
    labelled = counts["malware"] + counts["benign"]
    if not labelled:
        return f"no labelled samples, {counts['unlabelled']} unlabelled"
    text = (
        f"{100 * counts['malware'] / labelled:.1f}% malware, "
        f"{100 * counts['benign'] / labelled:.1f}% benign"
    )
    return text + (f", {counts['unlabelled']} unlabelled" if counts["unlabelled"] else "")
