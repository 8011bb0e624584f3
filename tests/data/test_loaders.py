"""Loaders: every format from small files written here, including the ways files are broken."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fedmetamal.config import DatasetConfig, SyntheticConfig
from fedmetamal.data import sources
from fedmetamal.data.dataset import Dataset
from fedmetamal.data.loaders import LOADERS, detect_format, save_dataset, stratified_sample_index
from fedmetamal.data.sources import KNOWN_DATASETS, load_dataset, resolve_shared_data
from fedmetamal.errors import DataError


def load(source: Path | str, **kw: object) -> Dataset:
    return load_dataset(DatasetConfig(source=str(source), **kw), seed=0)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def error_of(source: Path | str, **kw: object) -> str:
    with pytest.raises(DataError) as info:
        load(source, **kw)
    return str(info.value)


# --------------------------------------------------------------------------- CSV tables


def test_csv_splits_features_metadata_and_identifiers(tmp_path: Path) -> None:
    csv = write(
        tmp_path / "samples.csv",
        "sha256,md5,Family,timestamp,size,entropy,signed,packer,label\n"
        "aa,m1,emotet,2020-01-02,100,7.5,True,upx,malware\n"
        "bb,m2,,2020-03-04,200,5.0,False,none,benign\n"
        "cc,m3,zeus,2021-05-06 10:00:00,300,6.5,True,upx,malicious\n",
    )
    ds = load(csv)
    assert ds.feature_names == ["size", "entropy", "signed"]
    assert ds.X.dtype == np.float32
    np.testing.assert_array_equal(ds.X[:, 2], [1.0, 0.0, 1.0])
    np.testing.assert_array_equal(ds.y, [1, 0, 1])
    assert ds.metadata is not None
    assert list(ds.metadata.columns) == ["sha256", "family", "first_seen"]
    assert ds.metadata["family"].isna().tolist() == [False, True, False]
    assert str(ds.metadata["first_seen"].dt.tz) == "UTC"
    assert ds.metadata["first_seen"].is_monotonic_increasing
    assert ds.info["dropped_columns"] == {"md5": "identifier", "packer": "text (not numeric)"}
    assert ds.info["label_column"] == "label"
    assert ds.info["provenance"]["format"] == "csv"
    assert ds.info["provenance"]["path"] == str(csv.resolve())


def test_csv_text_column_listed_as_metadata_is_kept(tmp_path: Path) -> None:
    csv = write(tmp_path / "t.csv", "packer,size,label\nupx,1,1\nnone,2,0\n")
    ds = load(csv, metadata_columns=["packer"])
    assert ds.feature_names == ["size"]
    assert ds.metadata is not None and ds.metadata["packer"].tolist() == ["upx", "none"]
    assert ds.info["dropped_columns"] == {}


def test_csv_missing_metadata_column_is_named(tmp_path: Path) -> None:
    csv = write(tmp_path / "t.csv", "size,label\n1,1\n2,0\n")
    msg = error_of(csv, metadata_columns=["region"])
    assert "'region'" in msg and "size, label" in msg and "metadata_columns" in msg


def test_csv_other_separators_and_pandas_index_column(tmp_path: Path) -> None:
    csv = write(tmp_path / "semi.csv", ";a;b;class\n0;1;2;1\n1;3;4;0\n2;5;6;1\n")
    ds = load(csv)
    assert ds.feature_names == ["a", "b"]
    assert ds.info["dropped_columns"] == {"Unnamed: 0": "row index written by pandas"}
    np.testing.assert_array_equal(ds.y, [1, 0, 1])


def test_csv_constant_columns_are_reported_and_kept(tmp_path: Path) -> None:
    csv = write(tmp_path / "c.csv", "magic,size,y\n5,1,1\n5,2,0\n5,3,1\n")
    ds = load(csv)
    assert ds.info["constant_columns"] == ["magic"]
    assert ds.feature_names == ["magic", "size"]


# --------------------------------------------------------------------------- labels


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Malware", 1),
        (" malicious ", 1),
        ("MAL", 1),
        ("true", 1),
        ("yes", 1),
        ("Benign", 0),
        ("goodware", 0),
        ("clean", 0),
        ("legit", 0),
        ("no", 0),
        ("unknown", -1),
        ("unlabelled", -1),
        ("-1", -1),
        ("", -1),
    ],
)
def test_string_labels_follow_the_documented_rule(tmp_path: Path, raw: str, expected: int) -> None:
    csv = write(tmp_path / "l.csv", f"size,label\n1,{raw}\n2,malware\n3,benign\n")
    assert load(csv).y.tolist() == [expected, 1, 0]


def test_legitimate_column_is_inverted(tmp_path: Path) -> None:
    csv = write(tmp_path / "pe.csv", "Name,size,legitimate\na.exe,1,1\nb.exe,2,0\nc.exe,3,1\n")
    ds = load(csv)
    np.testing.assert_array_equal(ds.y, [0, 1, 0])
    assert ds.info["dropped_columns"] == {"Name": "identifier"}


def test_numeric_labels_with_unlabelled_rows(tmp_path: Path) -> None:
    csv = write(tmp_path / "n.csv", "size,target\n1,1\n2,0\n3,-1\n4,\n")
    np.testing.assert_array_equal(load(csv).y, [1, 0, -1, -1])


def test_numeric_labels_outside_1_0_minus1_are_refused(tmp_path: Path) -> None:
    csv = write(tmp_path / "n.csv", "size,label\n1,1\n2,2\n3,7\n")
    msg = error_of(csv)
    assert "label column 'label'" in msg and "found 2, 7" in msg and "family" in msg


def test_unknown_string_labels_are_named(tmp_path: Path) -> None:
    csv = write(tmp_path / "u.csv", "size,label\n1,malware\n2,trojan\n3,Adware\n")
    msg = error_of(csv)
    assert "'adware'" in msg and "'trojan'" in msg and "u.csv" in msg
    assert "benign/goodware" in msg


def test_wrong_label_column_name(tmp_path: Path) -> None:
    csv = write(tmp_path / "w.csv", "size,Malware\n1,1\n2,0\n")
    msg = error_of(csv, label_column="malwre")
    assert "'malwre'" in msg and "w.csv" in msg and "size, Malware" in msg
    assert "--label-column" in msg and "Did you mean 'Malware'" in msg


def test_label_column_given_case_insensitively(tmp_path: Path) -> None:
    csv = write(tmp_path / "w.csv", "size,Verdict\n1,1\n2,0\n")
    assert load(csv, label_column="verdict").y.tolist() == [1, 0]


def test_ambiguous_label_columns(tmp_path: Path) -> None:
    csv = write(tmp_path / "a.csv", "size,label,class\n1,1,1\n2,0,0\n")
    msg = error_of(csv)
    assert "label, class" in msg and "--label-column" in msg


def test_no_label_column(tmp_path: Path) -> None:
    csv = write(tmp_path / "a.csv", "size,verdict\n1,1\n2,0\n")
    msg = error_of(csv)
    assert "No label column" in msg and "is_malware" in msg and "size, verdict" in msg
    assert "--label-column" in msg


def test_single_class_is_left_to_check_trainable(tmp_path: Path) -> None:
    csv = write(tmp_path / "one.csv", "size,label\n1,1\n2,1\n")
    ds = load(csv)
    with pytest.raises(DataError, match=r"single class \(2 malware, 0 benign"):
        ds.check_trainable()


# --------------------------------------------------------------------------- malformed CSV


def test_missing_file_names_path(tmp_path: Path) -> None:
    msg = error_of(tmp_path / "absent.csv")
    assert "absent.csv" in msg and "Check the path" in msg


def test_missing_file_with_explicit_format(tmp_path: Path) -> None:
    msg = error_of(tmp_path / "absent.bin")
    assert "absent.bin" in msg
    with pytest.raises(DataError, match=r"absent\.csv' does not exist"):
        LOADERS["csv"](tmp_path / "absent.csv", DatasetConfig(), 0)


def test_typo_of_known_dataset_is_suggested() -> None:
    msg = error_of("pe_headers")
    assert "Did you mean 'pe-headers'" in msg and "synthetic" in msg


def test_binary_garbage_is_not_a_readable_csv(tmp_path: Path) -> None:
    junk = tmp_path / "junk.csv"
    junk.write_bytes(np.random.default_rng(0).bytes(4096))
    msg = error_of(junk)
    assert "junk.csv" in msg and "not a readable CSV" in msg and "--format" in msg


def test_non_utf8_text_is_not_a_readable_csv(tmp_path: Path) -> None:
    junk = tmp_path / "latin.csv"
    junk.write_bytes(b"size,label\n1,1\n" + b"\xff\xfe\xe9\xe8,0\n" * 5)
    msg = error_of(junk)
    assert "latin.csv" in msg and "not UTF-8" in msg


def test_empty_csv(tmp_path: Path) -> None:
    msg = error_of(write(tmp_path / "empty.csv", ""))
    assert "empty.csv" in msg and "is empty" in msg


def test_header_only_csv(tmp_path: Path) -> None:
    msg = error_of(write(tmp_path / "hdr.csv", "size,label\n"))
    assert "hdr.csv" in msg and "no data rows" in msg


def test_numeric_column_with_garbage_is_named(tmp_path: Path) -> None:
    rows = "".join(f"{i},{i % 2}\n" for i in range(9))
    csv = write(tmp_path / "g.csv", "size,label\n" + rows + "abc,1\n")
    msg = error_of(csv)
    assert "'size'" in msg and "'abc'" in msg and "row 9" in msg and "metadata_columns" in msg


def test_bad_date_in_first_seen_is_named(tmp_path: Path) -> None:
    csv = write(tmp_path / "d.csv", "appeared,size,label\n2020-01-01,1,1\nsoon,2,0\n")
    msg = error_of(csv)
    assert "'appeared'" in msg and "'soon'" in msg and "d.csv" in msg and "rename" in msg


def test_numeric_text_column_is_converted(tmp_path: Path) -> None:
    csv = write(tmp_path / "q.csv", 'size,label\n"1",1\n"2.5",0\n" 3 ",1\n')
    np.testing.assert_allclose(load(csv).X[:, 0], [1.0, 2.5, 3.0])


# --------------------------------------------------------------------------- NaN policy

NAN_CSV = "a,b,label\n1,10,1\n,20,0\n3,inf,1\n5,40,0\n"


def test_nan_policy_error_names_columns_and_rows(tmp_path: Path) -> None:
    msg = error_of(write(tmp_path / "nan.csv", NAN_CSV), nan_policy="error")
    assert "2 rows" in msg and "'a' (1 rows)" in msg and "'b' (1 rows)" in msg
    assert "nan.csv" in msg and "nan_policy" in msg


def test_nan_policy_drop_rows_keeps_rows_aligned(tmp_path: Path) -> None:
    csv = write(tmp_path / "nan.csv", "family,a,b,label\nx,1,10,1\ny,,20,0\nz,3,inf,1\nw,5,40,0\n")
    ds = load(csv, nan_policy="drop-rows")
    np.testing.assert_array_equal(ds.X, [[1, 10], [5, 40]])
    np.testing.assert_array_equal(ds.y, [1, 0])
    assert ds.metadata is not None and ds.metadata["family"].tolist() == ["x", "w"]
    assert ds.info["nan_report"] == {
        "policy": "drop-rows",
        "columns": {"a": 1, "b": 1},
        "rows_affected": 2,
        "rows_dropped": 2,
    }


def test_nan_policy_zero(tmp_path: Path) -> None:
    ds = load(write(tmp_path / "nan.csv", NAN_CSV), nan_policy="zero")
    np.testing.assert_array_equal(ds.X, [[1, 10], [0, 20], [3, 0], [5, 40]])


def test_nan_policy_median_uses_finite_values(tmp_path: Path) -> None:
    ds = load(write(tmp_path / "nan.csv", NAN_CSV), nan_policy="median")
    np.testing.assert_array_equal(ds.X, [[1, 10], [3, 20], [3, 20], [5, 40]])
    assert ds.info["nan_report"]["columns"] == {"a": 1, "b": 1}


def test_values_beyond_float32_count_as_inf(tmp_path: Path) -> None:
    ds = load(write(tmp_path / "big.csv", "a,label\n1e300,1\n2,0\n4,1\n"), nan_policy="median")
    np.testing.assert_array_equal(ds.X[:, 0], [3, 2, 4])


# --------------------------------------------------------------------------- Parquet


def test_generic_parquet_uses_the_table_rules(tmp_path: Path) -> None:
    df = pd.DataFrame(
        {
            "sha": ["a", "b", "c"],
            "x": [1.0, 2.0, 3.0],
            "n": pd.array([1, None, 3], dtype="Int64"),
            "is_malware": [True, False, True],
        }
    )
    path = tmp_path / "t.parquet"
    df.to_parquet(path)
    ds = load(path, nan_policy="zero")
    assert ds.info["provenance"]["format"] == "parquet"
    assert ds.feature_names == ["x", "n"]
    np.testing.assert_array_equal(ds.X[:, 1], [1, 0, 3])
    np.testing.assert_array_equal(ds.y, [1, 0, 1])
    assert ds.metadata is not None and ds.metadata["sha256"].tolist() == ["a", "b", "c"]


def test_explicit_wrong_format_is_explained(tmp_path: Path) -> None:
    csv = write(tmp_path / "t.csv", "a,label\n1,1\n")
    msg = error_of(csv, format="npz")
    assert "t.csv" in msg and "not a readable .npz" in msg and "--format" in msg
    msg = error_of(csv, format="ember")
    assert "t.csv" in msg and "not a folder" in msg


def test_garbage_parquet(tmp_path: Path) -> None:
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"this is not parquet at all")
    msg = error_of(bad)
    assert "bad.parquet" in msg and "not a readable Parquet" in msg


def test_unknown_extension_asks_for_format(tmp_path: Path) -> None:
    msg = error_of(write(tmp_path / "data.xyz", "a,label\n1,1\n"))
    assert "data.xyz" in msg and "--format" in msg
    ds = load(tmp_path / "data.xyz", format="csv")
    assert ds.n_samples == 1


# --------------------------------------------------------------------------- own format


def _rich_dataset(n: int = 12) -> Dataset:
    rng = np.random.default_rng(3)
    y = np.array([1, 0, -1] * (n // 3), dtype=np.int8)
    meta = pd.DataFrame(
        {
            "family": np.array(["a", None, None] * (n // 3), dtype=object),
            "first_seen": pd.date_range("2020-01-01", periods=n, freq="D", tz="UTC"),
            "source": np.arange(n) % 4,
            "sha256": [f"{i:064x}" for i in range(n)],
        }
    )
    meta["family"] = meta["family"].astype(object).where(meta["family"].notna(), None)
    meta["sha256"] = meta["sha256"].astype("string")
    return Dataset(
        X=rng.normal(size=(n, 5)).astype(np.float32),
        y=y,
        feature_names=["size", "entropy", "imports.count", "a b", "ü"],
        metadata=meta,
        name="rich",
        info={"schema": "custom-v1"},
    )


def test_own_parquet_round_trip_is_exact(tmp_path: Path) -> None:
    ds = _rich_dataset()
    path = save_dataset(ds, tmp_path / "sub" / "rich.parquet")
    assert detect_format(path) == "fedmetamal"
    back = load(path)
    np.testing.assert_array_equal(back.X, ds.X)
    np.testing.assert_array_equal(back.y, ds.y)
    assert back.y.dtype == np.int8
    assert back.feature_names == ds.feature_names
    assert back.name == "rich" and back.info["schema"] == "custom-v1"
    assert back.metadata is not None and ds.metadata is not None
    pd.testing.assert_frame_equal(back.metadata, ds.metadata)
    assert back.metadata["family"].dtype == object and back.metadata["family"][1] is None
    assert back.info["provenance"]["format"] == "fedmetamal"


def test_loaded_csv_round_trips_through_own_format(tmp_path: Path) -> None:
    csv = write(
        tmp_path / "s.csv",
        "sha,family,first_seen,source,size,label\n"
        "aa,emotet,2020-01-02,3,1.5,1\nbb,,2020-03-04,1,2.5,0\n",
    )
    ds = load(csv)
    back = load(save_dataset(ds, tmp_path / "s.parquet"))
    assert back.metadata is not None and ds.metadata is not None
    pd.testing.assert_frame_equal(back.metadata, ds.metadata)
    np.testing.assert_array_equal(back.X, ds.X)


def test_own_parquet_without_metadata(tmp_path: Path) -> None:
    ds = Dataset(X=np.eye(3, dtype=np.float32), y=np.array([1, 0, 1]), feature_names=list("abc"))
    back = load(save_dataset(ds, tmp_path / "plain.parquet"), format="parquet")
    assert back.metadata is None
    np.testing.assert_array_equal(back.X, ds.X)


def test_fedmetamal_format_on_plain_parquet_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "plain.parquet"
    pd.DataFrame({"a": [1.0], "label": [1]}).to_parquet(path)
    msg = error_of(path, format="fedmetamal")
    assert "plain.parquet" in msg and "not a FedMetaMal dataset file" in msg
    assert "--format parquet" in msg


def test_saving_refuses_clashing_feature_names(tmp_path: Path) -> None:
    ds = Dataset(
        X=np.zeros((2, 3), np.float32), y=np.array([1, 0]), feature_names=["a", "a", "label"]
    )
    with pytest.raises(DataError, match="offending: a, label"):
        save_dataset(ds, tmp_path / "x.parquet")


# --------------------------------------------------------------------------- BODMAS npz


def _bodmas(folder: Path, n: int = 30, d: int = 2381) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(n, d)).astype(np.float32)
    y = (np.arange(n) % 3 == 0).astype(np.int64)
    np.savez_compressed(folder / "bodmas.npz", X=X, y=y)
    return X, y


def _bodmas_metadata(folder: Path, y: np.ndarray, name: str = "bodmas_metadata.csv") -> None:
    lines = ["sha,timestamp,family"]
    for i, label in enumerate(y):
        family = f"fam{i % 4}" if label == 1 else ""
        lines.append(f"{i:064x},2019-{1 + i % 12:02d}-01 00:00:00+00:00,{family}")
    write(folder / name, "\n".join(lines) + "\n")


def test_bodmas_npz_with_metadata(tmp_path: Path) -> None:
    X, y = _bodmas(tmp_path)
    _bodmas_metadata(tmp_path, y)
    ds = load(tmp_path / "bodmas.npz")
    np.testing.assert_array_equal(ds.X, X)
    np.testing.assert_array_equal(ds.y, y)
    assert ds.feature_names[0] == "ember_v2_0" and ds.info["schema"] == "ember-v2"
    assert ds.metadata is not None
    assert list(ds.metadata.columns) == ["sha256", "first_seen", "family"]
    assert str(ds.metadata["first_seen"].dt.tz) == "UTC"
    assert ds.metadata["family"][y == 0].isna().all()
    assert ds.metadata["family"][y == 1].notna().all()


def test_bodmas_metadata_found_by_stem(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "part.npz", X=rng.normal(size=(4, 8)), y=np.array([1, 0, 1, 0]))
    _bodmas_metadata(tmp_path, np.array([1, 0, 1, 0]), name="part_metadata.csv")
    ds = load(tmp_path / "part.npz")
    assert ds.feature_names == [f"f{i}" for i in range(8)]
    assert ds.metadata is not None and ds.info["metadata_file"].endswith("part_metadata.csv")


def test_bodmas_metadata_row_mismatch(tmp_path: Path) -> None:
    _, y = _bodmas(tmp_path)
    _bodmas_metadata(tmp_path, y[:-3])
    msg = error_of(tmp_path / "bodmas.npz")
    assert "bodmas_metadata.csv' has 27 rows" in msg and "30 samples" in msg
    assert "metadata file that belongs" in msg


def test_npz_object_array_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "obj.npz"
    np.savez(path, X=np.array([[1, "a"]], dtype=object), y=np.array([1]))
    msg = error_of(path)
    assert "'X'" in msg and "obj.npz" in msg and "pickle" in msg


def test_npz_missing_array_and_length_mismatch(tmp_path: Path) -> None:
    np.savez(tmp_path / "nolab.npz", X=np.zeros((2, 3)), labels=np.array([1, 0]))
    msg = error_of(tmp_path / "nolab.npz")
    assert "no array 'y'" in msg and "X, labels" in msg and "np.savez" in msg
    np.savez(tmp_path / "short.npz", X=np.zeros((3, 3)), y=np.array([1, 0]))
    msg = error_of(tmp_path / "short.npz")
    assert "3 feature rows but 2 labels" in msg


def test_npz_garbage(tmp_path: Path) -> None:
    (tmp_path / "g.npz").write_bytes(b"PK\x03\x04 not really a zip")
    msg = error_of(tmp_path / "g.npz")
    assert "g.npz" in msg and "not a readable .npz" in msg


# --------------------------------------------------------------------------- EMBER folders


def _ember(folder: Path, d: int, n_train: int = 20, n_test: int = 10) -> dict[str, np.ndarray]:
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(d)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        X = rng.normal(size=(n, d)).astype(np.float32)
        y = np.array([1, 0, -1, 0, 1][: min(n, 5)] * (n // 5 + 1), dtype=np.float32)[:n]
        X.tofile(folder / f"X_{split}.dat")
        y.tofile(folder / f"y_{split}.dat")
        out[f"X_{split}"], out[f"y_{split}"] = X, y
    return out


def test_ember_v2_train_stays_memory_mapped(tmp_path: Path) -> None:
    arrays = _ember(tmp_path / "ember2018", 2381)
    ds = load(tmp_path / "ember2018")
    assert isinstance(ds.X, np.memmap)
    assert ds.X.shape == (20, 2381)
    np.testing.assert_array_equal(ds.X, arrays["X_train"])
    np.testing.assert_array_equal(ds.y, arrays["y_train"])
    assert (ds.y == -1).sum() == 4
    assert ds.feature_names[-1] == "ember_v2_2380" and ds.info["schema"] == "ember-v2"
    assert ds.info["provenance"]["format"] == "ember" and ds.info["memory_mapped"]


def test_ember_v3_all_with_metadata_subset_column(tmp_path: Path) -> None:
    folder = tmp_path / "ember2024"
    arrays = _ember(folder, 2568)
    rows = ["sha256,appeared,label,avclass,subset"]
    rows += [f"tr{i},2023-{1 + i % 12:02d},0,fam{i},train" for i in range(20)]
    rows += [f"te{i},2024-01,1,,test" for i in range(10)]
    write(folder / "metadata.csv", "\n".join(rows) + "\n")
    ds = load(folder, ember_subset="all")
    assert ds.X.shape == (30, 2568) and ds.feature_names[0] == "general_size"
    np.testing.assert_array_equal(ds.X, np.vstack([arrays["X_train"], arrays["X_test"]]))
    assert ds.metadata is not None
    assert list(ds.metadata.columns) == ["sha256", "first_seen", "family"]
    assert ds.metadata["sha256"].iloc[20] == "te0"
    assert ds.metadata["family"].iloc[:20].notna().all()
    assert ds.metadata["family"].iloc[20:].isna().all()
    assert ds.name == "ember2024-all"


def test_ember_test_split_with_plain_metadata(tmp_path: Path) -> None:
    folder = tmp_path / "e"
    arrays = _ember(folder, 2381)
    rows = ["sha256,appeared,avclass"] + [f"s{i},2018-01,f" for i in range(30)]
    write(folder / "metadata.csv", "\n".join(rows) + "\n")
    ds = load(folder, ember_subset="test")
    assert isinstance(ds.X, np.memmap)
    np.testing.assert_array_equal(ds.y, arrays["y_test"])
    assert ds.metadata is not None and ds.metadata["sha256"].iloc[0] == "s20"


def test_ember_subsample_reads_only_chosen_rows(tmp_path: Path) -> None:
    arrays = _ember(tmp_path / "e", 2381, n_train=40)
    ds = load(tmp_path / "e", max_samples=10)
    assert not isinstance(ds.X, np.memmap) and ds.X.shape == (10, 2381)
    idx = stratified_sample_index(arrays["y_train"].astype(np.int8), 10, 0)
    np.testing.assert_array_equal(ds.X, arrays["X_train"][idx])
    assert ds.info["subsample"] == {"max_samples": 10, "seed": 0, "from": 40}
    assert ds.info["provenance"]["samples_in_source"] == 40


def test_ember_all_subsample_across_splits_with_split_metadata(tmp_path: Path) -> None:
    folder = tmp_path / "e"
    arrays = _ember(folder, 2381)
    for split, n in (("train", 20), ("test", 10)):
        rows = ["sha256,appeared,avclass"] + [f"{split}{i},2018-02,f{i}" for i in range(n)]
        write(folder / f"{split}_metadata.csv", "\n".join(rows) + "\n")
    ds = load(folder, ember_subset="all", max_samples=12)
    y_all = np.concatenate([arrays["y_train"], arrays["y_test"]]).astype(np.int8)
    idx = stratified_sample_index(y_all, 12, 0)
    assert idx.max() >= 20 and idx.min() < 20
    np.testing.assert_array_equal(ds.X, np.vstack([arrays["X_train"], arrays["X_test"]])[idx])
    np.testing.assert_array_equal(ds.y, y_all[idx])
    names = [f"train{i}" for i in range(20)] + [f"test{i}" for i in range(10)]
    assert ds.metadata is not None
    assert ds.metadata["sha256"].tolist() == [names[i] for i in idx]


def test_ember_truncated_features(tmp_path: Path) -> None:
    folder = tmp_path / "e"
    _ember(folder, 2381)
    x = folder / "X_train.dat"
    x.write_bytes(x.read_bytes()[:-7])
    msg = error_of(folder)
    assert "X_train.dat" in msg and "truncated" in msg and "20 rows" in msg


def test_ember_wrong_width(tmp_path: Path) -> None:
    _ember(tmp_path / "e", 100)
    msg = error_of(tmp_path / "e")
    assert "100 features per row" in msg and "2381" in msg and "2568" in msg


def test_ember_metadata_mismatch(tmp_path: Path) -> None:
    folder = tmp_path / "e"
    _ember(folder, 2381)
    write(folder / "metadata.csv", "sha256,appeared\n" + "a,2018-01\n" * 7)
    msg = error_of(folder)
    assert "metadata.csv' does not match" in msg and "7 rows" in msg


def test_folder_that_is_not_ember(tmp_path: Path) -> None:
    write(tmp_path / "readme.txt", "hi")
    msg = error_of(tmp_path)
    assert "not an EMBER vectorized folder" in msg and "readme.txt" in msg


def test_memory_mapped_dataset_round_trips_through_own_format(tmp_path: Path) -> None:
    _ember(tmp_path / "e", 2381, n_train=5, n_test=5)
    ds = load(tmp_path / "e")
    back = load(save_dataset(ds, tmp_path / "e.parquet"))
    np.testing.assert_array_equal(back.X, ds.X)
    assert back.feature_names == ds.feature_names and back.info["schema"] == "ember-v2"


# --------------------------------------------------------------------------- sampling, sources


def _imbalanced_csv(path: Path, n: int = 1000) -> Path:
    rows = "".join(f"{i},{int(i % 10 < 3)}\n" for i in range(n))
    return write(path, "idx,label\n" + rows)


def test_max_samples_is_stratified_and_deterministic(tmp_path: Path) -> None:
    csv = _imbalanced_csv(tmp_path / "big.csv")
    a = load(csv, max_samples=100)
    b = load(csv, max_samples=100)
    c = load_dataset(DatasetConfig(source=str(csv), max_samples=100), seed=1)
    assert a.class_counts() == {"malware": 30, "benign": 70, "unlabelled": 0}
    np.testing.assert_array_equal(a.X, b.X)
    assert not np.array_equal(a.X, c.X)
    assert a.info["subsample"] == {"max_samples": 100, "seed": 0, "from": 1000}


def test_stratified_sample_keeps_a_rare_class() -> None:
    y = np.zeros(1000, dtype=np.int8)
    y[:2] = 1
    idx = stratified_sample_index(y, 10, 5)
    assert idx.size == 10 and np.all(np.diff(idx) > 0) and y[idx].sum() >= 1


def test_synthetic_source_dispatches_and_subsamples(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def generate(cfg: SyntheticConfig, seed: int) -> Dataset:
        calls.append((cfg, seed))
        y = np.array([1, 0] * 100)
        return Dataset(X=np.zeros((200, 4), np.float32), y=y, feature_names=list("abcd"))

    fake = types.ModuleType("fedmetamal.data.synthetic")
    fake.generate = generate  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fedmetamal.data.synthetic", fake)
    cfg = DatasetConfig(source="synthetic", max_samples=50)
    ds = load_dataset(cfg, seed=7)
    assert calls == [(cfg.synthetic, 7)]
    assert ds.n_samples == 50 and ds.class_counts()["malware"] == 25
    assert ds.info["provenance"]["format"] == "synthetic" and ds.info["provenance"]["seed"] == 7


def test_resolve_shared_data_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pe-headers").mkdir()
    csv = write(tmp_path / "pe-headers" / "dataset_malwares.csv", "a,Malware\n1,1\n2,0\n")
    monkeypatch.setenv(sources.SHARED_DATA_ENV, str(tmp_path))
    assert resolve_shared_data("pe-headers") == csv.resolve()
    ds = load("pe-headers")
    assert ds.name == "pe-headers" and ds.info["schema"] == "pe-header"


def test_resolve_shared_data_says_where_it_looked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sources, "shared_data_roots", lambda: [tmp_path / "nowhere"])
    with pytest.raises(DataError) as info:
        resolve_shared_data("pe-headers")
    msg = str(info.value)
    assert str(tmp_path / "nowhere" / "pe-headers") in msg
    assert "FEDMETAMAL_SHARED_DATA" in msg and "dataset.source" in msg
    with pytest.raises(DataError, match="not a shared dataset"):
        resolve_shared_data("synthetic")


def test_known_datasets_are_listed() -> None:
    assert {"synthetic", "pe-headers"} <= set(KNOWN_DATASETS)
    assert all(isinstance(v, str) and v for v in KNOWN_DATASETS.values())


@pytest.mark.shared_data
def test_pe_headers_real_file() -> None:
    try:
        resolve_shared_data("pe-headers")
    except DataError as err:
        pytest.skip(f"shared pe-headers data absent: {err}")
    ds = load("pe-headers")
    assert (ds.n_samples, ds.n_features) == (20306, 50)
    assert ds.class_counts() == {"malware": 14599, "benign": 5707, "unlabelled": 0}
    assert ds.info["label_column"] == "Malware" and ds.metadata is None
    ds.check_trainable()
