"""``fedmetamal extract`` end to end: real PE files -> dataset -> ``fedmetamal simulate``."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from fedmetamal.cli import run as run_cli
from fedmetamal.features.dataset_file import check_schema
from fedmetamal.features.extract_run import ExtractOptions, run_extract
from fedmetamal.features.labels import CsvLabels
from fedmetamal.features.pe_header import COLUMNS, PE_HEADER


@pytest.fixture
def tree(tmp_path: Path, pe_files: list[Path]) -> Path:
    """benign/ and malware/<family>/ folders of real PE files, a duplicate and non-PE files."""
    root = tmp_path / "samples"
    for i, path in enumerate(pe_files[:24]):
        folder = root / "benign" if i % 2 == 0 else root / "malware" / f"fam{i % 4 // 2}"
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, folder / f"{i:02d}-{path.name}")
    shutil.copyfile(pe_files[1], root / "benign" / "zz-copy-of-01.exe")
    (root / "misc").mkdir()
    (root / "misc" / "notes.txt").write_text("not a program\n")
    (root / "misc" / "empty.exe").write_bytes(b"")
    return root


def _sidecar(path: Path) -> dict[str, str]:
    with path.open(newline="") as fh:
        return {r["path"]: r["reason"] for r in csv.DictReader(fh)}


def test_extract_builds_a_dataset_that_simulate_trains_on(
    tree: Path,
    pe_files: list[Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "data.parquet"
    assert run_cli(["extract", str(tree), "-o", str(out), "-q"]) == 0
    assert "files without a row" in capsys.readouterr().err
    assert check_schema(out, PE_HEADER)["columns"] == list(COLUMNS)
    table = pq.read_table(out).to_pandas()
    assert len(table) == 24 and set(table["label"]) == {0, 1}
    assert set(table["family"].dropna()) == {"fam0", "fam1"}
    first = table.iloc[0]
    data = (tree / first["path"]).read_bytes()
    assert first["sha256"] == hashlib.sha256(data).hexdigest() and first["size"] == len(data)
    errors = _sidecar(tmp_path / "data.errors.csv")
    assert errors["misc/notes.txt"] == "not a PE file: no MZ header"
    assert errors["misc/empty.exe"] == "empty file: zero bytes"
    dupes = {p: r for p, r in errors.items() if r.startswith("duplicate: ")}
    assert dupes == {
        f"malware/fam0/01-{pe_files[1].name}": "duplicate: same sha256 as "
        "benign/zz-copy-of-01.exe (labels differ: 1 here, 0 kept)"
    }

    args = ["simulate", "--dataset", str(out), "--clients", "2", "--rounds", "2"]
    args += ["--hidden", "8", "--batch-size", "8", "--no-outputs", "--json"]
    args += ["--set", "partition.min_client_size=4"]
    assert run_cli(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["dataset"]["features"] == 50 and summary["dataset"]["samples"] == 24
    assert {"sha256", "path", "size", "family"} <= set(summary["dataset"]["metadata"])


def test_a_second_run_resumes_and_only_extracts_new_files(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "data.parquet"
    first = run_extract(ExtractOptions(tree, out, PE_HEADER))
    before = pq.read_table(out)
    shutil.copyfile(tree / "misc" / "notes.txt", tree / "misc" / "notes2.txt")
    second = run_extract(ExtractOptions(tree, out, PE_HEADER))
    assert second.resumed == first.found and second.processed == 1
    assert pq.read_table(out).equals(before)
    assert "misc/notes2.txt" in _sidecar(tmp_path / "data.errors.csv")


def test_parallel_and_serial_runs_write_the_same_files(tree: Path, tmp_path: Path) -> None:
    serial = run_extract(ExtractOptions(tree, tmp_path / "a.parquet", PE_HEADER, jobs=1))
    parallel = run_extract(ExtractOptions(tree, tmp_path / "b.parquet", PE_HEADER, jobs=2))
    assert pq.read_table(tmp_path / "a.parquet").equals(pq.read_table(tmp_path / "b.parquet"))
    assert _sidecar(serial.errors_path) == _sidecar(parallel.errors_path)


def test_labels_csv_sets_labels_families_and_first_seen(tree: Path, tmp_path: Path) -> None:
    files = sorted(p for p in (tree / "benign").iterdir())[:2]
    digests = [hashlib.sha256(p.read_bytes()).hexdigest() for p in files]
    labels = tmp_path / "labels.csv"
    labels.write_text(
        f"sha256,label,family,first_seen\n{digests[0]},malware,zbot,2021-03-04\n{digests[1]},0,,\n"
    )
    out = tmp_path / "data.parquet"
    opts = ExtractOptions(tree, out, PE_HEADER, labels=CsvLabels.read(labels, tree))
    summary = run_extract(opts)
    table = pq.read_table(out).to_pandas().set_index("sha256")
    assert table.loc[digests[0], "label"] == 1 and table.loc[digests[0], "family"] == "zbot"
    assert table.loc[digests[0], "first_seen"] == "2021-03-04"
    assert table.loc[digests[1], "label"] == 0
    assert summary.labels[-1] == summary.written - 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["extract", "{tmp}/nowhere", "-o", "{tmp}/o.parquet"], "does not exist"),
        (["extract", "{tmp}", "-o", "{tmp}/o.parquet", "--schema", "pe-heder"], "Did you mean"),
        (["extract", "{tmp}", "-o", "{tmp}/o.parquet", "--labels", "{tmp}/l.csv"], "trojan"),
        (["extract", "{tmp}", "-o", "{tmp}/o.parquet", "--max-size-mb", "0"], "must be positive"),
    ],
)
def test_bad_input_is_one_clear_error(
    args: list[str],
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "l.csv").write_text("path,label\na.exe,trojan\n")
    code = run_cli([a.format(tmp=tmp_path) for a in args])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err


def test_resuming_into_a_file_of_another_schema_is_refused(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "other.parquet"
    pq.write_table(pq.read_table(_one_row(tree, tmp_path)).replace_schema_metadata(None), out)
    assert run_cli(["extract", str(tree), "-o", str(out), "-q"]) == 2
    assert "carries no feature schema" in capsys.readouterr().err


def _one_row(tree: Path, tmp_path: Path) -> Path:
    out = tmp_path / "one.parquet"
    run_extract(ExtractOptions(tree / "benign", out, PE_HEADER))
    return out
