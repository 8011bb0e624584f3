"""ember-v3 on hostile input: every file gives a full finite row or a reason, never an exception."""

from __future__ import annotations

import os
import resource
import struct
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedmetamal.features.ember.extractor import extract_path
from fedmetamal.features.ember.layout import GROUP_BY_NAME, WIDTH
from fedmetamal.features.extract_file import extract_file
from fedmetamal.features.outcome import Failure, Row
from fedmetamal.features.schema import get_schema

from .pe_bytes import lfanew, patched

EMBER = get_schema("ember-v3")


def _row(path: Path) -> Row:
    record = extract_file(path, EMBER)
    assert isinstance(record.outcome, Row), record.outcome
    assert len(record.outcome.values) == WIDTH
    assert np.isfinite(np.asarray(record.outcome.values, dtype=np.float64)).all()
    return record.outcome


def test_empty_file_is_a_failure_with_a_reason(tmp_path: Path) -> None:
    (tmp_path / "empty").write_bytes(b"")
    outcome = extract_file(tmp_path / "empty", EMBER).outcome
    assert isinstance(outcome, Failure) and outcome.kind == "empty file"


@pytest.mark.parametrize("data", [b"M", b"MZ", b"MZ" + b"\0" * 62, b"\xff" * 5000, b"PK\3\4"])
def test_tiny_and_non_pe_files_get_a_row_marked_not_pe(tmp_path: Path, data: bytes) -> None:
    (tmp_path / "f").write_bytes(data)
    row = _row(tmp_path / "f")
    assert row.values[2] == 0 and row.warnings[0].startswith("not a PE file")


def test_truncated_copies_of_a_real_pe_never_fail(small_pe: bytes, tmp_path: Path) -> None:
    for cut in (64, 200, lfanew(small_pe) + 30, 1024, len(small_pe) // 2, len(small_pe) - 1):
        (tmp_path / "t").write_bytes(small_pe[:cut])
        _row(tmp_path / "t")


def test_absurd_section_and_directory_values_keep_a_row(small_pe: bytes, tmp_path: Path) -> None:
    base = lfanew(small_pe)
    optional = base + 24
    sections = optional + int.from_bytes(small_pe[base + 20 : base + 22], "little")
    data = patched(small_pe, base + 6, 0xFFFF, 2)  # NumberOfSections
    data = patched(data, sections + 16, 0xFFFFFFFF, 4)  # SizeOfRawData of section 0
    data = patched(data, sections + 20, 0x7FFFFFF0, 4)  # PointerToRawData far past EOF
    data = patched(data, sections + 40 + 12, 0, 4)  # overlapping virtual addresses
    (tmp_path / "absurd").write_bytes(data)
    start = time.perf_counter()
    row = _row(tmp_path / "absurd")
    assert time.perf_counter() - start < 20
    warnings = GROUP_BY_NAME["pefilewarnings"]
    assert row.values[warnings.stop - 1] >= 1  # pefile noticed, and so do the warning columns


def test_a_looping_resource_tree_terminates(small_pe: bytes, tmp_path: Path) -> None:
    """A resource directory whose entry points back at itself must not recurse forever."""
    base = lfanew(small_pe)
    magic = int.from_bytes(small_pe[base + 24 : base + 26], "little")
    directory = base + 24 + (112 if magic == 0x20B else 96) + 2 * 8  # RESOURCE entry
    rva = 0x1000
    # Find the file offset of RVA 0x1000 via the first section header.
    sections = base + 24 + int.from_bytes(small_pe[base + 20 : base + 22], "little")
    va, _, raw = struct.unpack_from("<III", small_pe, sections + 12)
    offset = raw + (rva - va)
    node = struct.pack("<IIHHHH", 0, 0, 0, 0, 0, 1) + struct.pack("<II", 1, 0x80000000)
    data = small_pe[:offset] + node + small_pe[offset + len(node) :]
    data = patched(patched(data, directory, rva, 4), directory + 4, len(node), 4)
    (tmp_path / "loop").write_bytes(data)
    _row(tmp_path / "loop")


def test_a_large_file_is_mapped_not_copied(small_pe: bytes, tmp_path: Path) -> None:
    path = tmp_path / "big.exe"
    with path.open("wb") as handle:
        handle.write(small_pe)
        handle.truncate(64 * 1024 * 1024)  # sparse: 64 MB of zero overlay
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    vector = extract_path(path)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert vector is not None and vector.values[0] == 64 * 1024 * 1024
    # The mapped pages themselves count (64 MB); one extra copy of the file would add 64 more.
    assert grown_mb < 64 + 40, f"peak memory grew by {grown_mb:.0f} MB for a 64 MB file"


@st.composite
def mutants(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "zero"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[at] ^= draw(st.integers(1, 255))
        elif kind == "truncate":
            del data[max(at, 1) :]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=32))
        else:
            data[at : at + 4] = b"\xff\xff\xff\x7f"
    return bytes(data)


def test_mutated_real_pe_files_always_give_a_finite_row(
    pe_files: list[Path], tmp_path_factory: pytest.TempPathFactory
) -> None:
    seeds = [p.read_bytes() for p in sorted(pe_files, key=lambda p: p.stat().st_size)[:4]]
    target = tmp_path_factory.mktemp("ember-fuzz") / "mutant.exe"

    @settings(
        max_examples=int(os.environ.get("FEDMETAMAL_FUZZ_EXAMPLES", "40")),
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(mutants(seeds))
    def check(data: bytes) -> None:
        target.write_bytes(data)
        _row(target)

    check()
