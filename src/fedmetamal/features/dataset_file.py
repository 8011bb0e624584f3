"""Dataset files written by ``fedmetamal extract``, and the schema stamp each one carries.

A file is a Parquet table: ``label`` (int8: 1 malware, 0 benign, -1 unlabelled), the schema's
feature columns in order (the schema's ``value_type``: uint64 for exact header values,
float32 for EMBER's), then per-file metadata: ``sha256``,
``path``, ``size``, ``family``, ``first_seen`` (when labels give it) and ``warnings``. The
Parquet key-value metadata ``fedmetamal.features`` holds ``{"name", "version", "columns"}`` so a
file's meaning travels with it and scoring can refuse a file made with another schema.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from fedmetamal.errors import DataError
from fedmetamal.features.schema import FeatureSchema

SCHEMA_KEY = b"fedmetamal.features"
LABEL = "label"
#: Metadata columns every extracted file has, after the features.
BASE_METADATA = ("sha256", "path", "size", "family", "warnings")


class SchemaMismatchError(DataError):
    """A dataset or model was made with a different feature schema than the one asked for."""


def schema_stamp(path: Path) -> dict[str, Any] | None:
    """The feature schema stored in a Parquet file, or ``None`` when it carries none."""
    try:
        metadata = pq.read_schema(path).metadata or {}
    except (pa.ArrowException, OSError):
        return None
    raw = metadata.get(SCHEMA_KEY)
    if raw is None:
        return None
    try:
        stamp = json.loads(raw)
    except ValueError:
        stamp = None
    if (
        not isinstance(stamp, dict)
        or not isinstance(stamp.get("name"), str)
        or not isinstance(stamp.get("version"), int)
        or not isinstance(stamp.get("columns"), list)
    ):
        raise DataError(
            f"'{path}' has a damaged feature-schema stamp.",
            "Re-create it with fedmetamal extract.",
        )
    return stamp


def check_schema(path: Path, schema: FeatureSchema) -> dict[str, Any]:
    """The stamp of ``path`` if it matches ``schema``; a SchemaMismatchError saying how not."""
    stamp = schema_stamp(path)
    want = f"'{schema.name}' v{schema.version} ({schema.width} columns)"
    if stamp is None:
        raise SchemaMismatchError(
            f"'{path}' carries no feature schema; expected {want}.",
            "Use a dataset written by fedmetamal extract.",
        )
    have = f"'{stamp['name']}' v{stamp['version']} ({len(stamp['columns'])} columns)"
    if stamp["name"] != schema.name or stamp["version"] != schema.version:
        raise SchemaMismatchError(
            f"'{path}' holds features of schema {have}, not {want}.",
            f"Extract the files again with --schema {schema.name}, or use a matching model.",
        )
    if list(stamp["columns"]) != list(schema.columns):
        pairs = enumerate(zip(stamp["columns"], schema.columns, strict=False))
        first = next((i for i, (a, b) in pairs if a != b), min(len(stamp["columns"]), schema.width))
        raise SchemaMismatchError(
            f"'{path}' says schema {have} but its columns differ from {want} at position {first}.",
            "Re-create the file with this version of fedmetamal extract.",
        )
    return stamp


def arrow_schema(schema: FeatureSchema, with_first_seen: bool) -> pa.Schema:
    """The Parquet layout of a dataset file for ``schema``, stamped with its metadata."""
    fields = [pa.field(LABEL, pa.int8())]
    value = {"uint64": pa.uint64(), "float32": pa.float32()}[schema.value_type]
    fields += [pa.field(c, value) for c in schema.columns]
    fields += [
        pa.field("sha256", pa.string()),
        pa.field("path", pa.string()),
        pa.field("size", pa.int64()),
        pa.field("family", pa.string()),
    ]
    if with_first_seen:
        fields.append(pa.field("first_seen", pa.string()))
    fields.append(pa.field("warnings", pa.string()))
    stamp = json.dumps(schema.describe()).encode()
    return pa.schema(fields, metadata={SCHEMA_KEY: stamp})


def write_rows(path: Path, rows: list[dict[str, Any]], layout: pa.Schema) -> None:
    """Write ``rows`` (one dict per file) atomically: a crash leaves the old file intact."""
    table = pa.Table.from_pylist(rows, schema=layout)
    tmp = path.with_name(path.name + ".partial")
    pq.write_table(table, tmp)
    tmp.replace(path)


def read_rows(path: Path, schema: FeatureSchema) -> tuple[list[dict[str, Any]], bool]:
    """Rows of an existing dataset file (checked against ``schema``) and whether it has
    ``first_seen``, so a resumed run appends to it."""
    check_schema(path, schema)
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as err:
        raise DataError(f"'{path}' cannot be read ({err}).", "Delete it to start over.") from None
    return table.to_pylist(), "first_seen" in table.column_names
