"""Fuzzing pe-header extraction with mutated real PE files (bounded budget, runs in CI).

Every mutant must give a row of 50 non-negative integers or a failure with a reason, never an
exception; whenever pefile accepts a mutant, the row must hold exactly pefile's values, and
when only we accept it, the row must carry the truncated-section-table warning.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedmetamal.features.extract_file import extract_file
from fedmetamal.features.outcome import Failure, Row
from fedmetamal.features.pe_header import COLUMNS, PE_HEADER

from .pe_bytes import lfanew, patched, pefile_values

#: Only the first bytes matter to pe-header; mutating a 4 KB prefix keeps each example fast.
PREFIX = 4096
#: (offset from e_lfanew, width) of fields worth setting to absurd values.
_FIELDS = [(6, 2), (20, 2), (24, 2), (24 + 92, 4), (24 + 108, 4), (24 + 60, 4)]


@pytest.fixture(scope="module")
def seeds(pe_files: list[Path]) -> list[bytes]:
    return [p.read_bytes()[:PREFIX] for p in pe_files[:8]]


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "mutant.exe"


@st.composite
def mutants(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    data = bytearray(draw(st.sampled_from(seeds)))
    base = lfanew(bytes(data))
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "absurd", "lfanew"]))
        if kind == "flip" and data:
            at = draw(st.integers(0, min(len(data), base + 400) - 1))
            data[at] ^= draw(st.integers(1, 255))
        elif kind == "truncate":
            del data[draw(st.integers(0, len(data))) :]
        elif kind == "insert":
            at = draw(st.integers(0, min(len(data), base + 300)))
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif kind == "absurd":
            offset, width = draw(st.sampled_from(_FIELDS))
            value = draw(st.sampled_from([0, 1, 2 ** (8 * width) - 1, 2 ** (8 * width - 1)]))
            if base + offset + width <= len(data):
                data = bytearray(patched(bytes(data), base + offset, value, width))
        elif kind == "lfanew" and len(data) >= 64:
            value = draw(st.sampled_from([0, 4, 60, len(data) - 2, len(data), 2**32 - 1]))
            data = bytearray(patched(bytes(data), 60, value, 4))
    return bytes(data)


def test_mutated_pe_files_never_raise_and_agree_with_pefile(
    seeds: list[bytes], target: Path
) -> None:
    @settings(
        max_examples=int(os.environ.get("FEDMETAMAL_FUZZ_EXAMPLES", "100")),
        deadline=500,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(mutants(seeds))
    def check(data: bytes) -> None:
        target.write_bytes(data)
        record = extract_file(target, PE_HEADER)
        expected = pefile_values(data)
        if isinstance(record.outcome, Failure):
            assert ": " in record.outcome.reason
            assert expected is None, f"pefile accepts what we refused: {record.outcome.reason}"
        else:
            assert isinstance(record.outcome, Row) and len(record.outcome.values) == 50
            assert all(isinstance(v, int) and v >= 0 for v in record.outcome.values)
            if expected is None:  # the one documented difference: a cut-off section table
                assert any("section table truncated" in w for w in record.outcome.warnings)
            else:
                assert dict(zip(COLUMNS, record.outcome.values, strict=True)) == expected

    check()
