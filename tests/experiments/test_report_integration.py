"""A real (tiny) suite run by the runner, then reported: the reader agrees with the runner."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from fedmetamal.experiments.report import build_report
from fedmetamal.experiments.results import load_results
from fedmetamal.experiments.runner import run_suite

SUITE = """\
name: tiny-report
config:
  dataset: {source: synthetic, synthetic: {n_samples: 600, n_features: 32}}
  model: {hidden: [16]}
  partition: {clients: 3}
  training: {rounds: 2, local_epochs: 1, batch_size: 32}
  evaluation: {per_client: false}
  runtime: {threads: 1}
  output: {onnx: false, checkpoint: false}
grid:
  algorithm.name: [fedavg, fedprox]
  partition: [{kind: dirichlet, alpha: 0.3}, {kind: dirichlet, alpha: 3.0}]
  seed: [0, 1]
metrics: [roc_auc, accuracy]
parallel: 1
"""


def test_report_of_a_real_suite(tmp_path: Path) -> None:
    suite_file = tmp_path / "tiny.yaml"
    suite_file.write_text(SUITE)
    out = tmp_path / "suite"
    outcome = run_suite(suite_file, out, jobs=1)
    assert outcome.finished == 8 and outcome.failed == 0

    res = load_results(out)
    assert res.counts()["finished"] == 8
    assert res.methods == ["fedavg", "fedprox"]
    assert res.settings == ["dirichlet α=0.3", "dirichlet α=3.0"]
    assert sorted(res.final["alpha"].unique()) == [0.3, 3.0]
    assert len(res.curves) == 8 * 2  # every run evaluated after each of its 2 rounds

    for run in res.runs:  # the reader's final metrics are the runner's summary
        summary = json.loads((out / "runs" / run.id / "summary.json").read_text())
        assert run.final_metrics["roc_auc"] == summary["final_metrics"]["roc_auc"]

    html = build_report(out).read_text(encoding="utf-8")
    fedavg = res.final[(res.final["method"] == "fedavg") & (res.final["alpha"] == 0.3)]
    mean, std = np.mean(fedavg["roc_auc"]), np.std(fedavg["roc_auc"], ddof=1)
    assert f"{mean:.4f} ± {std:.4f}" in html
    assert "tiny-report" in html and "n_samples: 600" in html
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.IGNORECASE)
    figures = {p.name for p in (out / "figures").iterdir()}
    assert {"final_roc_auc_vs_alpha.png", "curve_roc_auc_dirichlet-alpha-0.3.pdf"} <= figures
    assert res.final["heterogeneity_index"].between(0, 1).all()  # every run measures its data
    assert "final_roc_auc_vs_index.png" in figures
    tex = (out / "tables" / "horizontal_roc_auc.tex").read_text()
    assert "dirichlet $\\alpha$=0.3" in tex and "\\textbf{" in tex
