"""``fedmetamal federation``: inspect (JSON, tables, figure), validate-measure, bad input."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from fedmetamal.cli_federation import client_table, federation_app
from fedmetamal.errors import ConfigError

app = typer.Typer()
app.add_typer(federation_app, name="federation")

TINY = [
    "--set",
    "dataset.synthetic.n_samples=1200",
    "--set",
    "dataset.synthetic.n_features=24",
    "--clients",
    "4",
]


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_inspect_json_has_per_client_rows(runner: CliRunner, tmp_path: Path) -> None:
    args = ["federation", "inspect", *TINY, "--partition", "dirichlet", "--alpha", "0.5"]
    result = runner.invoke(app, [*args, "--json", "--no-figure"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert len(data["clients"]) == 4
    keys = {"client", "size", "malware_share", "top_families", "label_tv"}
    assert keys <= set(data["clients"][0])
    assert 0.0 <= data["federation"]["index"] <= 1.0


def test_inspect_tables_and_figure(runner: CliRunner, tmp_path: Path) -> None:
    stem = tmp_path / "figs" / "tiny"
    args = ["federation", "inspect", *TINY, "--partition", "label-quantity", "--k", "1"]
    result = runner.invoke(app, [*args, "--seed", "3", "--out", str(stem)])
    assert result.exit_code == 0, result.output
    png, svg = stem.with_name("tiny.png"), stem.with_name("tiny.svg")
    assert png.read_bytes()[:4] == b"\x89PNG" and svg.stat().st_size > 10_000
    assert "federation" in result.stdout and "index" in result.stdout
    assert str(png) in result.stdout.replace("\n", "")


def test_inspect_default_figure_path(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    args = ["federation", "inspect", *TINY, "--alpha", "0.3", "--partition", "dirichlet"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "runs/inspect/synthetic-dirichlet-a0.3-c4-s0.png").is_file()


def test_bad_partition_is_a_config_error(runner: CliRunner) -> None:
    result = runner.invoke(app, ["federation", "inspect", *TINY, "--partition", "bogus"])
    assert isinstance(result.exception, ConfigError)
    assert "partition.kind" in str(result.exception) and "bogus" in str(result.exception)


def test_bad_preset_is_a_config_error(runner: CliRunner, tmp_path: Path) -> None:
    args = ["federation", "validate-measure", "--preset", "huge", "--out", str(tmp_path)]
    result = runner.invoke(app, args)
    assert isinstance(result.exception, ConfigError) and "full" in str(result.exception)


def test_validate_measure_quick(runner: CliRunner, tmp_path: Path) -> None:
    args = ["federation", "validate-measure", *TINY, "--preset", "quick", "--rounds", "1"]
    args += ["--set", "model.hidden=[8]", "--seeds", "2", "--out", str(tmp_path), "--quiet"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "index Spearman" in result.stdout and "label_emd" in result.stdout
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["baseline"]["seeds"] == [0, 1] and summary["n_federations"] >= 5
    assert (tmp_path / "scatter_panel.png").is_file()


def test_many_clients_are_elided_unless_all() -> None:
    rows = [{"client": i, "size": 10, "malware_share": 0.5, "label_tv": 0.1} for i in range(150)]
    from rich.console import Console

    def render(show_all: bool) -> str:
        console = Console(width=200, record=True)
        console.print(client_table(rows, ["label_tv", "family_tv"], show_all))
        return console.export_text()

    short, full = render(False), render(True)
    assert "135 clients elided" in short and re.search(r"│\s+149\s+│", short)
    assert not re.search(r"│\s+77\s+│", short)
    assert "elided" not in full and re.search(r"│\s+77\s+│", full)
    assert "not defined for this data: family_tv" in short
