"""Reading a dataset file of any supported format: detection, then one loader per format.

Formats: ``csv`` and ``parquet`` tables (see loaders_tabular), ``npz`` archives in the BODMAS
layout (loaders_npz), ``ember`` vectorized folders (loaders_ember) and ``fedmetamal``, the
project's own Parquet file (loaders_native, written by :func:`save_dataset`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fedmetamal.config import DatasetConfig
from fedmetamal.data.dataset import Dataset
from fedmetamal.data.loaders_common import stratified_sample_index, subsample
from fedmetamal.data.loaders_ember import is_ember_folder, load_ember
from fedmetamal.data.loaders_extracted import is_extracted, load_extracted
from fedmetamal.data.loaders_native import load_native, read_header, save_dataset
from fedmetamal.data.loaders_npz import load_npz
from fedmetamal.data.loaders_tabular import load_csv, load_parquet
from fedmetamal.errors import DataError

__all__ = [
    "LOADERS",
    "detect_format",
    "load_path",
    "save_dataset",
    "stratified_sample_index",
    "subsample",
]

Loader = Callable[[Path, DatasetConfig, int], Dataset]

_CSV_SUFFIXES = (".csv", ".tsv", ".csv.gz", ".csv.bz2", ".csv.xz", ".csv.zip", ".csv.zst")
_FORMAT_FIX = "Set the format with --format (csv, parquet, npz, ember or fedmetamal)."


def _load_any_parquet(path: Path, cfg: DatasetConfig, seed: int) -> Dataset:
    """A Parquet file: the project's own format when it carries its header, a file written by
    ``fedmetamal extract`` when it carries a feature-schema stamp, else a table."""
    if path.is_file() and read_header(path) is not None:
        return load_native(path, cfg, seed)
    if is_extracted(path):
        return load_extracted(path, cfg, seed)
    return load_parquet(path, cfg, seed)


#: format name -> loader(path, cfg, seed)
LOADERS: dict[str, Loader] = {
    "csv": load_csv,
    "parquet": _load_any_parquet,
    "npz": load_npz,
    "ember": load_ember,
    "fedmetamal": load_native,
}


def detect_format(path: Path) -> str:
    """The format of an existing path, from its extension or, failing that, its first bytes."""
    if not path.exists():
        raise DataError(f"'{path}' does not exist.", "Check the path.")
    if path.is_dir():
        if is_ember_folder(path):
            return "ember"
        entries = sorted(p.name for p in path.iterdir())[:8]
        raise DataError(
            f"Folder '{path}' is not an EMBER vectorized folder (no X_train.dat + y_train.dat "
            f"or X_test.dat + y_test.dat); it holds: {', '.join(entries) or 'nothing'}.",
            "Pass a CSV, Parquet or NPZ file, or the folder with EMBER's .dat files.",
        )
    lower = path.name.lower()
    if lower.endswith(_CSV_SUFFIXES):
        return "csv"
    if lower.endswith((".parquet", ".pq")):
        return "fedmetamal" if read_header(path) is not None else "parquet"
    if lower.endswith(".npz"):
        return "npz"
    if lower.endswith(".dat"):
        raise DataError(
            f"'{path}' is a single .dat file; EMBER data is read as a folder.",
            "Pass the folder that holds X_train.dat and y_train.dat.",
        )
    with path.open("rb") as fh:
        magic = fh.read(4)
    if magic == b"PAR1":
        return "fedmetamal" if read_header(path) is not None else "parquet"
    if magic == b"PK\x03\x04":
        return "npz"
    raise DataError(f"Cannot tell the format of '{path}' from its name or contents.", _FORMAT_FIX)


def load_path(path: Path, cfg: DatasetConfig, seed: int) -> tuple[Dataset, str]:
    """Load a file or folder with ``cfg.format`` (or the detected format); returns the format."""
    fmt = detect_format(path) if cfg.format == "auto" else cfg.format
    return LOADERS[fmt](path, cfg, seed), fmt
