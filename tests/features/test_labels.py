"""Labels from folder names and from a labels CSV, and the errors a bad CSV gives."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedmetamal.errors import DataError
from fedmetamal.features.labels import CsvLabels, FolderLabels, Label


@pytest.mark.parametrize(
    ("path", "label"),
    [
        ("benign/a.exe", Label(0)),
        ("benign/sub/a.exe", Label(0)),
        ("Malware/emotet/x/a.exe", Label(1, "emotet")),
        ("malware/a.exe", Label(1)),
        ("other/a.exe", Label(-1)),
        ("malware", Label(-1)),
    ],
)
def test_folder_names_give_labels_and_families(path: str, label: Label) -> None:
    assert FolderLabels().lookup(path, None) == label


def _csv(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "labels.csv"
    path.write_text(text)
    return path


def test_csv_by_sha256_with_family_and_first_seen(tmp_path: Path) -> None:
    path = _csv(tmp_path, "sha256,label,family,first_seen\nABC,malware,zbot,2020-01-02\nd,0,,\n")
    labels = CsvLabels.read(path, tmp_path)
    assert labels.has_first_seen
    assert labels.lookup("x", "abc") == Label(1, "zbot", "2020-01-02")
    assert labels.lookup("y", "d") == Label(0)
    assert labels.lookup("z", "e") == Label(-1)


def test_csv_by_path_relative_or_absolute(tmp_path: Path) -> None:
    text = f"path,label\n./benign/a.exe,Benign\n{tmp_path / 'm' / 'b.dll'},1\n"
    labels = CsvLabels.read(_csv(tmp_path, text), tmp_path)
    assert labels.lookup("benign/a.exe", None) == Label(0)
    assert labels.lookup("m/b.dll", None) == Label(1)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "sha256,label\na,malware\nb,trojan\nc,2\n",
            r"other than benign/malware/0/1: '2', 'trojan'",
        ),
        ("name,label\na,1\n", "needs a 'label' column and a 'sha256' or 'path' column"),
        ("sha256,label\n", "has no data rows"),
    ],
)
def test_bad_label_files_are_clear_data_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        CsvLabels.read(_csv(tmp_path, text), tmp_path)


def test_missing_and_binary_label_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        CsvLabels.read(tmp_path / "nope.csv", tmp_path)
    binary = tmp_path / "bin.csv"
    binary.write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(DataError, match="cannot be read"):
        CsvLabels.read(binary, tmp_path)
