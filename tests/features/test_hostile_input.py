"""Hostile input: every damaged, odd or huge file gives a row or a reason, never an exception."""

from __future__ import annotations

import os
import tracemalloc
from pathlib import Path

import pytest

from fedmetamal.features.extract_file import extract_file
from fedmetamal.features.outcome import Failure, Outcome, Row
from fedmetamal.features.pe_header import COLUMNS, PE_HEADER
from fedmetamal.features.schema import FeatureSchema, ReadAt

from .pe_bytes import extract_bytes, lfanew, patched, pefile_values


def _reason(tmp_path: Path, data: bytes) -> str:
    record = extract_bytes(tmp_path, data)
    assert isinstance(record.outcome, Failure), record.outcome
    return record.outcome.reason


def _mz(lfanew_value: int, tail: bytes = b"") -> bytes:
    return b"MZ" + b"\0" * 58 + lfanew_value.to_bytes(4, "little") + tail


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty file: zero bytes"),
        (b"M", "truncated: DOS header ends past EOF (1 of 64 bytes)"),
        (b"MZ\x90\0", "truncated: DOS header ends past EOF (4 of 64 bytes)"),
        (b"\x7fELF" + b"\0" * 200, "not a PE file: no MZ header"),
        (b"ZM" + b"\0" * 100, "not a PE file: ZM executable"),
        (_mz(10_000), "not a PE file: e_lfanew 10000 points past EOF (64 bytes)"),
        (_mz(64), "not a PE file: no NT headers at e_lfanew 64"),
        (_mz(64, b"NE\0\0" + b"\0" * 40), "not a PE file: NE executable"),
        (_mz(64, b"PX\0\0" + b"\0" * 40), "not a PE file: bad NT signature 0x00005850"),
        (_mz(64, b"PE\0\0" + b"\0" * 10), "truncated: file header ends past EOF"),
        (_mz(64, b"PE\0\0" + b"\0" * 20), "truncated: optional header ends past EOF (0 of 96"),
    ],
)
def test_broken_headers_give_a_reason(tmp_path: Path, data: bytes, reason: str) -> None:
    assert _reason(tmp_path, data).startswith(reason)
    assert pefile_values(data) is None, "pefile should refuse these too"


def test_absurd_counts_still_give_the_raw_values(small_pe: bytes, tmp_path: Path) -> None:
    base = lfanew(small_pe)
    data = patched(small_pe, base + 6, 0xFFFF, 2)  # NumberOfSections
    data = patched(data, base + 20, 0xFFFF, 2)  # SizeOfOptionalHeader
    pe32_plus = int.from_bytes(small_pe[base + 24 : base + 26], "little") == 0x20B
    data = patched(data, base + 24 + (108 if pe32_plus else 92), 0xFFFFFFFF, 4)
    record = extract_bytes(tmp_path, data)
    assert isinstance(record.outcome, Row)
    row = dict(zip(COLUMNS, record.outcome.values, strict=True))
    assert row["NumberOfSections"] == 0xFFFF and row["SizeOfOptionalHeader"] == 0xFFFF
    assert row["NumberOfRvaAndSizes"] == 0xFFFFFFFF
    assert row == pefile_values(data)
    assert "NumberOfSections 65535 exceeds 96" in record.outcome.warnings


def test_overlapping_headers_do_not_confuse_the_parser(small_pe: bytes, tmp_path: Path) -> None:
    """e_lfanew = 4 puts the NT headers inside the DOS header, as some tiny PE files do."""
    body = bytearray(small_pe[lfanew(small_pe) :])
    data = bytearray(b"MZ\0\0" + bytes(body))
    data[60:64] = (4).to_bytes(4, "little")
    record = extract_bytes(tmp_path, bytes(data))
    assert isinstance(record.outcome, Row)
    assert dict(zip(COLUMNS, record.outcome.values, strict=True)) == pefile_values(bytes(data))


def test_files_above_the_size_limit_are_refused_with_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "huge.exe"
    with path.open("wb") as fh:
        fh.truncate(3 * 1024 * 1024)
    record = extract_file(path, PE_HEADER, max_bytes=2 * 1024 * 1024)
    assert record.outcome == Failure("too large: 3 MB exceeds the 2 MB limit (--max-size-mb)")
    assert record.size == 3 * 1024 * 1024 and record.sha256 is None


def test_a_200_mb_file_is_streamed_not_copied(small_pe: bytes, tmp_path: Path) -> None:
    path = tmp_path / "big.exe"
    with path.open("wb") as fh:
        fh.write(small_pe)
        fh.truncate(200 * 1024 * 1024)  # sparse: cheap on disk, still 200 MB to hash
    tracemalloc.start()
    record = extract_file(path, PE_HEADER)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert isinstance(record.outcome, Row)
    assert peak < 8 * 1024 * 1024, f"peak {peak} bytes: the file was copied"


def test_folders_and_fifos_are_not_opened_as_files(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    assert extract_file(fifo, PE_HEADER).outcome == Failure("not a regular file: skipped")
    assert extract_file(tmp_path, PE_HEADER).outcome == Failure("not a regular file: skipped")
    missing = extract_file(tmp_path / "gone.exe", PE_HEADER).outcome
    assert missing == Failure("unreadable: No such file or directory")


def _raises(read_at: ReadAt, size: int) -> Outcome:
    raise IndexError("boom")


def test_an_extractor_bug_becomes_a_failure_record(tmp_path: Path) -> None:
    path = tmp_path / "a.exe"
    path.write_bytes(b"MZ")
    broken = FeatureSchema("broken", 1, ("a",), _raises, "raises")
    assert extract_file(path, broken).outcome == Failure("extractor error: IndexError: boom")


def test_a_cut_off_section_table_keeps_the_row_with_a_warning(
    small_pe: bytes, tmp_path: Path
) -> None:
    """The one documented difference from pefile, which refuses such files."""
    base = lfanew(small_pe)
    sections = base + 24 + int.from_bytes(small_pe[base + 20 : base + 22], "little")
    data = small_pe[: sections + 17]
    record = extract_bytes(tmp_path, data)
    assert isinstance(record.outcome, Row)
    assert record.outcome.warnings == (
        "section table truncated in header 0 (pefile refuses such files)",
    )
    assert pefile_values(data) is None
