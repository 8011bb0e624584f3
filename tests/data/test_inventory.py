"""What ``data list`` finds on disk and what ``data info`` reports about one dataset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fedmetamal.cli import run as run_cli
from fedmetamal.config import DatasetConfig
from fedmetamal.data.dataset import Dataset
from fedmetamal.data.fetch import MARKER
from fedmetamal.data.inventory import find_datasets, kind_of, summarize
from fedmetamal.data.loaders_native import save_dataset
from fedmetamal.data.sources import load_dataset
from fedmetamal.features.dataset_file import arrow_schema, write_rows
from fedmetamal.features.schema import get_schema


def _labelled_csv(path: Path) -> Path:
    """30 malware in three families of unequal size, 20 benign, dates across 2019-2020."""
    rng = np.random.default_rng(1)
    n = 50
    frame = pd.DataFrame(rng.normal(size=(n, 4)), columns=[f"f{i}" for i in range(4)])
    frame["label"] = [1] * 30 + [0] * 20
    frame["family"] = ["emotet"] * 15 + ["xtrat"] * 10 + ["wannacry"] * 5 + [""] * 20
    frame["first_seen"] = pd.date_range("2019-03-01", periods=n, freq="10D").strftime("%Y-%m-%d")
    frame.to_csv(path, index=False)
    return path


def _extracted(path: Path) -> Path:
    schema = get_schema("pe-header")
    rows = []
    for i in range(6):
        row: dict[str, object] = {"label": i % 2}
        row.update({c: i for c in schema.columns})
        row.update(sha256=f"{i:064x}", path=f"f{i}.exe", size=100 + i, family=None, warnings="")
        rows.append(row)
    write_rows(path, rows, arrow_schema(schema, with_first_seen=False))
    return path


def _ember_folder(folder: Path, raw: bool = False) -> Path:
    folder.mkdir(parents=True)
    if raw:
        record = {"sha256": "ab" * 32, "label": 1, "histogram": [0] * 256}
        (folder / "train_features_0.jsonl").write_text(json.dumps(record) + "\n")
        return folder
    (folder / "X_train.dat").write_bytes(np.zeros((4, 2381), np.float32).tobytes())
    (folder / "y_train.dat").write_bytes(np.array([1, 0, 1, -1], np.float32).tobytes())
    return folder


def test_kind_of_tells_every_supported_layout_apart(tmp_path: Path) -> None:
    csv = _labelled_csv(tmp_path / "t.csv")
    native = tmp_path / "n.parquet"
    ds = Dataset(np.ones((3, 2), np.float32), np.array([1, 0, 1], np.int8), ["a", "b"])
    save_dataset(ds, native)
    plain = tmp_path / "p.parquet"
    pd.read_csv(csv).to_parquet(plain)
    np.savez(tmp_path / "b.npz", X=np.zeros((2, 2)), y=np.zeros(2))
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "jsonl").mkdir()
    (tmp_path / "jsonl" / "other.jsonl").write_text('{"a": 1}\n')
    assert kind_of(csv) == "csv"
    assert kind_of(native) == "fedmetamal"
    assert kind_of(plain) == "parquet"
    assert kind_of(_extracted(tmp_path / "e.parquet")) == "extracted"
    assert kind_of(tmp_path / "b.npz") == "npz"
    assert kind_of(_ember_folder(tmp_path / "vec")) == "ember"
    assert kind_of(_ember_folder(tmp_path / "raw", raw=True)) == "ember-raw"
    assert kind_of(tmp_path / "notes.txt") is None
    assert kind_of(tmp_path / "jsonl") is None


def test_find_datasets_lists_files_fetched_folders_and_partial_downloads(tmp_path: Path) -> None:
    (tmp_path / "mine" / "deep").mkdir(parents=True)
    _labelled_csv(tmp_path / "mine" / "deep" / "t.csv")
    fetched = tmp_path / "ember2018"
    _ember_folder(fetched / "ember2018", raw=True)
    (fetched / MARKER).write_text(json.dumps({"name": "ember2018", "files": {}}))
    (tmp_path / "downloads").mkdir()
    (tmp_path / "downloads" / "ember_dataset_2017_2.tar.bz2.part").write_bytes(b"x" * 7)
    (tmp_path / ".ember2017.unpacking").mkdir()
    found = {str(d.path.relative_to(tmp_path)): d for d in find_datasets(tmp_path)}
    assert set(found) == {
        "downloads/ember_dataset_2017_2.tar.bz2.part",
        "ember2018/ember2018",
        "mine/deep/t.csv",
    }
    assert found["ember2018/ember2018"].kind == "ember-raw"
    assert found["ember2018/ember2018"].fetched_as == "ember2018"
    assert found["downloads/ember_dataset_2017_2.tar.bz2.part"].size == 7
    assert found["mine/deep/t.csv"].fetched_as is None
    assert find_datasets(tmp_path / "missing") == []


def test_summarize_gives_balance_families_and_time_range(tmp_path: Path) -> None:
    csv = _labelled_csv(tmp_path / "t.csv")
    ds = load_dataset(DatasetConfig(source=str(csv)), seed=0)
    s = summarize(ds, top=2)
    assert s["samples"] == 50 and s["features"] == 4
    assert s["labels"] == {"malware": 30, "benign": 20, "unlabelled": 0}
    assert s["malware_share"] == 0.6
    assert s["families"] == {"count": 3, "top": {"emotet": 15, "xtrat": 10}}
    assert s["first_seen"] == {"from": "2019-03-01", "to": "2020-07-03"}


def test_info_json_keeps_its_fields_and_adds_the_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = _labelled_csv(tmp_path / "t.csv")
    assert run_cli(["data", "info", str(csv), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["samples"] == 50 and info["malware"] == 30 and "report" in info
    s = info["summary"]
    assert s["format"] == "csv" and s["size_bytes"] == csv.stat().st_size
    assert s["families"]["top"]["emotet"] == 15
    assert s["first_seen"]["from"] == "2019-03-01"


def test_info_table_shows_schema_of_an_extracted_dataset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _extracted(tmp_path / "e.parquet")
    monkeypatch.setenv("COLUMNS", "200")
    assert run_cli(["data", "info", str(path)]) == 0
    out = capsys.readouterr().out
    width = len(get_schema("pe-header").columns)
    assert f"pe-header v{get_schema('pe-header').version} ({width} columns)" in out
    assert "50.0% malware, 50.0% benign" in out


def test_info_on_raw_ember_features_says_to_vectorize(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _ember_folder(tmp_path / "ember2018", raw=True)
    assert run_cli(["data", "info", str(folder), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)["summary"]
    assert s["format"] == "ember-raw" and "train_features_0.jsonl" in s["files"]
    assert "fedmetamal data vectorize" in s["note"] and "X_train.dat" in s["note"]


def test_info_accepts_a_fetched_catalog_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(["data", "info", "ember2018", "--dir", str(tmp_path)]) == 2
    assert "data fetch ember2018" in capsys.readouterr().err
    _ember_folder(tmp_path / "ember2018" / "ember2018")
    (tmp_path / "ember2018" / MARKER).write_text(json.dumps({"name": "ember2018", "files": {}}))
    assert run_cli(["data", "info", "ember2018", "--dir", str(tmp_path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["summary"]["schema"] == "ember-v2" and info["summary"]["format"] == "ember"
    assert info["summary"]["labels"] == {"malware": 2, "benign": 1, "unlabelled": 1}


def test_list_shows_builtin_catalog_and_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _labelled_csv(tmp_path / "t.csv")
    (tmp_path / "downloads").mkdir()
    (tmp_path / "downloads" / "ember_dataset_2018_2.tar.bz2.part").write_bytes(b"x" * 5)
    assert run_cli(["data", "list", "--dir", str(tmp_path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["builtin"]) == {"synthetic", "pe-headers"}
    by_name = {e["name"]: e for e in out["catalog"]}
    assert by_name["ember2018"]["on_disk"] == "partial"
    assert by_name["ember2017"]["on_disk"] == "absent"
    assert by_name["ember2018"]["url"] == "https://ember.elastic.co/ember_dataset_2018_2.tar.bz2"
    assert {d["kind"] for d in out["on_disk"]} == {"csv", "partial"}
    monkeypatch.setenv("COLUMNS", "200")
    assert run_cli(["data", "list", "--dir", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "ember2024-win32-train" in text and "partial (5 B)" in text and "t.csv" in text
