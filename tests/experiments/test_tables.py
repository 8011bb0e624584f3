"""Thesis tables: the right shape, the right numbers, the best cell marked in every format."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fake_suite import PARTITIONS, make_suite

from fedmetamal.experiments.results import load_results
from fedmetamal.experiments.tables import (
    build_tables,
    horizontal_table,
    latex_escape,
    to_csv,
    to_latex,
    to_markdown,
    vertical_table,
    write_tables,
)

SETTINGS = [label for label, _ in PARTITIONS]
METHODS = ["fedavg", "fedprox"]


def _fmt(mean: float, std: float) -> str:
    return f"{mean:.4f} ± {std:.4f}"


def _expected_cell(fake, method: str, setting: str, metric: str) -> tuple[float, float, int]:
    v = fake.values(method, setting, metric)
    return float(np.mean(v)), float(np.std(v, ddof=1)) if v.size > 1 else np.nan, v.size


def _best_row(fake, setting: str, metric: str, higher: bool = True) -> str:
    means = {m: np.mean(fake.values(m, setting, metric)) for m in METHODS}
    return (max if higher else min)(means, key=means.get)


def _md_rows(md: str) -> list[list[str]]:
    lines = [ln for ln in md.splitlines() if ln.startswith("|")]
    return [[c.strip() for c in ln.strip("|").split(" | ")] for ln in lines]


def _tex_rows(tex: str) -> list[list[str]]:
    body = tex.split("\\midrule\n")[1].split("\\bottomrule")[0]
    return [[c.strip() for c in ln.removesuffix("\\\\").split(" & ")] for ln in body.splitlines()]


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory):
    return make_suite(tmp_path_factory.mktemp("tables") / "s")


@pytest.fixture(scope="module")
def res(fake):
    return load_results(fake.root)


def test_horizontal_table_numbers_are_mean_and_std_over_seeds(fake, res) -> None:
    t = horizontal_table(res, "roc_auc")
    assert t.rows == METHODS and t.columns == SETTINGS
    for i, method in enumerate(METHODS):
        for j, setting in enumerate(SETTINGS):
            mean, std, n = _expected_cell(fake, method, setting, "roc_auc")
            c = t.cells[i][j]
            assert c.mean == pytest.approx(mean, abs=1e-12)
            assert c.std == pytest.approx(std, abs=1e-12)
            assert (c.n, c.runs) == (n, 3)
            assert c.text() == _fmt(mean, std)


def test_horizontal_markdown_bolds_the_best_method_per_setting(fake, res) -> None:
    md = to_markdown(horizontal_table(res, "roc_auc"))
    rows = _md_rows(md)
    assert rows[0] == ["method", *SETTINGS]
    assert [r[0] for r in rows[2:]] == METHODS
    for j, setting in enumerate(SETTINGS, start=1):
        best = _best_row(fake, setting, "roc_auc")
        for r in rows[2:]:
            assert r[j].startswith("**") == (r[0] == best), (setting, r)
    assert "\n\nTable: ROC AUC" in md


def test_loss_best_is_the_minimum(fake, res) -> None:
    t = horizontal_table(res, "loss")
    for j, setting in enumerate(SETTINGS):
        best = _best_row(fake, setting, "loss", higher=False)
        assert [c.best for c in (row[j] for row in t.cells)] == [m == best for m in METHODS]


def test_latex_uses_booktabs_textbf_pm_and_escapes_labels(fake, res) -> None:
    tex = to_latex(horizontal_table(res, "roc_auc"), "fake")
    assert "\\begin{tabular}{lrrr}" in tex
    assert tex.index("\\toprule") < tex.index("\\midrule") < tex.index("\\bottomrule")
    header = tex.split("\\toprule\n")[1].splitlines()[0]
    assert header == "method & iid & dirichlet $\\alpha$=0.1 & dirichlet $\\alpha$=1 \\\\"
    rows = _tex_rows(tex)
    for j, setting in enumerate(SETTINGS, start=1):
        best = _best_row(fake, setting, "roc_auc")
        for r in rows:
            mean, std, _ = _expected_cell(fake, r[0], setting, "roc_auc")
            plain = f"{mean:.4f} $\\pm$ {std:.4f}"
            assert r[j] == (f"\\textbf{{{plain}}}" if r[0] == best else plain)


def test_latex_escape_specials() -> None:
    assert latex_escape("noise_50% & #1 {x} α=0.1 ±") == (
        r"noise\_50\% \& \#1 \{x\} $\alpha$=0.1 $\pm$"
    )
    assert latex_escape("a\\b~^$") == r"a\textbackslash{}b\textasciitilde{}\textasciicircum{}\$"


def test_csv_parses_back_to_the_same_numbers(fake, res) -> None:
    df = pd.read_csv(io.StringIO(to_csv(horizontal_table(res, "accuracy"))))
    assert list(df["method"]) == METHODS
    assert list(df.columns[1:5]) == [f"iid {k}" for k in ("mean", "std", "n", "runs")]
    for i, method in enumerate(METHODS):
        for setting in SETTINGS:
            mean, std, n = _expected_cell(fake, method, setting, "accuracy")
            assert df.loc[i, f"{setting} mean"] == pytest.approx(mean, rel=1e-15)
            assert df.loc[i, f"{setting} std"] == pytest.approx(std, rel=1e-15)
            assert df.loc[i, f"{setting} n"] == n


def test_vertical_table_per_method(fake, res) -> None:
    t = vertical_table(res, "fedprox", "fedprox")
    assert t.name == "vertical_fedprox"
    assert t.rows == SETTINGS
    assert t.columns == ["ROC AUC", "Accuracy", "Test loss (BCE)"]
    metrics = ["roc_auc", "accuracy", "loss"]
    for i, setting in enumerate(SETTINGS):
        for j, metric in enumerate(metrics):
            mean, std, _ = _expected_cell(fake, "fedprox", setting, metric)
            assert t.cells[i][j].mean == pytest.approx(mean)
            assert t.cells[i][j].std == pytest.approx(std)
    for j, metric in enumerate(metrics):
        means = [np.mean(fake.values("fedprox", s, metric)) for s in SETTINGS]
        best = int(np.argmin(means) if metric == "loss" else np.argmax(means))
        assert [row[j].best for row in t.cells] == [i == best for i in range(3)]
    df = pd.read_csv(io.StringIO(to_csv(t)))
    assert list(df["partition"]) == SETTINGS
    assert "roc_auc mean" in df.columns and "loss std" in df.columns


def test_write_tables_writes_every_file(fake, res, tmp_path: Path) -> None:
    written = write_tables(res, tmp_path)
    names = sorted(p.name for p in written)
    want = [f"horizontal_{m}.{e}" for m in ("accuracy", "loss", "roc_auc") for e in
            ("csv", "md", "tex")] + ["runs.csv"]  # fmt: skip
    want += [f"vertical_{m}.{e}" for m in METHODS for e in ("csv", "md", "tex")]
    assert names == sorted(want)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(want)
    runs = pd.read_csv(tmp_path / "runs.csv")
    assert len(runs) == 18 and (runs["status"] == "finished").all()
    merged = runs.merge(fake.expected, on="id", suffixes=("", "_want"))
    np.testing.assert_allclose(merged["roc_auc"], merged["roc_auc_want"], rtol=1e-15)


def test_partial_failed_and_empty_cells(tmp_path: Path) -> None:
    fake = make_suite(
        tmp_path / "s",
        fail=("fedprox/iid/1", *(f"fedavg/dirichlet α=1/{s}" for s in range(3))),
        pending=tuple(f"fedprox/dirichlet α=0.1/{s}" for s in range(3)),
    )
    res = load_results(fake.root)
    t = horizontal_table(res, "roc_auc")
    partial = t.cells[1][0]
    mean, std, n = _expected_cell(fake, "fedprox", "iid", "roc_auc")
    assert n == 2 and partial.text() == f"{_fmt(mean, std)} (2/3)"
    assert t.cells[0][2].text() == "failed" and not t.cells[0][2].best
    assert t.cells[1][1].text() == "—"
    assert t.cells[1][2].best  # the only value in its column
    assert re.search(r"\$\\pm\$ \d\.\d{4} \(2/3\)", to_latex(t))
    write_tables(res, tmp_path / "tables")
    failures = pd.read_csv(tmp_path / "tables" / "failures.csv")
    assert len(failures) == 4
    assert set(failures["error"]) == {"ValueError"}
    assert list(failures.columns) == ["id", "status", "method", "setting", "seed", "error",
                                      "message"]  # fmt: skip


def test_single_seed_cell_has_no_std(tmp_path: Path) -> None:
    res = load_results(make_suite(tmp_path / "s", seeds=(0,)).root)
    cell = horizontal_table(res, "roc_auc").cells[0][0]
    assert re.fullmatch(r"\d\.\d{4}", cell.text())


def test_several_setting_axes_make_product_columns(tmp_path: Path) -> None:
    axes = [
        ("partition", PARTITIONS[:2]),
        ("training.local_epochs", [("E=1", 1.0), ("E=2", 2.0)]),
    ]
    res = load_results(make_suite(tmp_path / "s", setting_axes=axes, seeds=(0, 1)).root)
    tables = build_tables(res)
    h = tables[0]
    assert h.columns == ["iid / E=1", "iid / E=2", "dirichlet α=0.1 / E=1", "dirichlet α=0.1 / E=2"]
    assert all(c.n == 2 for row in h.cells for c in row)
    v = next(t for t in tables if t.name == "vertical_fedavg")
    assert v.corner == "partition / training.local_epochs"
    assert v.rows == h.columns


def test_suite_of_seeds_only_is_one_cell(tmp_path: Path) -> None:
    fake = make_suite(tmp_path / "s", methods=("fedavg",), setting_axes=[])
    manifest = json.loads((fake.root / "manifest.json").read_text())
    manifest["axes"] = [a for a in manifest["axes"] if a["key"] == "seed"]
    manifest["method_axis"] = "seed"  # what a grid of seeds alone gets
    (fake.root / "manifest.json").write_text(json.dumps(manifest))
    t = horizontal_table(load_results(fake.root), "roc_auc")
    assert (t.rows, t.columns) == (["all"], ["all runs"])
    v = fake.values("fedavg", "all runs", "roc_auc")
    assert t.cells[0][0].text() == _fmt(np.mean(v), np.std(v, ddof=1))
    assert t.cells[0][0].best
