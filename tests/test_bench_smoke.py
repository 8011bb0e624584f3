"""The simulation benchmark runs end to end (tiny sizes) and prints its table; no timing checks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_sim.py"


def test_bench_sim_quick_prints_the_table(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--threads", "1", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
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
    proc = subprocess.run(
        [sys.executable, str(SECAGG_SCRIPT), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
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
