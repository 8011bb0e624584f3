"""The suite report: files written, figures valid, report.html self-contained and complete."""

from __future__ import annotations

import base64
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from fake_suite import PARTITIONS, SUITE_YAML, make_suite

from fedmetamal import __version__
from fedmetamal.errors import ConfigError
from fedmetamal.experiments.report import build_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
EVIL = "<script>alert(1)</script> see https://example.org/help"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("report") / "s"
    fake = make_suite(root, fail=("fedprox/iid/1",), pending=("fedavg/dirichlet α=1/2",))
    failed = root / "runs" / f"{fake.ids[('fedprox', 'iid', 1)]}.failed" / "error.json"
    failed.write_text(json.dumps({"status": "failed", "error": "ValueError", "message": EVIL}))
    html_path = build_report(root)
    return fake, html_path, html_path.read_text(encoding="utf-8")


def test_build_report_writes_tables_figures_and_html(built) -> None:
    fake, html_path, _ = built
    root = fake.root
    assert html_path == root / "report.html"
    tables = {p.name for p in (root / "tables").iterdir()}
    for m in ("roc_auc", "accuracy", "loss"):
        assert {f"horizontal_{m}.csv", f"horizontal_{m}.md", f"horizontal_{m}.tex"} <= tables
    assert {"vertical_fedavg.tex", "vertical_fedprox.md", "runs.csv", "failures.csv"} <= tables
    figures = {p.name for p in (root / "figures").iterdir()}
    stems = ["final_roc_auc_vs_alpha", "final_roc_auc_vs_index"]
    stems += ["curve_roc_auc_iid", "curve_roc_auc_dirichlet-alpha-0.1"]
    stems += ["curve_roc_auc_dirichlet-alpha-1"]
    assert figures == {f"{s}.{e}" for s in stems for e in ("png", "pdf")}
    for s in stems:
        assert (root / "figures" / f"{s}.png").read_bytes().startswith(PNG_MAGIC)
        pdf = (root / "figures" / f"{s}.pdf").read_bytes()
        assert pdf.startswith(b"%PDF") and pdf.rstrip().endswith(b"%%EOF")
    leftovers = [p for p in root.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


def test_report_is_self_contained(built) -> None:
    _, _, html = built
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.IGNORECASE)
    assert "<link" not in html and "@import" not in html and "url(" not in html
    images = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(images) == 5
    assert all(base64.b64decode(img).startswith(PNG_MAGIC) for img in images)


def test_report_shows_the_table_numbers_and_best(built) -> None:
    fake, _, html = built
    v = fake.values("fedavg", "dirichlet α=0.1", "roc_auc")
    cell = f"{np.mean(v):.4f} ± {np.std(v, ddof=1):.4f}"
    assert cell in html
    partial = fake.values("fedprox", "iid", "accuracy")
    assert f"{np.mean(partial):.4f} ± {np.std(partial, ddof=1):.4f} (2/3)" in html
    best = re.findall(r'<td class="best[^"]*">([^<]+)</td>', html)
    means = {m: np.mean(fake.values(m, "dirichlet α=0.1", "roc_auc")) for m in ("fedavg",
             "fedprox")}  # fmt: skip
    winner = max(means, key=means.get)
    w = fake.values(winner, "dirichlet α=0.1", "roc_auc")
    assert any(b.startswith(f"{np.mean(w):.4f}") for b in best)


def test_report_lists_counts_failures_config_and_version(built) -> None:
    _, _, html = built
    assert re.search(r"finished</td><td>16<", html)
    assert re.search(r"failed</td><td>1<", html)
    assert re.search(r"pending</td><td>1<", html)
    failures = html[html.index('id="failures"') : html.index('id="config"')]
    assert "ValueError" in failures
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in failures and "<script>" not in html
    assert "not run yet" in failures
    assert "# a comment that must appear in the report" in html
    assert SUITE_YAML.splitlines()[0] in html
    assert f"fedmetamal {__version__}" in html


def test_figures_only_where_the_data_allows(tmp_path: Path) -> None:
    fake = make_suite(
        tmp_path / "s",
        setting_axes=[("partition", PARTITIONS[:1])],
        heterogeneity=False,
        seeds=(0, 1),
        suite_yaml=None,
    )
    html = build_report(fake.root).read_text()
    assert sorted(p.name for p in (fake.root / "figures").iterdir()) == [
        "curve_roc_auc_iid.pdf",
        "curve_roc_auc_iid.png",
    ]
    assert not (fake.root / "tables" / "failures.csv").exists()
    assert "No run failed." in html
    assert "fedmetamal-suite/1" in html  # without suite.yaml the manifest is shown


def test_report_of_a_suite_nothing_finished_in(tmp_path: Path) -> None:
    fake = make_suite(tmp_path / "s", methods=("fedavg",), seeds=(0,))
    shutil.rmtree(fake.root / "runs")
    (fake.root / "status.jsonl").unlink()
    html = build_report(fake.root).read_text()
    assert list((fake.root / "figures").iterdir()) == []
    assert re.search(r"pending</td><td>3<", html)
    assert '<td class="empty">—</td>' in html
    md = (fake.root / "tables" / "horizontal_roc_auc.md").read_text()
    assert "| fedavg | — | — | — |" in md


def test_rebuild_drops_outputs_that_no_longer_apply(tmp_path: Path) -> None:
    fake = make_suite(
        tmp_path / "s",
        methods=("fedavg",),
        setting_axes=[("partition", [PARTITIONS[0], PARTITIONS[2]])],
        seeds=(0, 1),
        fail=("fedavg/dirichlet α=1/0",),
        heterogeneity=False,
    )
    build_report(fake.root)
    assert (fake.root / "tables" / "failures.csv").exists()
    assert (fake.root / "figures" / "curve_roc_auc_iid.png").exists()
    # the failed run is rerun and succeeds; the iid runs are deleted by hand
    failed_id = fake.ids[("fedavg", "dirichlet α=1", 0)]
    shutil.rmtree(fake.root / "runs" / f"{failed_id}.failed")
    shutil.copytree(
        fake.root / "runs" / fake.ids[("fedavg", "dirichlet α=1", 1)],
        fake.root / "runs" / failed_id,
    )
    for seed in (0, 1):
        shutil.rmtree(fake.root / "runs" / fake.ids[("fedavg", "iid", seed)])
    html = build_report(fake.root).read_text()
    assert not (fake.root / "tables" / "failures.csv").exists()
    assert not (fake.root / "figures" / "curve_roc_auc_iid.png").exists()
    assert "No run failed." in html
    assert re.search(r"missing</td><td>2<", html)


def test_not_a_suite_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a suite directory"):
        build_report(tmp_path)
    assert not (tmp_path / "report.html").exists()


def test_final_metric_vs_a_numeric_axis(tmp_path: Path) -> None:
    """A numeric setting (here the client count) gets its own final-metric figure."""
    from fedmetamal.experiments.figures import numeric_axis_figures
    from fedmetamal.experiments.results import load_results

    ratios = [("3", 3), ("30", 30)]
    fake = make_suite(
        tmp_path / "s",
        setting_axes=[("partition.clients", ratios)],
        heterogeneity=False,
        seeds=(0, 1),
        suite_yaml=None,
    )
    res = load_results(fake.root)
    [fig] = numeric_axis_figures(res, tmp_path / "figs", "roc_auc")
    assert fig.png.name == "final_roc_auc_vs_partition.clients.png"
    assert fig.png.read_bytes()[:8] == PNG_MAGIC
    assert fig.pdf.read_bytes()[:5] == b"%PDF-"
    assert numeric_axis_figures(res, tmp_path / "figs", "no_such_metric") == []


def test_privacy_utility_curve_of_a_privacy_axis(tmp_path: Path) -> None:
    """A ``privacy`` axis of DP modes and target epsilons gets a metric-vs-ε figure, with the
    runs without DP drawn at ∞; a suite without that axis gets none."""
    from fedmetamal.experiments.privacy_figure import privacy_figures
    from fedmetamal.experiments.results import load_results

    levels = [
        (f"{mode} ε={e}", {"mode": mode, "target_epsilon": e})
        for mode in ("participant", "sample")
        for e in (1, 8)
    ] + [("no DP", {"mode": "none"})]
    fake = make_suite(
        tmp_path / "s",
        setting_axes=[("privacy", levels), ("partition.clients", [("10", 10), ("100", 100)])],
        heterogeneity=False,
        seeds=(0, 1),
        suite_yaml=None,
    )
    res = load_results(fake.root)
    figs = privacy_figures(res, tmp_path / "figs", ["roc_auc", "accuracy"])
    assert [f.name for f in figs] == ["final_roc_auc_vs_epsilon", "final_accuracy_vs_epsilon"]
    assert figs[0].png.read_bytes()[:8] == PNG_MAGIC
    assert "no DP" in figs[0].caption or "∞" in figs[0].caption
    plain = make_suite(tmp_path / "p", heterogeneity=False, seeds=(0,), suite_yaml=None)
    assert privacy_figures(load_results(plain.root), tmp_path / "f2", ["roc_auc"]) == []
