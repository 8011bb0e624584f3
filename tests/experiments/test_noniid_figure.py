"""The federation figure: label, family and measure panels, PNG and SVG, small and 120 clients."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedmetamal.api import build_federation, load_data
from fedmetamal.config import build_config
from fedmetamal.data.heterogeneity import HeterogeneityReport, measure_federation
from fedmetamal.experiments.noniid_figure import family_shares, headline, plot_federation

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _report(n_samples: int, clients: int, **partition: object) -> HeterogeneityReport:
    cfg = build_config(
        {
            "dataset": {"synthetic": {"n_samples": n_samples, "n_features": 24}},
            "partition": {"clients": clients, **partition},
        }
    )
    return measure_federation(build_federation(cfg, load_data(cfg)))


def _check(paths: list[Path]) -> None:
    assert [p.suffix for p in paths] == [".png", ".svg"]
    png, svg = paths
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 20_000
    text = svg.read_text(encoding="utf-8")
    assert text.lstrip().startswith("<?xml") and "<svg" in text and len(text) > 20_000


def test_small_federation_with_families(tmp_path: Path) -> None:
    report = _report(1200, 5, kind="dirichlet", alpha=0.3)
    assert report.family_counts is not None
    # The stem may contain dots (alpha 0.3): suffixes are appended, never substituted.
    paths = plot_federation(report, tmp_path / "fig" / "synthetic-dirichlet-a0.3", "small")
    assert paths[0].name == "synthetic-dirichlet-a0.3.png"
    _check(paths)


def test_hundred_and_twenty_clients(tmp_path: Path) -> None:
    report = _report(3000, 120, kind="iid", min_client_size=5)
    assert len(report.clients) == 120
    _check(plot_federation(report, tmp_path / "many", "120 clients"))


def test_family_shares_keep_top_and_sum_to_one() -> None:
    report = _report(1200, 4, kind="iid")
    assert report.family_counts is not None
    shares = family_shares(report.family_counts, top=3)
    assert list(shares.columns[:3]) == list(report.family_counts.columns[:3])
    assert shares.columns[-1] == "other"
    assert shares.sum(axis=1).to_numpy() == pytest.approx(1.0)


def test_headline_names_the_federation_measures() -> None:
    report = _report(1200, 4, kind="iid")
    line = headline(report)
    assert line.startswith("index ") and "label EMD" in line and "feature JS" in line
