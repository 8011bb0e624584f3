"""NumPy ``.npz`` archives in the BODMAS layout: arrays ``X`` (n x d) and ``y``, plus metadata.

BODMAS ships ``bodmas.npz`` and ``bodmas_metadata.csv`` (columns ``sha``, ``timestamp``,
``family``; family empty for benign samples). The metadata file is looked up beside the archive
as ``<stem>_metadata.csv``, then ``bodmas_metadata.csv``. Archives are read with
``allow_pickle=False``: a pickled (object) array could run code, so it is refused.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from fedmetamal.config import DatasetConfig
from fedmetamal.data.dataset import Dataset
from fedmetamal.data.loaders_common import (
    apply_nan_policy,
    check_file,
    check_label_values,
    ember_schema,
    family_text,
    feature_names_for,
    metadata_name,
    parse_first_seen,
)
from fedmetamal.data.loaders_tabular import read_csv
from fedmetamal.errors import DataError


def _array(archive: np.lib.npyio.NpzFile, key: str, path: Path) -> np.ndarray:
    if key not in archive.files:
        raise DataError(
            f"Archive '{path}' has no array '{key}' "
            f"(it has: {', '.join(archive.files) or 'none'}).",
            "Save the features as 'X' and the labels as 'y' (np.savez(path, X=X, y=y)).",
        )
    try:
        arr = archive[key]
    except ValueError as err:
        raise DataError(
            f"Array '{key}' in '{path}' cannot be read without pickle ({err}).",
            "Save plain numeric arrays (no dtype=object); pickled arrays are refused for safety.",
        ) from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise DataError(
            f"Array '{key}' in '{path}' has dtype {arr.dtype}, not numbers.",
            "Save numeric features and labels.",
        )
    return arr


def metadata_path(path: Path) -> Path | None:
    """The metadata CSV that belongs to an archive, or ``None`` when there is none."""
    for candidate in (
        path.with_name(f"{path.stem}_metadata.csv"),
        path.parent / "bodmas_metadata.csv",
    ):
        if candidate.is_file():
            return candidate
    return None


def read_metadata(meta_path: Path, n: int, data_path: Path) -> pd.DataFrame:
    """Metadata rows with library names (sha -> sha256, timestamp -> first_seen in UTC)."""
    df = read_csv(meta_path)
    if len(df) != n:
        raise DataError(
            f"Metadata file '{meta_path}' has {len(df)} rows but '{data_path}' has {n} samples.",
            "Use the metadata file that belongs to this data file, or remove it.",
        )
    df = df.rename(columns={c: metadata_name(str(c)) for c in df.columns})
    df = df.loc[:, ~df.columns.duplicated()]
    if "first_seen" in df.columns:
        df["first_seen"] = parse_first_seen(df["first_seen"], f"'{meta_path}'")
    if "family" in df.columns:
        df["family"] = family_text(df["family"])
    return df.reset_index(drop=True)


def load_npz(path: Path, cfg: DatasetConfig, seed: int) -> Dataset:
    """An ``.npz`` archive with ``X`` and ``y`` (and optional ``feature_names``) as a Dataset."""
    del seed
    check_file(path, "NPZ file")
    with path.open("rb") as fh:
        magic = fh.read(6)
    if not magic.startswith((b"PK", b"\x93NUMPY")):
        raise DataError(
            f"'{path}' is not a readable .npz archive (no zip signature at its start).",
            "Save it with numpy.savez / savez_compressed, or set --format to its real format.",
        )
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as err:
        raise DataError(
            f"'{path}' is not a readable .npz archive ({err}).",
            "Save it with numpy.savez / savez_compressed.",
        ) from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(
            f"'{path}' holds a single array, not an archive with 'X' and 'y'.",
            "Save it with np.savez(path, X=X, y=y).",
        )
    with archive:
        X = _array(archive, "X", path)
        y_raw = _array(archive, "y", path)
        names = None
        if "feature_names" in archive.files:
            stored = archive["feature_names"]
            if stored.dtype.kind == "U" and stored.shape == (X.shape[1] if X.ndim == 2 else -1,):
                names = [str(s) for s in stored]
    if X.ndim != 2:
        raise DataError(
            f"'X' in '{path}' has shape {X.shape}; it must be 2-D (samples x features)."
        )
    y_raw = y_raw.reshape(-1)
    if y_raw.shape[0] != X.shape[0]:
        raise DataError(
            f"'{path}' has {X.shape[0]} feature rows but {y_raw.shape[0]} labels.",
            "Save one label per row of X.",
        )
    y = check_label_values(y_raw, f"'{path}'")
    with np.errstate(over="ignore"):
        X = np.asarray(X, dtype=np.float32)
    names = names or feature_names_for(X.shape[1])
    meta_file = metadata_path(path)
    meta = None if meta_file is None else read_metadata(meta_file, X.shape[0], path)
    X, keep, nan_report = apply_nan_policy(X, cfg.nan_policy, names, f"'{path}'")
    if keep is not None:
        y = y[keep]
        meta = None if meta is None else meta[keep].reset_index(drop=True)
    info = {
        "schema": ember_schema(X.shape[1]),
        "metadata_file": None if meta_file is None else str(meta_file),
        "nan_report": nan_report,
    }
    return Dataset(X=X, y=y, feature_names=names, metadata=meta, name=path.stem, info=info)
