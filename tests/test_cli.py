"""The command line end to end: help, a small simulation, JSON output and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fedmetamal.cli import main
from fedmetamal.cli import run as run_cli

SMALL = [
    "simulate",
    "--set",
    "dataset.synthetic.n_samples=1200",
    "--set",
    "dataset.synthetic.n_features=48",
    "--hidden",
    "16",
    "--clients",
    "3",
    "--rounds",
    "2",
]


def _table(tmp_path: Path, name: str, frame: pd.DataFrame) -> Path:
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def _separable(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5))
    return pd.DataFrame(X, columns=[f"f{i}" for i in range(5)]).assign(
        label=(X[:, 0] > 0).astype(int)
    )


def test_module_entry_point_help() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "fedmetamal", "--help"], capture_output=True, text=True, check=True
    )
    assert "simulate" in out.stdout and "algorithms" in out.stdout


@pytest.mark.parametrize(
    "command", [[], ["simulate"], ["algorithms"], ["config"], ["data"], ["data", "info"]]
)
def test_every_command_has_help(
    command: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli([*command, "--help"]) == 0
    assert "Usage" in capsys.readouterr().out


def test_simulate_writes_a_complete_run_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run_cli([*SMALL, "--output", str(tmp_path), "--name", "r1", "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    run = tmp_path / "r1"
    assert summary["run_dir"] == str(run)
    names = {p.name for p in run.iterdir()}
    assert {
        "config.yaml",
        "metrics.jsonl",
        "metrics.csv",
        "client_metrics.jsonl",
        "model.safetensors",
        "model.onnx",
        "summary.json",
        "heterogeneity.json",
    } <= names
    # the run reports how non-IID its federation was, per client and overall
    hetero = json.loads((run / "heterogeneity.json").read_text())
    assert len(hetero["clients"]) == summary["clients"]
    assert summary["heterogeneity"] == hetero["federation"]
    assert 0.0 <= summary["heterogeneity"]["index"] <= 1.0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rows] == [1, 2]
    assert 0.0 <= rows[-1]["test_roc_auc"] <= 1.0
    assert json.loads((run / "summary.json").read_text())["status"] == "finished"


def test_simulate_prints_metrics_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli([*SMALL, "--output", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "roc_auc" in out and "tpr_at_1pct_fpr" in out and "run directory" in out


def test_algorithms_lists_every_algorithm(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(["algorithms"]) == 0
    out = capsys.readouterr().out
    for name in ("fedavg", "fedprox", "scaffold", "fednova", "fedyogi", "centralised"):
        assert name in out


def _error(
    args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> str:
    code = run_cli(args)
    err = capsys.readouterr().err
    assert code != 0
    assert "Traceback" not in err
    assert err.count("error:") == 1
    return " ".join(err.split())


def test_missing_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    msg = _error(["simulate", "--dataset", str(tmp_path / "nope.csv")], monkeypatch, capsys)
    assert "nope.csv" in msg


def test_wrong_label_column(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _table(tmp_path, "t.csv", _separable())
    msg = _error(
        ["simulate", "--dataset", str(path), "--label-column", "target"], monkeypatch, capsys
    )
    assert "target" in msg


def test_non_numeric_features(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    frame = _separable().astype({"f1": object})
    frame.loc[3, "f1"] = "abc"
    path = _table(tmp_path, "t.csv", frame)
    msg = _error(["simulate", "--dataset", str(path)], monkeypatch, capsys)
    assert "f1" in msg and "abc" in msg


def test_single_class(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _table(tmp_path, "t.csv", _separable().assign(label=1))
    msg = _error(["simulate", "--dataset", str(path)], monkeypatch, capsys)
    assert "single class" in msg


def test_partition_leaving_clients_empty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _table(tmp_path, "t.csv", _separable(60))
    msg = _error(["simulate", "--dataset", str(path), "--clients", "40"], monkeypatch, capsys)
    assert "clients" in msg


def test_diverging_run_leaves_a_failed_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _table(tmp_path, "t.csv", _separable())
    args = ["simulate", "--dataset", str(path), "--client-lr", "1e30", "--output", str(tmp_path)]
    msg = _error([*args, "--name", "boom"], monkeypatch, capsys)
    assert "diverged" in msg and "client_lr" in msg
    assert not (tmp_path / "boom").exists()
    failed = tmp_path / "boom.failed"
    assert json.loads((failed / "error.json").read_text())["status"] == "failed"
    assert not (failed / "summary.json").exists()


def test_bad_flag_values(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    msg = _error(["simulate", "--alpha", "-2", "--partition", "dirichlet"], monkeypatch, capsys)
    assert "partition.alpha = -2.0" in msg
    msg = _error(["simulate", "--param", "mu"], monkeypatch, capsys)
    assert "KEY=VALUE" in msg


def test_debug_shows_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fedmetamal.errors import DataError

    monkeypatch.setattr(
        sys, "argv", ["fedmetamal", "--debug", "simulate", "--dataset", str(tmp_path / "x.csv")]
    )
    with pytest.raises(DataError):
        main()
