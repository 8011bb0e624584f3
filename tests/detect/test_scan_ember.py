"""Scanning with models trained on an ember-v3 dataset and on the shared pe-headers table.

EMBER2024's extractor also emits a row for a file that is not PE (``general_is_pe`` 0); the
scanner must still report such a file as not PE rather than score it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fedmetamal.api import simulate
from fedmetamal.data.sources import resolve_shared_data
from fedmetamal.detect.model import load_detector
from fedmetamal.errors import DataError
from fedmetamal.features.schema import get_schema

from .conftest import Trained
from .test_scan_cli import _scan


def test_ember_v3_model_scans_real_pe_files_with_explanations(
    trained_ember: Trained, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    detector = load_detector(trained_ember.model)
    assert detector.info.schema.name == "ember-v3"
    assert detector.info.schema.columns == get_schema("ember-v3").columns
    files = [str(p) for p in (*trained_ember.pe_files[:6], *trained_ember.other_files[:4])]
    args = [*files, "-m", str(trained_ember.model), "-f", "jsonl"]
    code, out, _ = _scan(args, monkeypatch, capsys)
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert len(rows) == len(files)
    pe = rows[:6]
    for row in pe:
        assert row["verdict"] in ("malware", "benign") and 0.0 <= row["score"] <= 1.0
        assert row["threshold"] == pytest.approx(detector.info.threshold)
        assert row["top_features"], "every scored file names the features behind its score"
        assert all(t["feature"] in get_schema("ember-v3").columns for t in row["top_features"])
    for row in rows[6:]:
        assert row["verdict"] == "not a PE file" and row["score"] is None
    assert code == (1 if any(r["verdict"] == "malware" for r in rows) else 0)


@pytest.mark.shared_data
def test_model_trained_on_the_shared_pe_headers_table_scans_real_files(
    trained: Trained,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A model trained on ../shared/data/pe-headers (a public table, not files extracted here)
    scores real PE files: the table's columns are the pe-header schema's."""
    try:
        resolve_shared_data("pe-headers")
    except DataError as err:
        pytest.skip(str(err))
    run = simulate(
        {
            "dataset": {"source": "pe-headers"},
            "partition": {"clients": 3},
            "training": {"rounds": 2},
            "evaluation": {"per_client": False},
            "output": {"dir": str(tmp_path), "name": "pe-headers"},
        }
    )
    assert run.run_dir is not None
    model = Path(run.run_dir) / "model.onnx"
    assert load_detector(model).info.schema.name == "pe-header"
    files = [str(p) for p in trained.pe_files[:5]]
    code, out, _ = _scan([*files, "-m", str(model), "-f", "jsonl"], monkeypatch, capsys)
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert [r["verdict"] in ("malware", "benign") for r in rows] == [True] * 5
    assert all(r["top_features"] for r in rows)
    assert code in (0, 1)
