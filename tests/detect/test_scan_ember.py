"""Scanning with a model trained on an ember-v3 dataset: the same engine, EMBER's features.

EMBER2024's extractor also emits a row for a file that is not PE (``general_is_pe`` 0); the
scanner must still report such a file as not PE rather than score it.
"""

from __future__ import annotations

import json

import pytest

from fedmetamal.detect.model import load_detector
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
