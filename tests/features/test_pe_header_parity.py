"""pe-header rows equal what pefile reports for the same fields, on real and damaged PE files."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedmetamal.features.outcome import Failure, Row
from fedmetamal.features.pe_header import COLUMNS

from .pe_bytes import extract_bytes, lfanew, patched, pefile_values


def test_rows_from_real_pe_files_equal_pefile(pe_files: list[Path], tmp_path: Path) -> None:
    kinds = set()
    for path in pe_files:
        data = path.read_bytes()
        record = extract_bytes(tmp_path, data)
        assert isinstance(record.outcome, Row), (path.name, record.outcome)
        row = dict(zip(COLUMNS, record.outcome.values, strict=True))
        assert row == pefile_values(data), path.name
        kinds.add(row["Magic"])
    assert kinds == {0x10B, 0x20B}, "the corpus should hold PE32 and PE32+ files"


def test_record_has_size_and_sha256(pe_files: list[Path], tmp_path: Path) -> None:
    import hashlib

    data = pe_files[0].read_bytes()
    record = extract_bytes(tmp_path, data)
    assert record.size == len(data)
    assert record.sha256 == hashlib.sha256(data).hexdigest()


def _optional_offset(data: bytes) -> int:
    return lfanew(data) + 24


@pytest.mark.parametrize("keep", [69, 80, 95])
def test_short_optional_header_is_zero_padded_like_pefile(
    small_pe: bytes, tmp_path: Path, keep: int
) -> None:
    data = patched(small_pe, _optional_offset(small_pe), 0x10B, 2)
    data = data[: _optional_offset(data) + keep]
    record = extract_bytes(tmp_path, data)
    assert isinstance(record.outcome, Row)
    assert dict(zip(COLUMNS, record.outcome.values, strict=True)) == pefile_values(data)
    assert any("rest read as zero" in w for w in record.outcome.warnings)


def test_unknown_optional_magic_is_read_as_pe32_like_pefile(
    small_pe: bytes, tmp_path: Path
) -> None:
    data = patched(small_pe, _optional_offset(small_pe), 0x1234, 2)
    record = extract_bytes(tmp_path, data)
    assert isinstance(record.outcome, Row)
    assert dict(zip(COLUMNS, record.outcome.values, strict=True)) == pefile_values(data)
    assert record.outcome.warnings == (
        "unknown optional header magic 0x1234, read as PE32 like pefile",
    )


def test_too_short_optional_header_is_refused_like_pefile(small_pe: bytes, tmp_path: Path) -> None:
    data = small_pe[: _optional_offset(small_pe) + 60]
    record = extract_bytes(tmp_path, data)
    assert pefile_values(data) is None
    assert isinstance(record.outcome, Failure)
    assert record.outcome.reason.startswith("truncated: optional header ends past EOF (60 of")
