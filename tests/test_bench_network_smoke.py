"""The network benchmark runs end to end (a real server process, 4 participants, 3 rounds) and
prints its tables; no timing checks. The Flower comparison must say so when Flower is absent."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def run_script(script: Path, *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


def test_bench_network_quick_prints_both_tables(tmp_path: Path) -> None:
    out = tmp_path / "network.json"
    proc = run_script(BENCH / "bench_network.py", "--quick", "--json", str(out))
    lines = proc.stdout.splitlines()
    header = next(line for line in lines if line.startswith("| participants | updates/round"))
    for column in ("round s", "slowest training s", "overhead s", "server CPU s/round"):
        assert column in header
    memory = next(line for line in lines if line.startswith("| participants | server RSS idle"))
    assert "per participant KB" in memory
    rows = [line.split("|")[1].strip() for line in lines if line.startswith("| 4 ")]
    assert rows == ["4", "4"]  # one row in each table
    result = json.loads(out.read_text())["results"][0]
    assert result["participants"] == 4 and result["updates"] == 4
    assert result["worker_errors"] == 0
    # 3 rounds stored; the last one evaluated and is not among the timed ones
    assert [r["round"] for r in result["rounds"]] == [1, 2, 3]
    assert [r["evaluated"] for r in result["rounds"]] == [False, False, True]
    for r in result["rounds"]:
        assert r["reported"] == 4 and r["rejected"] == 0
        assert 0 < r["slowest_training_s"] < r["round_s"]
        assert r["training_cpu_max_s"] > 0  # the workers timed every local training
    assert result["rss_connected"] > 0 and result["rss_peak"] >= result["rss_connected"]


def test_bench_flower_without_flower_says_so(tmp_path: Path) -> None:
    proc = run_script(BENCH / "bench_flower.py", "--flower-venv", str(tmp_path / "no-venv"))
    assert proc.stdout.startswith("Flower: skipped (flwr is not installed in")
