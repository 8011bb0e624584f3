"""Helpers every loader shares: file checks, metadata names, NaN policy and seeded subsampling."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fedmetamal.data.dataset import Dataset
from fedmetamal.errors import DataError

#: Column names (lower-case) that mean one of the known metadata columns; the value is the
#: name the rest of the library uses, so partitioners can rely on ``family``, ``first_seen``...
METADATA_ALIASES: dict[str, str] = {
    "family": "family",
    "avclass": "family",
    "first_seen": "first_seen",
    "timestamp": "first_seen",
    "appeared": "first_seen",
    "source": "source",
    "sha256": "sha256",
    "sha": "sha256",
}

#: EMBER feature widths by feature version (BODMAS uses version 2).
EMBER_WIDTHS: dict[int, int] = {2: 2381, 3: 2568}

#: Rows processed at once when reading memory maps, so memory stays bounded.
CHUNK_ROWS = 8192


def metadata_name(column: str) -> str:
    """The library's name for a metadata column (``sha`` -> ``sha256``); others are unchanged."""
    return METADATA_ALIASES.get(column.strip().lower(), column)


def check_file(path: Path, what: str = "Dataset file") -> Path:
    """Fail early with the path in the message, rather than deep inside pandas or numpy."""
    if not path.exists():
        raise DataError(
            f"{what} '{path}' does not exist.",
            "Check the path (relative paths start from the current folder).",
        )
    if not path.is_file():
        raise DataError(f"{what} '{path}' is not a file.", "Pass the path of a file.")
    return path


def feature_names_for(d: int) -> list[str]:
    """Names for anonymous feature columns: EMBER2024's own column names for its width (the
    registered ``ember-v3`` schema, so a model trained on vectorised EMBER2024 files can scan
    files this project extracts), versioned names for EMBER v2 (``ember_v2_0``), else ``f0``."""
    if d == EMBER_WIDTHS.get(3):
        from fedmetamal.features.ember.layout import COLUMNS

        return list(COLUMNS)
    for version, width in EMBER_WIDTHS.items():
        if d == width:
            return [f"ember_v{version}_{i}" for i in range(d)]
    return [f"f{i}" for i in range(d)]


def ember_schema(d: int) -> str | None:
    """``ember-v2`` / ``ember-v3`` for EMBER widths, so a model knows which extractor it needs."""
    for version, width in EMBER_WIDTHS.items():
        if d == width:
            return f"ember-v{version}"
    return None


def check_label_values(y: np.ndarray, origin: str) -> np.ndarray:
    """Numeric labels as int8, refusing anything but 1 / 0 / -1 (NaN counts as unlabelled)."""
    values = np.asarray(y, dtype=np.float64)
    values = np.where(np.isnan(values), -1.0, values)
    bad = np.setdiff1d(np.unique(values), [-1.0, 0.0, 1.0])
    if bad.size:
        shown = ", ".join(f"{v:g}" for v in bad[:10])
        raise DataError(
            f"Labels in {origin} must be 1 (malware), 0 (benign) or -1 (unlabelled); "
            f"found {shown}.",
            "Convert the labels to 1/0/-1 (family names belong in a 'family' metadata column).",
        )
    return values.astype(np.int8)


def parse_first_seen(values: pd.Series, origin: str) -> pd.Series:
    """Dates as UTC timestamps so temporal partitions sort correctly; numbers are kept as-is."""
    if pd.api.types.is_datetime64_any_dtype(values):
        return pd.to_datetime(values, utc=True)
    if pd.api.types.is_numeric_dtype(values):
        return values
    text = values.astype("string").str.strip().replace("", pd.NA)
    parsed = pd.to_datetime(text, utc=True, errors="coerce", format="mixed")
    bad = text.notna() & parsed.isna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(
            f"Column '{values.name}' in {origin} should hold dates, but row {row} (counting "
            f"from 0) has {text.iloc[row]!r}.",
            "Fix the value, or rename the column so it is not read as first_seen.",
        )
    return parsed


def family_text(values: pd.Series) -> pd.Series:
    """Family names as objects, with None (not "" or "nan") for benign or unknown samples.

    None matches the synthetic generator and what Parquet gives back, so datasets compare equal
    whichever way they were made.
    """
    text = values.astype("string").str.strip()
    return text.astype(object).where(text.notna() & (text != ""), None)


def apply_nan_policy(
    X: np.ndarray, policy: str, feature_names: list[str], origin: str
) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]]:
    """Handle NaN/inf feature values as ``policy`` says.

    Returns the features, a boolean mask of rows to keep (``None`` when every row is kept) and a
    report ``{"policy", "columns": {name: count}, "rows_affected", "rows_dropped"}``. Values
    beyond the float32 range became inf when cast and are counted as inf.
    """
    bad = ~np.isfinite(X)
    per_column = bad.sum(axis=0)
    columns = {feature_names[j]: int(per_column[j]) for j in np.flatnonzero(per_column)}
    bad_rows = bad.any(axis=1)
    report: dict[str, Any] = {
        "policy": policy,
        "columns": columns,
        "rows_affected": int(bad_rows.sum()),
        "rows_dropped": 0,
    }
    if not columns:
        return X, None, report
    if policy == "error":
        worst = sorted(columns.items(), key=lambda kv: -kv[1])
        shown = ", ".join(f"'{name}' ({count} rows)" for name, count in worst[:5])
        more = f" and {len(worst) - 5} more columns" if len(worst) > 5 else ""
        raise DataError(
            f"{origin} has NaN/inf feature values in {report['rows_affected']} rows: "
            f"{shown}{more}.",
            "Clean the file, or set dataset.nan_policy to 'drop-rows', 'zero' or 'median'.",
        )
    if policy == "drop-rows":
        keep = ~bad_rows
        if not keep.any():
            raise DataError(
                f"Every row of {origin} has a NaN/inf feature value; dropping them leaves nothing.",
                "Use dataset.nan_policy 'zero' or 'median', or drop the empty columns.",
            )
        report["rows_dropped"] = int(bad_rows.sum())
        return X[keep], keep, report
    X = np.array(X, dtype=np.float32, copy=True)
    if policy == "zero":
        X[bad] = 0.0
        return X, None, report
    if policy == "median":
        for j in np.flatnonzero(per_column):
            col = X[:, j]
            finite = col[np.isfinite(col)]
            col[~np.isfinite(col)] = np.median(finite) if finite.size else 0.0
        return X, None, report
    raise DataError(f"Unknown nan_policy '{policy}'.", "Use error, drop-rows, zero or median.")


def constant_columns(X: np.ndarray, feature_names: list[str]) -> list[str]:
    """Columns with a single value: kept (a client may still see variation) but reported."""
    if X.shape[0] == 0:
        return []
    same = np.all(X[0:1] == X, axis=0)
    return [feature_names[j] for j in np.flatnonzero(same)]


def stratified_sample_index(y: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Sorted row indices of a seeded random subsample of ``k`` rows with the label shares kept.

    Each label keeps its share (largest-remainder rounding) and at least one row, so a rare
    class is not erased by subsampling. Sorted so memory maps are read front to back.
    """
    n = int(y.shape[0])
    if k >= n:
        return np.arange(n, dtype=np.int64)
    labels, counts = np.unique(y, return_counts=True)
    exact = k * counts / n
    take = np.floor(exact).astype(np.int64)
    if k >= labels.size:
        take = np.maximum(take, 1)
    short = k - int(take.sum())
    if short > 0:
        order = np.argsort(-(exact - np.floor(exact)), kind="stable")
        take[order[:short]] += 1
    while short < 0:
        take[int(np.argmax(take))] -= 1
        short += 1
    rng = np.random.default_rng(seed)
    parts = [
        rng.choice(np.flatnonzero(y == label), size=int(t), replace=False)
        for label, t in zip(labels, take, strict=True)
        if t > 0
    ]
    return np.sort(np.concatenate(parts)).astype(np.int64)


def subsample(ds: Dataset, max_samples: int | None, seed: int) -> Dataset:
    """Apply ``max_samples`` (a no-op when the dataset is already small enough)."""
    if max_samples is None or ds.n_samples <= max_samples:
        return ds
    idx = stratified_sample_index(ds.y, max_samples, seed)
    out = ds.subset(idx)
    out.info["subsample"] = {"max_samples": max_samples, "seed": seed, "from": ds.n_samples}
    return out
