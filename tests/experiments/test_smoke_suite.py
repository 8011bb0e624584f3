"""The shipped smoke suite, end to end through the command line: every output it promises, with
numbers equal to the runs' own metrics, and a resume that re-runs nothing finished."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

SMOKE = Path(__file__).parents[2] / "examples" / "smoke.yaml"
METRICS = ["roc_auc", "accuracy", "f1", "tpr_at_1pct_fpr"]
METHODS = ["fedavg", "fedprox"]
SETTINGS = ["dirichlet α=0.1", "iid"]


def run_cli(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "fedmetamal", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout + done.stderr


def final_metrics(out: Path) -> pd.DataFrame:
    """One row per run, straight from the run directories (not from the report's reader)."""
    manifest = json.loads((out / "manifest.json").read_text())
    rows = []
    for run in manifest["runs"]:
        summary = json.loads((out / "runs" / run["id"] / "summary.json").read_text())
        rows.append({**run["settings"], **summary["final_metrics"]})
    return pd.DataFrame(rows)


def outcomes(out: Path) -> list[str]:
    """The status of every run outcome the runner logged, in order."""
    lines = (out / "status.jsonl").read_text().splitlines()
    return [json.loads(line)["status"] for line in lines]


@pytest.mark.slow
def test_smoke_suite_outputs_and_resume(tmp_path: Path) -> None:
    out = tmp_path / "smoke"
    run_cli("experiment", "run", str(SMOKE), "--out", str(out))
    assert outcomes(out) == ["finished"] * 8
    runs = final_metrics(out)
    assert len(runs) == 8

    for metric in METRICS:
        # horizontal: methods (rows) x settings (columns), mean/std/n over the two seeds
        table = pd.read_csv(out / "tables" / f"horizontal_{metric}.csv")
        assert table.iloc[:, 0].tolist() == METHODS
        assert len(table.columns) == 1 + 4 * len(SETTINGS)
        for method in METHODS:
            row = table[table.iloc[:, 0] == method].iloc[0]
            for setting in SETTINGS:
                sel = runs[(runs["algorithm.name"] == method) & (runs["partition"] == setting)]
                values = sel[metric].to_numpy(dtype=float)
                assert row[f"{setting} mean"] == pytest.approx(values.mean(), abs=1e-12)
                assert row[f"{setting} std"] == pytest.approx(values.std(ddof=1), abs=1e-12)
                assert row[f"{setting} n"] == 2
        md = (out / "tables" / f"horizontal_{metric}.md").read_text()
        assert sum(line.startswith("| fed") for line in md.splitlines()) == len(METHODS)
        assert md.count("**") >= 2 * len(SETTINGS)  # a best cell per column
        tex = (out / "tables" / f"horizontal_{metric}.tex").read_text()
        assert "\\toprule" in tex and "\\bottomrule" in tex
        assert sum(line.startswith("fed") for line in tex.splitlines()) == len(METHODS)

    for method in METHODS:
        # vertical: one method, settings (rows) x metrics (columns)
        table = pd.read_csv(out / "tables" / f"vertical_{method}.csv")
        assert table.iloc[:, 0].tolist() == SETTINGS
        iid = runs[(runs["algorithm.name"] == method) & (runs["partition"] == "iid")]
        row = table.iloc[1]
        for metric in METRICS:
            assert row[f"{metric} mean"] == pytest.approx(np.mean(iid[metric]), abs=1e-12)

    figures = sorted(p.name for p in (out / "figures").iterdir())
    pngs = [p for p in figures if p.endswith(".png")]
    assert {"curve_roc_auc_iid.png", "final_roc_auc_vs_index.png"} <= set(pngs)
    for name in pngs:
        assert (out / "figures" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        pdf = out / "figures" / name.replace(".png", ".pdf")
        assert pdf.read_bytes()[:5] == b"%PDF-"
    html = (out / "report.html").read_text(encoding="utf-8")
    assert html.count("data:image/png;base64,") == len(pngs)
    first = runs[(runs["algorithm.name"] == "fedavg") & (runs["partition"] == "iid")]["roc_auc"]
    assert f"{first.mean():.4f} ± {first.std(ddof=1):.4f}" in html

    # Resume: nothing finished is run again ...
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "runs").iterdir()}
    run_cli("experiment", "run", str(SMOKE), "--out", str(out), "--no-report")
    assert outcomes(out)[8:] == ["skipped"] * 8
    assert {p.name: p.stat().st_mtime_ns for p in (out / "runs").iterdir()} == stamps
    # ... and a run lost (or killed half-way) is the only one redone.
    lost = sorted(stamps)[0]
    shutil.rmtree(out / "runs" / lost)
    run_cli("experiment", "run", str(SMOKE), "--out", str(out), "--no-report")
    assert sorted(outcomes(out)[16:]) == ["finished"] + ["skipped"] * 7
    after = {p.name: p.stat().st_mtime_ns for p in (out / "runs").iterdir()}
    assert {k for k in after if after[k] != stamps.get(k)} == {lost}
