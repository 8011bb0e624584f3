"""CSV and Parquet tables: one row per sample, numeric feature columns, a label column.

Every column other than the label ends up in exactly one place, and the choice is reported:

* known metadata (``family``, ``first_seen``/``timestamp``/``appeared``, ``source``,
  ``sha256``/``sha``) and ``dataset.metadata_columns`` -> ``Dataset.metadata``;
* numeric and boolean columns -> features (float32);
* identifier and text columns -> dropped, listed in ``info["dropped_columns"]``;
* a mostly-numeric column with stray text -> an error naming the column and the bad value,
  because silently dropping a real feature (or treating text as NaN) hides a broken file.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from fedmetamal.config import DatasetConfig
from fedmetamal.data.dataset import Dataset
from fedmetamal.data.loaders_common import (
    METADATA_ALIASES,
    apply_nan_policy,
    check_file,
    constant_columns,
    family_text,
    metadata_name,
    parse_first_seen,
)
from fedmetamal.data.loaders_labels import find_label_column, labels_from_column
from fedmetamal.errors import DataError

#: Non-numeric columns with these names (lower-case) are identifiers, never features.
IDENTIFIER_NAMES = frozenset(
    {"sha256", "sha1", "sha", "md5", "hash", "name", "filename", "file_name", "file", "path"}
)
#: A text column is "numeric with garbage" when more than this share of its cells are numbers.
NUMERIC_SHARE = 0.5

_COMPRESSED = frozenset({".gz", ".bz2", ".xz", ".zip", ".zst"})
_SEPARATORS = (",", ";", "\t", "|")
_BOOL_WORDS = {"true": 1.0, "false": 0.0}


def _not_csv(path: Path, why: str) -> DataError:
    return DataError(
        f"'{path}' is not a readable CSV file ({why}).",
        "Pass a UTF-8 CSV with a header row, or set --format to the file's real format.",
    )


def read_csv(path: Path) -> pd.DataFrame:
    """Read a CSV, turning every way it can be malformed into a DataError naming the file."""
    check_file(path, "CSV file")
    sep = ","
    if path.suffix.lower() not in _COMPRESSED:
        with path.open("rb") as fh:
            head = fh.read(65536)
        if not head.strip():
            raise DataError(
                f"CSV file '{path}' is empty.", "Check that the file was fully written."
            )
        if head.startswith(b"PAR1"):
            raise _not_csv(path, "it is a Parquet file")
        if head.startswith(b"PK\x03\x04"):
            raise _not_csv(path, "it is a zip/npz archive")
        if b"\x00" in head:
            raise _not_csv(path, "it contains binary data")
        header = head.splitlines()[0].decode("utf-8", errors="replace")
        sep = max(_SEPARATORS, key=header.count) if any(s in header for s in _SEPARATORS) else ","
    try:
        df = pd.read_csv(path, sep=sep, low_memory=False)
    except pd.errors.EmptyDataError:
        raise DataError(
            f"CSV file '{path}' is empty.", "Check that the file was fully written."
        ) from None
    except UnicodeDecodeError as err:
        raise _not_csv(path, f"not UTF-8 text: {err.reason} at byte {err.start}") from None
    except (pd.errors.ParserError, ValueError, OSError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise _not_csv(path, first) from None
    if len(df) == 0:
        raise DataError(
            f"CSV file '{path}' has a header but no data rows.",
            "Check that the file was fully written.",
        )
    return df


def read_parquet(path: Path) -> pd.DataFrame:
    """Read a generic Parquet table (the project's own format is handled in loaders_native)."""
    check_file(path, "Parquet file")
    try:
        df = pd.read_parquet(path)
    except (pa.ArrowException, OSError, ValueError) as err:
        raise DataError(
            f"'{path}' is not a readable Parquet file ({str(err).splitlines()[0]}).",
            "Pass a Parquet file, or set --format to the file's real format.",
        ) from None
    if len(df) == 0:
        raise DataError(f"Parquet file '{path}' has no rows.", "Check the file.")
    return df


def _bool_words(text: pd.Series) -> pd.Series | None:
    """0/1 for a column of true/false words (pandas reads them as text when cells are empty)."""
    lowered = text.astype("string").str.strip().str.lower()
    present = lowered.dropna()
    if present.empty or not present.isin(list(_BOOL_WORDS)).all():
        return None
    return lowered.map(_BOOL_WORDS).astype(np.float64)


def _numeric_or_none(col: pd.Series, origin: str) -> pd.Series | None:
    """A text column as numbers, ``None`` for genuine text, an error for numbers + garbage."""
    as_bool = _bool_words(col)
    if as_bool is not None:
        return as_bool
    text = col.astype("string").str.strip().replace("", pd.NA)
    present = text.dropna()
    if present.empty:
        return pd.Series(np.nan, index=col.index, dtype=np.float64)
    numbers = pd.to_numeric(text, errors="coerce")
    failed = text.notna() & numbers.isna() & ~text.str.lower().isin(["nan", "na", "null"])
    if not failed.any():
        return numbers.astype(np.float64)
    if (1.0 - failed.sum() / len(present)) > NUMERIC_SHARE:
        row = int(np.flatnonzero(failed.to_numpy())[0])
        raise DataError(
            f"Column '{col.name}' in {origin} is numeric but row {row} (counting data rows "
            f"from 0) holds {text.iloc[row]!r} ({int(failed.sum())} such values).",
            "Fix or blank those cells, or list the column in dataset.metadata_columns to keep "
            "it as metadata instead of a feature.",
        )
    return None


def _is_index_column(name: str, col: pd.Series) -> bool:
    """The ``Unnamed: 0`` column pandas writes for an index: a row number, not a feature."""
    return (
        re.fullmatch(r"Unnamed: \d+", name) is not None
        and pd.api.types.is_integer_dtype(col)
        and bool(col.is_monotonic_increasing)
    )


def _metadata_frame(df: pd.DataFrame, columns: list[str], origin: str) -> pd.DataFrame | None:
    if not columns:
        return None
    meta = pd.DataFrame(index=df.index)
    for column in columns:
        name = metadata_name(column)
        if name in meta.columns:
            name = column
        values = df[column]
        if name == "first_seen":
            values = parse_first_seen(values, origin)
        elif name == "family" and not pd.api.types.is_numeric_dtype(values):
            values = family_text(values)
        meta[name] = values
    return meta.reset_index(drop=True)


def _requested_metadata(columns: list[str], requested: list[str], origin: str) -> list[str]:
    out = []
    lower = {c.lower(): c for c in columns}
    for want in requested:
        column = want if want in columns else lower.get(want.lower())
        if column is None:
            raise DataError(
                f"Metadata column '{want}' is not in {origin}; its columns are: "
                f"{', '.join(columns[:20])}{' ...' if len(columns) > 20 else ''}.",
                "Fix dataset.metadata_columns (--metadata-column).",
            )
        out.append(column)
    return out


def table_to_dataset(
    df: pd.DataFrame, cfg: DatasetConfig, origin: str, name: str, label_column: str | None = None
) -> Dataset:
    """Split a table into label, features and metadata as described in the module docstring."""
    df = df.rename(columns=str)
    columns = list(df.columns)
    label = find_label_column(columns, cfg.label_column or label_column, origin)
    y = labels_from_column(df[label], origin)
    wanted = _requested_metadata(columns, cfg.metadata_columns, origin)
    meta_cols: list[str] = []
    features: dict[str, pd.Series] = {}
    dropped: dict[str, str] = {}
    for column in columns:
        if column == label:
            continue
        col = df[column]
        key = column.strip().lower()
        if column in wanted or key in METADATA_ALIASES:
            meta_cols.append(column)
        elif _is_index_column(column, col):
            dropped[column] = "row index written by pandas"
        elif pd.api.types.is_bool_dtype(col) or pd.api.types.is_numeric_dtype(col):
            features[column] = col
        elif key in IDENTIFIER_NAMES:
            dropped[column] = "identifier"
        else:
            numbers = _numeric_or_none(col, origin)
            if numbers is None:
                dropped[column] = "text (not numeric)"
            else:
                features[column] = numbers
    if not features:
        raise DataError(
            f"{origin} has no numeric feature columns (label '{label}', metadata "
            f"{meta_cols or 'none'}, dropped {sorted(dropped) or 'none'}).",
            "Check the separator and the column types of the file.",
        )
    names = list(features)
    with np.errstate(over="ignore"):
        X = np.column_stack(
            [s.to_numpy(dtype=np.float64, na_value=np.nan) for s in features.values()]
        )
        X = X.astype(np.float32)
    meta = _metadata_frame(df, meta_cols, origin)
    X, keep, nan_report = apply_nan_policy(X, cfg.nan_policy, names, origin)
    if keep is not None:
        y = y[keep]
        meta = None if meta is None else meta[keep].reset_index(drop=True)
    info: dict[str, Any] = {
        "label_column": label,
        "dropped_columns": dropped,
        "nan_report": nan_report,
        "constant_columns": constant_columns(X, names),
    }
    return Dataset(X=X, y=y, feature_names=names, metadata=meta, name=name, info=info)


def load_csv(path: Path, cfg: DatasetConfig, seed: int, label_column: str | None = None) -> Dataset:
    """A CSV file as a Dataset (``seed`` unused: tables are read whole, then subsampled)."""
    del seed
    df = read_csv(path)
    stem = Path(path.stem).stem if path.suffix.lower() in _COMPRESSED else path.stem
    return table_to_dataset(df, cfg, f"'{path}'", stem, label_column)


def load_parquet(path: Path, cfg: DatasetConfig, seed: int) -> Dataset:
    """A generic Parquet table as a Dataset, with the same column rules as CSV."""
    del seed
    df = read_parquet(path)
    return table_to_dataset(df, cfg, f"'{path}'", path.stem)
