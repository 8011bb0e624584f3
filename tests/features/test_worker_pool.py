"""The parallel path: per-file timeouts, crashed workers and memory blow-ups become records."""

from __future__ import annotations

import os
import time
from pathlib import Path

from fedmetamal.features.outcome import Failure, Outcome, Row
from fedmetamal.features.schema import FeatureSchema, ReadAt
from fedmetamal.features.worker_pool import WorkerPool


def _misbehave(read_at: ReadAt, size: int) -> Outcome:
    """Test extractor: what the file says it should do (hang, crash, eat memory, or work)."""
    what = read_at(0, 16)
    if what == b"hang":
        time.sleep(60)
    if what == b"crash":
        os._exit(3)
    if what == b"eat":
        return Row((len(bytearray(4 << 30)),))
    return Row((size,))


MISBEHAVING = FeatureSchema("misbehaving", 1, ("size",), _misbehave, "test only")


def _files(tmp_path: Path, contents: list[bytes]) -> list[tuple[str, str]]:
    items = []
    for i, data in enumerate(contents):
        path = tmp_path / f"f{i}"
        path.write_bytes(data)
        items.append((str(path), f"f{i}"))
    return items


def test_hangs_crashes_and_memory_blowups_are_recorded_and_the_rest_extracted(
    tmp_path: Path,
) -> None:
    contents = [b"ok1", b"hang", b"ok22", b"crash", b"eat", *[b"x" * n for n in range(5, 25)]]
    pool = WorkerPool(2, MISBEHAVING, max_bytes=1 << 20, timeout_s=1.5, memory_mb=512)
    started = time.monotonic()
    records = {r.path: r for r in pool.run(_files(tmp_path, contents))}
    assert time.monotonic() - started < 30
    assert set(records) == {f"f{i}" for i in range(len(contents))}
    assert records["f1"].outcome == Failure("timeout: extraction took longer than 1.5 s")
    assert records["f3"].outcome == Failure("worker crashed: exit code 3")
    assert records["f4"].outcome == Failure("extractor error: MemoryError: ")
    assert records["f0"].outcome == Row((3,)) and records["f2"].outcome == Row((4,))
    for i in range(5, len(contents)):
        assert records[f"f{i}"].outcome == Row((len(contents[i]),))


def test_an_empty_list_starts_and_stops_cleanly(tmp_path: Path) -> None:
    pool = WorkerPool(2, MISBEHAVING, max_bytes=1 << 20, timeout_s=1.0)
    assert list(pool.run([])) == []
