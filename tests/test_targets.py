"""The issue's end-to-end targets, run exactly as a user would type them (slow)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from fedmetamal.cli import main
from fedmetamal.data.sources import resolve_shared_data
from fedmetamal.errors import DataError


def _run(args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["fedmetamal", *args])
    try:
        main()
    except SystemExit as exc:
        assert exc.code in (0, None), f"fedmetamal exited with {exc.code}"


@pytest.mark.slow
@pytest.mark.shared_data
def test_pe_headers_dirichlet_fedavg_reaches_auc_098(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        resolve_shared_data("pe-headers")
    except DataError as err:
        pytest.skip(f"../shared/data is not beside this checkout: {err.problem}")
    args = "simulate --dataset pe-headers --partition dirichlet --alpha 0.3 --clients 10"
    _run([*args.split(), "--algorithm", "fedavg", "--output", str(tmp_path), "--json"], monkeypatch)
    summary = json.loads(capsys.readouterr().out)
    assert summary["dataset"]["samples"] == 20306
    assert summary["final_metrics"]["roc_auc"] >= 0.98


@pytest.mark.slow
def test_default_simulation_prints_the_metrics_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _run(["simulate", "--output", str(tmp_path)], monkeypatch)
    out = capsys.readouterr().out
    assert "fedavg on synthetic" in out and "roc_auc" in out
    runs = list(tmp_path.iterdir())
    assert len(runs) == 1 and (runs[0] / "model.onnx").is_file()
    summary = json.loads((runs[0] / "summary.json").read_text())
    assert summary["final_metrics"]["roc_auc"] > 0.9
