"""Helpers to read and damage PE images in tests, and pefile's view of them as the reference."""

from __future__ import annotations

from pathlib import Path

import pefile

from fedmetamal.features.extract_file import extract_file
from fedmetamal.features.outcome import FileRecord
from fedmetamal.features.pe_header import COLUMNS, PE_HEADER


def lfanew(data: bytes) -> int:
    return int.from_bytes(data[60:64], "little")


def patched(data: bytes, offset: int, value: int, width: int) -> bytes:
    """``data`` with the little-endian integer at ``offset`` replaced."""
    return data[:offset] + value.to_bytes(width, "little") + data[offset + width :]


def pefile_values(data: bytes) -> dict[str, int] | None:
    """The pe-header fields as pefile (fast_load) reports them, or None when it rejects the file."""
    try:
        pe = pefile.PE(data=data, fast_load=True)
    except pefile.PEFormatError:
        return None
    values = {}
    for column in COLUMNS:
        for header in (pe.DOS_HEADER, pe.FILE_HEADER, pe.OPTIONAL_HEADER):
            if hasattr(header, column):
                values[column] = getattr(header, column)
                break
    return values


def extract_bytes(tmp_path: Path, data: bytes, name: str = "sample.bin") -> FileRecord:
    """Write ``data`` to a file and extract it with the pe-header schema."""
    path = tmp_path / name
    path.write_bytes(data)
    return extract_file(path, PE_HEADER)
