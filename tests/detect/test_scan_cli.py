"""``fedmetamal scan`` end to end on real PE files with a model trained by the simulation."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import onnx
import pytest

from fedmetamal.cli import run as run_cli
from fedmetamal.detect.threshold import DEFAULT_THRESHOLD
from fedmetamal.features.schema import get_schema

from .conftest import Trained


def _scan(
    args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    capsys.readouterr()
    code = run_cli(["scan", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def _jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _metadata(model: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(model)).metadata_props}


def test_model_stores_schema_and_validation_threshold(trained: Trained) -> None:
    meta = _metadata(trained.model)
    assert json.loads(meta["feature_schema"]) == get_schema("pe-header").describe()
    threshold = json.loads(meta["threshold"])
    assert 0.0 <= threshold["value"] <= 1.0
    assert threshold["target_fpr"] == 0.01
    assert threshold["source"].startswith("pooled client validation")
    assert threshold["benign"] > 0 and threshold["fpr"] <= 0.01


def test_jsonl_verdicts_follow_the_stored_threshold(
    trained: Trained, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = [str(p) for p in (*trained.pe_files, *trained.other_files)]
    code, out, err = _scan(
        [*paths, "--model", str(trained.model), "-f", "jsonl"], monkeypatch, capsys
    )
    records = _jsonl(out)
    assert [r["path"] for r in records] == paths
    stored = json.loads(_metadata(trained.model)["threshold"])["value"]
    pe = records[: len(trained.pe_files)]
    for r in pe:
        assert r["threshold"] == stored
        assert r["verdict"] == ("malware" if r["score"] >= stored else "benign")
        assert r["file_type"].startswith("PE32")
        assert len(r["sha256"]) == 64 and len(r["top_features"]) == 5
    for r in records[len(trained.pe_files) :]:
        assert r["verdict"] == "not a PE file" and r["score"] is None and r["reason"]
    found = any(r["verdict"] == "malware" for r in records)
    assert code == (1 if found else 0)
    assert f"{len(records)} files" in err


def test_threshold_option_and_exit_status(
    trained: Trained, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    files = [str(p) for p in trained.pe_files]
    code, out, _ = _scan(
        [*files, "-m", str(trained.model), "-f", "jsonl", "--threshold", "0"], monkeypatch, capsys
    )
    assert code == 1 and {r["verdict"] for r in _jsonl(out)} == {"malware"}
    code, out, _ = _scan(
        [*files, "-m", str(trained.model), "-f", "jsonl", "--threshold", "1"], monkeypatch, capsys
    )
    records = _jsonl(out)
    assert all(r["score"] < 1.0 for r in records)  # so nothing reaches the threshold
    assert code == 0 and {r["verdict"] for r in records} == {"benign"}
    assert {r["threshold"] for r in records} == {1.0}


def test_directories_recurse_and_csv_has_every_field(
    trained: Trained, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = trained.pe_files[0].parents[1]  # data/ with benign/ and malware/clamtest/
    code, out, _ = _scan(
        [str(folder), "-m", str(trained.model), "-f", "csv", "--top", "2"], monkeypatch, capsys
    )
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == len(trained.pe_files)
    assert {r["path"] for r in rows} == {str(p) for p in trained.pe_files}
    for r in rows:
        assert r["verdict"] in {"malware", "benign"} and float(r["threshold"]) >= 0
        assert len(r["top_features"].split("; ")) == 2 and "=" in r["top_features"]
    assert code in (0, 1)


def test_table_output(
    trained: Trained, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    other = str(trained.other_files[0])
    code, out, _ = _scan(
        [str(trained.pe_files[0]), other, "-m", str(trained.model)], monkeypatch, capsys
    )
    assert code in (0, 1)
    assert "scan results" in out and "not a PE file" in out and "PE32" in out
    assert trained.pe_files[0].name in out


def test_warnings_and_size_limit_are_reported(
    trained: Trained,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    odd = tmp_path / "many-sections.exe"
    data = bytearray(trained.pe_files[0].read_bytes())
    lfanew = int.from_bytes(data[60:64], "little")
    data[lfanew + 6 : lfanew + 8] = (200).to_bytes(2, "little")  # NumberOfSections
    odd.write_bytes(bytes(data))
    big = tmp_path / "big.exe"
    shutil.copy(trained.pe_files[0], big)
    with big.open("ab") as fh:
        fh.write(b"\0" * 300_000)
    code, out, _ = _scan(
        [str(odd), str(big), "-m", str(trained.model), "-f", "jsonl", "--max-size-mb", "0.25"],
        monkeypatch,
        capsys,
    )
    first, second = _jsonl(out)
    assert code == (1 if first["verdict"] == "malware" else 0)
    assert any("NumberOfSections 200 exceeds" in w for w in first["warnings"])
    assert first["verdict"] in {"malware", "benign"}
    assert second["verdict"] == "error" and "limit" in second["reason"]
    assert second["score"] is None


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.onnx", "does not exist"),
        (lambda d: _write(d / "garbage.onnx", b"not a model"), "not a loadable ONNX file"),
    ],
    ids=["missing", "not-onnx"],
)
def test_bad_model_is_one_clear_error(
    trained: Trained,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    make,
    message: str,
) -> None:
    code, out, err = _scan(
        [str(trained.pe_files[0]), "-m", str(make(tmp_path))], monkeypatch, capsys
    )
    assert code == 2 and out == ""
    assert message in err and "Traceback" not in err


def test_missing_scan_path_is_a_usage_error(
    trained: Trained,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = _scan([str(tmp_path / "nope"), "-m", str(trained.model)], monkeypatch, capsys)
    assert code == 2 and "no such file or directory" in err


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _with_props(src: Path, dest: Path, **changes: str | None) -> Path:
    """A copy of ``src`` with metadata props changed (None removes one)."""
    model = onnx.load(str(src))
    props = {p.key: p.value for p in model.metadata_props}
    for key, value in changes.items():
        if value is None:
            props.pop(key, None)
        else:
            props[key] = value
    del model.metadata_props[:]
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(dest))
    return dest


def test_schema_mismatch_is_refused_naming_both(
    trained: Trained,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    stamp = get_schema("pe-header").describe()
    newer = _with_props(
        trained.model, tmp_path / "v2.onnx", feature_schema=json.dumps({**stamp, "version": 2})
    )
    code, _, err = _scan([str(trained.pe_files[0]), "-m", str(newer)], monkeypatch, capsys)
    assert code == 2 and "'pe-header' v2" in err and "'pe-header' v1" in err
    other = _with_props(
        trained.model,
        tmp_path / "ember.onnx",
        feature_schema=json.dumps({"name": "ember-v3", "version": 3, "columns": []}),
    )
    code, _, err = _scan([str(trained.pe_files[0]), "-m", str(other)], monkeypatch, capsys)
    assert code == 2 and "'ember-v3'" in err and "column list differs" in err
    asked = [str(trained.pe_files[0]), "-m", str(trained.model), "--schema", "ember-v3"]
    code, _, err = _scan(asked, monkeypatch, capsys)
    assert code == 2 and "ember-v3" in err and "pe-header" in err


def test_foreign_onnx_is_refused(
    trained: Trained,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    foreign = _with_props(trained.model, tmp_path / "foreign.onnx", format="something-else")
    code, _, err = _scan([str(trained.pe_files[0]), "-m", str(foreign)], monkeypatch, capsys)
    assert code == 2 and "not a detector exported by FedMetaMal" in err


def test_model_from_before_thresholds_still_scans(
    trained: Trained,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    old = _with_props(trained.model, tmp_path / "old.onnx", threshold=None, feature_schema=None)
    code, out, err = _scan(
        [str(trained.pe_files[0]), "-m", str(old), "-f", "jsonl"], monkeypatch, capsys
    )
    (record,) = _jsonl(out)
    assert record["threshold"] == DEFAULT_THRESHOLD
    assert "stores no decision threshold" in err and "stores no feature schema" in err
    assert code == (1 if record["verdict"] == "malware" else 0)


def test_model_without_gradient_output_scans_without_explanations(
    trained: Trained,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Models exported before explanations have only the probability output."""
    model = onnx.load(str(trained.model))
    keep = [o for o in model.graph.output if o.name == "malware_probability"]
    del model.graph.output[:]
    model.graph.output.extend(keep)
    old = tmp_path / "no-gradient.onnx"
    onnx.save(model, str(old))
    args = [str(trained.pe_files[0]), "-m", str(old), "-f", "jsonl"]
    code, out, err = _scan(args, monkeypatch, capsys)
    (record,) = _jsonl(out)
    assert record["top_features"] == [] and record["score"] is not None
    assert "no gradient output" in err
    _, out, _ = _scan(
        [str(trained.pe_files[0]), "-m", str(trained.model), "-f", "jsonl"], monkeypatch, capsys
    )
    assert _jsonl(out)[0]["score"] == pytest.approx(record["score"], abs=1e-6)
    assert code == (1 if record["verdict"] == "malware" else 0)
