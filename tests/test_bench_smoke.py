"""The simulation benchmark runs end to end (tiny sizes) and prints its table; no timing checks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_sim.py"


def run_script(script: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run a benchmark script to completion; its output, after checking it succeeded."""
    proc = subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc


def test_bench_sim_quick_prints_the_table(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = run_script(SCRIPT, "--quick", "--threads", "1", "--json", str(out))
    lines = proc.stdout.splitlines()
    header = next(line for line in lines if line.startswith("| workload"))
    for column in ("s/round fedmetamal", "s/round loop", "speed-up", "GFLOP/s", "% of matmul"):
        assert column in header
    rows = [line for line in lines if line.startswith("| W-")]
    assert [r.split("|")[1].strip() for r in rows] == ["W-small", "W-wide", "W-device"]
    assert any(line.startswith("Flower W-small:") for line in lines)
    results = json.loads(out.read_text())["results"]
    assert {r["workload"] for r in results} == {"W-small", "W-wide", "W-device"}
    # both contenders trained the same model on the same batches
    assert all(r["parity_max_abs_diff"] < 1e-4 for r in results)


SECAGG_SCRIPT = SCRIPT.with_name("bench_secagg.py")


def test_bench_secagg_quick_prints_the_tables(tmp_path: Path) -> None:
    out = tmp_path / "secagg.json"
    proc = run_script(SECAGG_SCRIPT, "--quick", "--json", str(out))
    lines = proc.stdout.splitlines()
    header = next(line for line in lines if line.startswith("| clients | k"))
    for column in ("plain s/round", "secagg s/round", "secagg+ s/round", "target <= 3x"):
        assert column in header
    assert any(line.startswith("| clients | plain up / down") for line in lines)
    results = json.loads(out.read_text())["results"]
    assert [r["clients"] for r in results] == [4, 12]
    # 12 clients: SecAgg+ (k = 8) ran beside the complete graph; secure rounds cost more bytes
    big = results[1]
    assert big["neighbours"] == 8 and "secagg+" in big
    assert big["secagg"]["bytes_up"] > big["plain"]["bytes_up"]
    assert all(big[m]["ratio"] > 0 for m in ("secagg", "secagg+"))


EXTRACT_SCRIPT = SCRIPT.with_name("bench_extract.py")


def test_bench_extract_prints_one_core_and_all_core_tables(tmp_path: Path) -> None:
    """A few real PE files through both tables (the reference's rows only where it is built)."""
    import shutil

    try:
        from features.pe_corpus import build_corpus  # tests/ is on sys.path

        corpus = build_corpus()
    except Exception as err:  # no compiler, no network: say why and skip
        pytest.skip(f"PE corpus could not be built: {type(err).__name__}: {err}")
    folder = tmp_path / "few"
    folder.mkdir()
    for path in sorted(corpus.pe_files, key=lambda p: p.stat().st_size)[:4]:
        shutil.copy(path, folder / path.name)
    out = tmp_path / "extract.json"
    proc = run_script(EXTRACT_SCRIPT, str(folder), "--repeat", "1", "--json", str(out))
    tables = [line for line in proc.stdout.splitlines() if line.startswith("| ours")]
    assert len(tables) == 2  # one core and all cores
    result = json.loads(out.read_text())
    assert result["files"] == 4 and result["ours_seconds"] > 0
    assert result["all_cores"]["ours_seconds"] > 0


SCAN_SCRIPT = SCRIPT.with_name("bench_scan.py")


@pytest.mark.shared_data
def test_bench_scan_prints_a_row_per_explanation(tmp_path: Path) -> None:
    """Trains on the shared pe-headers table, so it needs ../shared/data; seconds, no timing
    checks."""
    from fedmetamal.data.sources import resolve_shared_data
    from fedmetamal.errors import DataError

    try:
        resolve_shared_data("pe-headers")
    except DataError as err:
        pytest.skip(str(err))
    folder = tmp_path / "few"
    folder.mkdir()
    for i in range(3):  # any bytes will do: non-PE files go through the same engine
        (folder / f"f{i}.bin").write_bytes(b"MZ" + bytes(range(256)) * (i + 1))
    out = tmp_path / "scan.json"
    args = [str(folder), "--copies", "2", "--repeat", "1", "--rounds", "1", "--json", str(out)]
    proc = run_script(SCAN_SCRIPT, *args)
    rows = [line.split("|")[1].strip() for line in proc.stdout.splitlines() if line[:2] == "| "]
    assert rows[2:] == ["ig", "grad-input", "none"]
    assert json.loads(out.read_text())["files"] == 6
