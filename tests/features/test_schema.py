"""Schemas: the pe-header columns, the registry, and the schema stamp on dataset files."""

from __future__ import annotations

import csv
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fedmetamal.data.sources import resolve_shared_data
from fedmetamal.errors import DataError
from fedmetamal.features.dataset_file import (
    SchemaMismatchError,
    arrow_schema,
    check_schema,
    schema_stamp,
    write_rows,
)
from fedmetamal.features.outcome import Failure
from fedmetamal.features.pe_header import COLUMNS, PE_HEADER
from fedmetamal.features.schema import FeatureSchema, get_schema, schema_names


def test_pe_header_has_fifty_fields_from_dos_to_rva_count() -> None:
    assert PE_HEADER.width == 50
    assert COLUMNS[0] == "e_magic" and COLUMNS[16] == "e_lfanew"
    assert COLUMNS[17] == "NumberOfSections" and COLUMNS[-1] == "NumberOfRvaAndSizes"


@pytest.mark.shared_data
def test_pe_header_columns_match_the_shared_dataset_header() -> None:
    try:
        path = resolve_shared_data("pe-headers")
    except DataError as err:
        pytest.skip(str(err))
    with path.open(newline="") as fh:
        header = next(csv.reader(fh))
    assert tuple(header[:-1]) == PE_HEADER.columns and header[-1] == "Malware"


def test_schemas_are_found_by_name_and_alias() -> None:
    assert "pe-header" in schema_names()
    assert get_schema("pe-header") is PE_HEADER
    assert get_schema("PE-Headers") is PE_HEADER


def test_unknown_schema_names_the_known_ones_and_a_close_match() -> None:
    with pytest.raises(DataError, match="Did you mean 'pe-header'") as info:
        get_schema("pe-heder")
    assert "known: " in str(info.value)


def _other_schema(name: str, version: int, columns: tuple[str, ...]) -> FeatureSchema:
    return FeatureSchema(name, version, columns, lambda read_at, size: Failure("x"), "test")


def _dataset(tmp_path: Path) -> Path:
    path = tmp_path / "d.parquet"
    row = {"label": 1, **dict.fromkeys(COLUMNS, 7), "sha256": "ab", "path": "p", "size": 3}
    write_rows(path, [row], arrow_schema(PE_HEADER, with_first_seen=False))
    return path


def test_dataset_files_carry_the_schema_stamp(tmp_path: Path) -> None:
    path = _dataset(tmp_path)
    stamp = check_schema(path, PE_HEADER)
    assert stamp == {"name": "pe-header", "version": 1, "columns": list(COLUMNS)}
    assert schema_stamp(path) == stamp


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        (_other_schema("ember-v3", 3, ("a",)), "holds features of schema 'pe-header' v1"),
        (_other_schema("pe-header", 2, COLUMNS), "not 'pe-header' v2"),
        (_other_schema("pe-header", 1, ("e_cblp", *COLUMNS[1:])), "differ .* at position 0"),
    ],
)
def test_a_schema_mismatch_is_refused_with_a_clear_message(
    tmp_path: Path, schema: FeatureSchema, message: str
) -> None:
    with pytest.raises(SchemaMismatchError, match=message):
        check_schema(_dataset(tmp_path), schema)


def test_a_parquet_file_without_a_stamp_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"a": [1]}), path)
    assert schema_stamp(path) is None
    with pytest.raises(SchemaMismatchError, match="carries no feature schema"):
        check_schema(path, PE_HEADER)


def test_a_damaged_stamp_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.parquet"
    table = pa.table({"a": [1]}).replace_schema_metadata({b"fedmetamal.features": b"{"})
    pq.write_table(table, path)
    with pytest.raises(DataError, match="damaged feature-schema stamp"):
        schema_stamp(path)
