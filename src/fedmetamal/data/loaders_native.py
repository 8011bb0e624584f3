"""The project's own dataset file: Parquet with the Dataset's exact contents and a JSON header.

Columns: every feature (float32, named after the feature), ``label`` (int8) and each metadata
column as ``meta:<name>``. The Parquet key-value metadata ``fedmetamal`` holds JSON
``{"format": "fedmetamal-dataset", "version": 1, "feature_names": [...], "schema": ...,
"name": ..., ...}`` so a file round-trips exactly (feature order, names, metadata dtypes) and is
recognised without trusting its extension. Features are written in row groups, so a
memory-mapped dataset is saved without loading it whole.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from fedmetamal.config import DatasetConfig
from fedmetamal.data.dataset import Dataset
from fedmetamal.data.loaders_common import CHUNK_ROWS, apply_nan_policy, check_file
from fedmetamal.errors import DataError

FORMAT_KEY = b"fedmetamal"
FORMAT_NAME = "fedmetamal-dataset"
FORMAT_VERSION = 1
LABEL = "label"
META_PREFIX = "meta:"


def _check_names(names: list[str]) -> None:
    dupes = sorted(n for n, count in Counter(names).items() if count > 1)
    clash = [n for n in names if n == LABEL or n.startswith(META_PREFIX)]
    if dupes or clash:
        raise DataError(
            f"Cannot save: feature names must be unique and not '{LABEL}' or start with "
            f"'{META_PREFIX}'; offending: {', '.join((dupes + clash)[:10])}.",
            "Rename those features before saving.",
        )


def _object_columns(ds: Dataset) -> list[str]:
    """Metadata columns of dtype object: Arrow would bring text back as pandas' string dtype."""
    assert ds.metadata is not None
    return [str(c) for c in ds.metadata.columns if ds.metadata[c].dtype == object]


def _restore_object_columns(meta: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    for column in columns:
        if column in meta.columns and meta[column].dtype != object:
            values = meta[column].astype(object)
            meta[column] = values.where(values.notna(), None)
    return meta


def save_dataset(ds: Dataset, path: Path | str) -> Path:
    """Write ``ds`` as a FedMetaMal dataset file (Parquet); returns the path written."""
    path = Path(path)
    names = [str(n) for n in ds.feature_names]
    _check_names(names)
    meta_table = None
    pandas_meta = None
    meta_columns: list[str] = []
    if ds.metadata is not None and len(ds.metadata.columns):
        meta = ds.metadata.rename(columns=str)
        meta_columns = list(meta.columns)
        try:
            meta_table = pa.Table.from_pandas(meta, preserve_index=False)
        except (pa.ArrowException, TypeError, ValueError) as err:
            raise DataError(
                f"Cannot save the metadata of dataset '{ds.name}': {err}.",
                "Give each metadata column a single type (text, number or date).",
            ) from None
        pandas_meta = json.loads(meta_table.schema.metadata[b"pandas"])
        meta_table = meta_table.replace_schema_metadata(None)
    header = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "feature_names": names,
        "schema": ds.info.get("schema"),
        "name": ds.name,
        "metadata_columns": meta_columns,
        "pandas_metadata": pandas_meta,
        "object_columns": [] if meta_table is None else _object_columns(ds),
    }
    fields = [pa.field(n, pa.float32()) for n in names] + [pa.field(LABEL, pa.int8())]
    if meta_table is not None:
        fields += [f.with_name(META_PREFIX + f.name) for f in meta_table.schema]
    schema = pa.schema(fields, metadata={FORMAT_KEY: json.dumps(header).encode()})
    path.parent.mkdir(parents=True, exist_ok=True)
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, max(ds.n_samples, 1), CHUNK_ROWS):
            block = np.asarray(ds.X[start : start + CHUNK_ROWS], dtype=np.float32)
            arrays: list[Any] = [pa.array(block[:, j]) for j in range(block.shape[1])]
            arrays.append(pa.array(ds.y[start : start + CHUNK_ROWS].astype(np.int8)))
            if meta_table is not None:
                arrays += meta_table.slice(start, block.shape[0]).columns
            writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
    return path


def read_header(path: Path) -> dict[str, Any] | None:
    """The JSON header of a FedMetaMal dataset file, or ``None`` for any other Parquet file."""
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowException, OSError):
        return None
    raw = (schema.metadata or {}).get(FORMAT_KEY)
    if raw is None:
        return None
    try:
        header = json.loads(raw)
    except ValueError:
        raise DataError(
            f"'{path}' has a damaged FedMetaMal header (not JSON).", "Re-create the file."
        ) from None
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        raise DataError(f"'{path}' has a FedMetaMal header of unknown format.", "Re-create it.")
    if not isinstance(header.get("version"), int) or header["version"] > FORMAT_VERSION:
        raise DataError(
            f"'{path}' is dataset file version {header.get('version')}; this FedMetaMal reads "
            f"version {FORMAT_VERSION}.",
            "Upgrade FedMetaMal, or re-save the dataset with this version.",
        )
    return header


def load_native(path: Path, cfg: DatasetConfig, seed: int) -> Dataset:
    """Read a file written by :func:`save_dataset` back into the same Dataset."""
    del seed
    check_file(path, "Dataset file")
    header = read_header(path)
    if header is None:
        raise DataError(
            f"'{path}' is not a FedMetaMal dataset file (no 'fedmetamal' Parquet metadata).",
            "Use --format parquet (or auto) to read it as a generic table.",
        )
    names = [str(n) for n in header["feature_names"]]
    meta_columns = [str(c) for c in header.get("metadata_columns") or []]
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as err:
        raise DataError(f"'{path}' cannot be read ({err}).", "Re-create the file.") from None
    d = len(names)
    if table.num_columns != d + 1 + len(meta_columns) or table.column_names[d] != LABEL:
        raise DataError(
            f"'{path}' has {table.num_columns} columns but its header describes {d} features, "
            f"a label and {len(meta_columns)} metadata columns.",
            "Re-create the file with save_dataset.",
        )
    X = np.empty((table.num_rows, d), dtype=np.float32, order="F")
    for j in range(d):
        X[:, j] = table.column(j).to_numpy()
    X = np.ascontiguousarray(X)
    y = table.column(d).to_numpy().astype(np.int8)
    meta = None
    if meta_columns:
        meta_table = table.select(list(range(d + 1, table.num_columns))).rename_columns(
            meta_columns
        )
        if header.get("pandas_metadata"):
            pandas_meta = json.dumps(header["pandas_metadata"]).encode()
            meta_table = meta_table.replace_schema_metadata({b"pandas": pandas_meta})
        meta = _restore_object_columns(meta_table.to_pandas(), header.get("object_columns") or [])
    X, keep, nan_report = apply_nan_policy(X, cfg.nan_policy, names, f"'{path}'")
    if keep is not None:
        y = y[keep]
        meta = None if meta is None else meta[keep].reset_index(drop=True)
    info = {"schema": header.get("schema"), "nan_report": nan_report}
    name = str(header.get("name") or path.stem)
    return Dataset(X=X, y=y, feature_names=names, metadata=meta, name=name, info=info)
