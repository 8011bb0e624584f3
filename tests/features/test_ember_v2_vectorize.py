"""EMBER 2017/2018 raw JSON (feature version 2) -> 2381-column vectors, the vectorized folder,
and ``fedmetamal data vectorize`` on such files.

The ``ember`` package that made the published vectors is not installable today (it needs lief
0.9 and a 2018 scikit-learn), so there is no reference run here. Instead every group is checked
column by column against its definition: plain fields at their exact indices, and each hashed
block against scikit-learn's ``FeatureHasher`` called directly, as the reference calls it.
"""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from sklearn.feature_extraction import FeatureHasher
from sklearn.utils import murmurhash3_32

from fedmetamal.cli import run as run_cli
from fedmetamal.config import DatasetConfig
from fedmetamal.data.loaders_ember import load_ember
from fedmetamal.errors import DataError
from fedmetamal.features.ember.raw_json import RawFeatureError
from fedmetamal.features.ember_v2 import (
    GROUP_BY_NAME,
    GROUPS,
    WIDTH,
    detect_feature_version,
    feature_version,
    vectorize_raw_v2,
    vectorize_v2_jsonl,
)
from fedmetamal.features.ember_v2.dedup import drop_duplicate_sha256
from fedmetamal.features.ember_v2.vectorize import hash_pairs_exact

G = GROUP_BY_NAME


def _start(name: str) -> int:
    return G[name].start


def _strings_hash(names: list[str], width: int) -> np.ndarray:
    return FeatureHasher(width, input_type="string").transform([names]).toarray()[0]


def _pairs_hash(pairs: list[tuple[str, float]], width: int) -> np.ndarray:
    return FeatureHasher(width, input_type="pair").transform([pairs]).toarray()[0]


def _block(vector: np.ndarray, group: str, offset: int, width: int) -> np.ndarray:
    return vector[_start(group) + offset : _start(group) + offset + width]


def _sections() -> list[dict[str, Any]]:
    return [
        {"name": ".text", "size": 4096, "entropy": 6.25, "vsize": 4000,
         "props": ["CNT_CODE", "MEM_EXECUTE", "MEM_READ"]},
        {"name": ".data", "size": 0, "entropy": 0.0, "vsize": 512,
         "props": ["CNT_INITIALIZED_DATA", "MEM_READ", "MEM_WRITE"]},
        {"name": "", "size": 512, "entropy": 1.5, "vsize": 600, "props": ["MEM_READ"]},
        {"name": ".text", "size": 1024, "entropy": 2.0, "vsize": 1024, "props": ["MEM_WRITE"]},
    ]  # fmt: skip


def _record(i: int, **extra: Any) -> dict[str, Any]:
    """A raw record shaped like the EMBER 2018 ones (a parsed PE file)."""
    rng = np.random.default_rng(i)
    return {
        "sha256": f"{i:064x}", "md5": f"{i:032x}", "appeared": f"2018-{1 + i % 12:02d}",
        "label": [0, 1, -1][i % 3], "avclass": "zbot" if i % 3 == 1 else "",
        "histogram": rng.integers(0, 900, 256).tolist(),
        "byteentropy": rng.integers(0, 900, 256).tolist(),
        "strings": {"numstrings": 14 + i, "avlength": 5.5, "printabledist": list(range(96)),
                    "printables": 4560, "entropy": 6.1, "paths": 1, "urls": 2, "registry": 3,
                    "MZ": 4},
        "general": {"size": 33280 + i, "vsize": 45056, "has_debug": 1, "exports": 2,
                    "imports": 5, "has_relocations": 1, "has_resources": 0,
                    "has_signature": 0, "has_tls": 1, "symbols": 7},
        "header": {
            "coff": {"timestamp": 1_365_446_976, "machine": "I386",
                     "characteristics": ["CHARA_32BIT_MACHINE", "EXECUTABLE_IMAGE"]},
            "optional": {"subsystem": "WINDOWS_GUI", "dll_characteristics": ["NX_COMPAT"],
                         "magic": "PE32", "major_image_version": 1, "minor_image_version": 2,
                         "major_linker_version": 3, "minor_linker_version": 4,
                         "major_operating_system_version": 5,
                         "minor_operating_system_version": 6, "major_subsystem_version": 7,
                         "minor_subsystem_version": 8, "sizeof_code": 9, "sizeof_headers": 10,
                         "sizeof_heap_commit": 11},
        },
        "section": {"entry": ".text", "sections": _sections()},
        "imports": {"KERNEL32.dll": ["CreateFileA", "ordinal12"], "kernel32.dll": ["ExitProcess"],
                    "USER32.dll": ["MessageBoxW"]},
        "exports": ["DllMain", "ordinal3"],
        "datadirectories": [
            {"name": f"D{j}", "size": 100 + j, "virtual_address": 4096 * (j + 1)}
            for j in range(16)
        ],
        **extra,
    }  # fmt: skip


def _failed_parse_record(i: int) -> dict[str, Any]:
    """What the reference stores when lief could not parse a file: empty PE groups and the
    header's defaults (empty strings and zeros)."""
    optional = {k: 0 for k in _record(0)["header"]["optional"]}
    optional.update(subsystem="", dll_characteristics=[], magic="")
    return _record(
        i,
        general={**{k: 0 for k in _record(0)["general"]}, "size": 1234},
        header={"coff": {"timestamp": 0, "machine": "", "characteristics": []},
                "optional": optional},
        section={"entry": "", "sections": []},
        imports={}, exports=[], datadirectories=[],
    )  # fmt: skip


def test_the_layout_has_the_nine_groups_in_extractor_order() -> None:
    assert [(g.name, g.width) for g in GROUPS] == [
        ("histogram", 256), ("byteentropy", 256), ("strings", 104), ("general", 10),
        ("header", 62), ("section", 255), ("imports", 1280), ("exports", 128),
        ("datadirectories", 30),
    ]  # fmt: skip
    assert WIDTH == 2381 and GROUPS[0].start == 0
    assert all(a.stop == b.start for a, b in itertools.pairwise(GROUPS))


def test_histograms_strings_and_general_fields_sit_at_their_columns() -> None:
    record = _record(4)
    v = vectorize_raw_v2(record)
    assert v.shape == (WIDTH,) and v.dtype == np.float32
    for name in ("histogram", "byteentropy"):
        counts = np.asarray(record[name], dtype=np.float32)
        assert np.array_equal(v[G[name].start : G[name].stop], counts / counts.sum())
    s = _start("strings")
    assert v[s : s + 3].tolist() == [18, 5.5, 4560]  # numstrings, avlength, printables
    assert v[s + 3 + 95] == np.float32(95 / 4560) and v[s + 3] == 0
    assert v[s + 99] == np.float32(6.1)
    assert v[s + 100 : s + 104].tolist() == [1, 2, 3, 4]  # paths, urls, registry, MZ
    general = v[G["general"].start : G["general"].stop]
    assert general.tolist() == [33284, 45056, 1, 2, 5, 1, 0, 0, 1, 7]


def test_header_hashes_each_string_field_into_ten_buckets() -> None:
    record = _record(1)
    v = vectorize_raw_v2(record)
    coff, optional = record["header"]["coff"], record["header"]["optional"]
    assert v[_start("header")] == np.float32(1_365_446_976)
    expected = [
        [coff["machine"]], coff["characteristics"], [optional["subsystem"]],
        optional["dll_characteristics"], [optional["magic"]],
    ]  # fmt: skip
    for k, names in enumerate(expected):
        block = _block(v, "header", 1 + 10 * k, 10)
        assert np.array_equal(block, _strings_hash(names, 10).astype(np.float32)), k
        assert np.abs(block).sum() == len(names)
    assert _block(v, "header", 51, 11).tolist() == list(range(1, 12))
    # the bucket and sign are murmurhash3's: |h| mod 10, negative when h < 0
    h = murmurhash3_32(b"I386", seed=0)
    assert _block(v, "header", 1, 10)[abs(h) % 10] == (1 if h >= 0 else -1)


def test_section_counts_pairs_and_entry_blocks() -> None:
    record = _record(2)
    v = vectorize_raw_v2(record)
    sections = record["section"]["sections"]
    # sections; zero size; empty name; readable+executable; writable
    assert _block(v, "section", 0, 5).tolist() == [4, 1, 1, 1, 2]
    for k, key in enumerate(("size", "entropy", "vsize")):
        pairs = [(s["name"], s[key]) for s in sections]
        got = _block(v, "section", 5 + 50 * k, 50)
        assert np.array_equal(got, _pairs_hash(pairs, 50).astype(np.float32)), key
    # .text appears twice: its two sizes share one bucket, as FeatureHasher sums them
    h = murmurhash3_32(b".text", seed=0)
    assert _block(v, "section", 5, 50)[abs(h) % 50] == (4096 + 1024) * (1 if h >= 0 else -1)
    # the entry name is hashed character by character (the 2018 scikit-learn iterated it) ...
    entry = _block(v, "section", 155, 50)
    assert np.array_equal(entry, _strings_hash(list(".text"), 50).astype(np.float32))
    assert not np.array_equal(entry, _strings_hash([".text"], 50).astype(np.float32))
    # ... and the flags of every section carrying the entry's name are hashed whole
    flags = ["CNT_CODE", "MEM_EXECUTE", "MEM_READ", "MEM_WRITE"]
    assert np.array_equal(_block(v, "section", 205, 50), _strings_hash(flags, 50))


def test_many_sections_sum_exactly_as_feature_hasher_does() -> None:
    rng = np.random.default_rng(0)
    sections = [
        {"name": f".s{j % 5}", "size": int(rng.integers(0, 10**6)),
         "entropy": float(rng.random() * 8), "vsize": int(rng.integers(1, 10**6)),
         "props": ["MEM_READ"]}
        for j in range(40)
    ]  # fmt: skip
    v = vectorize_raw_v2(_record(0, section={"entry": ".s1", "sections": sections}))
    pairs = [(s["name"], s["entropy"]) for s in sections]
    assert np.array_equal(_block(v, "section", 55, 50), _pairs_hash(pairs, 50).astype(np.float32))
    # even before the float32 cast: scipy sums a bucket's 8 values in its own order
    assert np.array_equal(hash_pairs_exact(pairs, 50, "entropy"), _pairs_hash(pairs, 50))
    # a text value is hashed as name=value with weight 1, as FeatureHasher does
    odd = [(".text", "big"), (".text", 3)]
    assert np.array_equal(hash_pairs_exact(odd, 50, "size"), _pairs_hash(odd, 50))


def test_imports_exports_and_data_directories() -> None:
    record = _record(5)
    v = vectorize_raw_v2(record)
    libraries = _strings_hash(["kernel32.dll", "user32.dll"], 256)  # distinct, lower-cased
    functions = ["kernel32.dll:CreateFileA", "kernel32.dll:ordinal12", "kernel32.dll:ExitProcess"]
    functions += ["user32.dll:MessageBoxW"]
    assert np.array_equal(_block(v, "imports", 0, 256), libraries)
    assert np.array_equal(_block(v, "imports", 256, 1024), _strings_hash(functions, 1024))
    assert np.abs(_block(v, "imports", 0, 256)).sum() == 2
    assert np.array_equal(v[G["exports"].start : G["exports"].stop], _strings_hash(
        ["DllMain", "ordinal3"], 128))  # fmt: skip
    directories = v[G["datadirectories"].start :]
    assert directories[0::2].tolist() == [100 + j for j in range(15)]  # by position, 16th left
    assert directories[1::2].tolist() == [4096 * (j + 1) for j in range(15)]


def test_a_file_lief_could_not_parse_keeps_only_its_defaults() -> None:
    v = vectorize_raw_v2(_failed_parse_record(3))
    assert v[G["general"].start] == 1234 and not v[G["general"].start + 1 : G["general"].stop].any()
    header = v[G["header"].start : G["header"].stop]
    # an empty machine, subsystem and magic each hash to bucket 0 with +1 (murmurhash3 of b"")
    assert (
        np.flatnonzero(header).tolist() == [1, 21, 41] and header[[1, 21, 41]].tolist() == [1] * 3
    )
    assert not v[G["section"].start :].any()


def test_an_empty_histogram_stays_zero_rather_than_nan() -> None:
    v = vectorize_raw_v2(_record(0, histogram=[0] * 256))
    assert np.isfinite(v).all() and not v[: G["histogram"].stop].any()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"histogram": [1, 2]},
            "group 'histogram' is malformed: the histogram holds 2 counts, not 256",
        ),
        ({"general": {"size": 1}}, "group 'general' is malformed: missing key 'vsize'"),
        ({"general": {**_record(0)["general"], "vsize": None}}, "vsize is None, not a number"),
        ({"general": {**_record(0)["general"], "size": 1e39}}, "'general' gives a value too"),
        ({"strings": {**_record(0)["strings"], "printabledist": [1]}}, "1 counts, not 96"),
        ({"byteentropy": [None] * 256}, "'byteentropy' is malformed: the histogram holds a value"),
        ({"section": {"entry": 3, "sections": []}}, "entry is 3, not a section name"),
        ({"imports": {"a.dll": "CreateFileA"}}, "a.dll is not a list of strings"),
        ({"exports": [None]}, "exports is not a list of strings"),
        ({"datadirectories": [{"size": 1}]}, "missing key 'virtual_address'"),
    ],
)
def test_odd_values_are_a_clear_error_naming_the_group(
    change: dict[str, Any], message: str
) -> None:
    with pytest.raises(RawFeatureError, match=message):
        vectorize_raw_v2({**_record(0), **change})


def test_feature_version_comes_from_the_keys() -> None:
    v2 = _record(0)
    v1 = {k: v for k, v in v2.items() if k != "datadirectories"}
    assert feature_version(v2) == 2 and feature_version(v1) == 1
    assert feature_version({**v2, "richheader": []}) == 3
    assert feature_version({"sha256": "x"}) is None
    with pytest.raises(RawFeatureError, match="missing feature groups: datadirectories"):
        vectorize_raw_v2(v1)


def _write_jsonl(path: Path, records: list[Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{json.dumps(r)}\n" for r in records))
    return path


def _ember_folder(root: Path) -> tuple[Path, list[dict[str, Any]], list[dict[str, Any]]]:
    """EMBER-like raw files: two train files (one row repeating a sha256), one test file."""
    train = [_record(i) for i in range(10)] + [_failed_parse_record(10)]
    test = [_record(i) for i in range(20, 26)]
    raw = root / "ember2018"
    _write_jsonl(raw / "train_features_0.jsonl", train[:6])
    _write_jsonl(raw / "train_features_1.jsonl", [*train[6:], _record(2)])  # 2 again
    _write_jsonl(raw / "test_features.jsonl", test)
    return raw, train, test


def test_vectorize_v2_jsonl_writes_the_folder_the_loader_reads(tmp_path: Path) -> None:
    raw, train, test = _ember_folder(tmp_path)
    files = sorted(raw.glob("*.jsonl"))  # test_features first: train is still written first
    assert detect_feature_version(files) == 2
    out = tmp_path / "vectors"
    summary = vectorize_v2_jsonl(files, out, batch_rows=4)
    assert dict(summary.rows) == {"train": 11, "test": 6} and summary.duplicates == 1
    X = np.fromfile(out / "X_train.dat", dtype=np.float32).reshape(-1, WIDTH)
    assert np.array_equal(X, np.vstack([vectorize_raw_v2(r) for r in train]))
    y = np.fromfile(out / "y_test.dat", dtype=np.float32)
    assert y.tolist() == [r["label"] for r in test]
    with (out / "train_metadata.csv").open() as fh:
        meta = list(csv.DictReader(fh))
    assert [m["sha256"] for m in meta] == [r["sha256"] for r in train]
    assert meta[1]["avclass"] == "zbot" and meta[0]["appeared"] == "2018-01"
    assert not list(out.glob("*.partial"))

    ds = load_ember(out, DatasetConfig(source=str(out)), seed=0)
    assert ds.X.shape == (11, 2381) and ds.info["schema"] == "ember-v2"
    assert ds.y.tolist() == [r["label"] for r in train] and -1 in ds.y.tolist()
    assert ds.metadata is not None and ds.metadata["family"].iloc[1] == "zbot"
    both = load_ember(out, DatasetConfig(source=str(out), ember_subset="all"), seed=0)
    assert both.X.shape == (17, 2381)
    assert np.array_equal(both.X[11:], np.vstack([vectorize_raw_v2(r) for r in test]))

    limited = vectorize_v2_jsonl(files, tmp_path / "five", limit=5, split="test")
    assert dict(limited.rows) == {"test": 5} and (tmp_path / "five" / "X_test.dat").is_file()
    assert not (tmp_path / "five" / "X_train.dat").exists()


def test_data_vectorize_on_ember_2018_raw_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw, _, _ = _ember_folder(tmp_path)
    out = tmp_path / "ember2018-vectors"
    assert run_cli(["data", "vectorize", str(raw), "-o", str(out), "-q"]) == 0
    printed = capsys.readouterr().out
    assert "Wrote 17 rows (11 train, 6 test; " in printed and "feature version 2" in printed
    assert "Dropped 1 rows repeating an earlier row's sha256" in printed
    assert run_cli(["data", "info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["features"] == 2381 and info["samples"] == 11
    # the same folder again is refused rather than mixed with the old rows
    assert run_cli(["data", "vectorize", str(raw), "-o", str(out), "-q"]) == 2
    assert "already holds vectorized EMBER files" in capsys.readouterr().err
    assert run_cli(["data", "vectorize", str(raw), "-o", str(tmp_path / "x.parquet")]) == 2
    assert "written as a folder" in capsys.readouterr().err
    forced = tmp_path / "all-test"
    args = ["data", "vectorize", str(raw), "-o", str(forced), "--split", "test"]
    assert run_cli([*args, "--feature-version", "2", "-q"]) == 0
    assert "dataset.ember_subset=test" in capsys.readouterr().out
    assert sorted(p.name for p in forced.iterdir()) == [
        "X_test.dat",
        "test_metadata.csv",
        "y_test.dat",
    ]


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([json.dumps(_record(0)), "{not json"], "line 2: not JSON lines"),
        ([json.dumps(_record(0)), "7"], "line 2: a JSON int, not an object"),
        ([json.dumps(_record(0)), json.dumps({**_record(1), "label": 2})], "line 2: label is 2"),
        (
            [json.dumps({k: v for k, v in _record(0).items() if k != "datadirectories"})],
            "is EMBER feature version 1",
        ),
        ([json.dumps({"sha256": "ab"})], "is no EMBER raw-feature record"),
    ],
)
def test_bad_v2_input_is_one_clear_error(
    lines: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "train_features_0.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    code = run_cli(["data", "vectorize", str(bad), "-o", str(out), "-q"])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert not out.exists()
    if "version" not in message and "no EMBER" not in message:
        assert "train_features_0.jsonl" in err
        with pytest.raises(DataError, match=message):
            vectorize_v2_jsonl([bad], tmp_path / "direct")


def test_a_forced_feature_version_names_the_record_version(tmp_path: Path) -> None:
    v3_like = {**_record(0), "richheader": [], "authenticode": {}, "pefilewarnings": []}
    del v3_like["datadirectories"]
    path = _write_jsonl(tmp_path / "a.jsonl", [v3_like])
    with pytest.raises(DataError, match="This record is EMBER feature version 3"):
        vectorize_v2_jsonl([path], tmp_path / "out")


def _v3_record(i: int, sha: int) -> dict[str, Any]:
    """A small EMBER2024 (feature version 3) record of a non-PE file."""
    return {
        "sha256": f"{sha:064x}", "label": i % 2,
        "general": {"size": 256, "entropy": 8.0, "is_pe": 0, "start_bytes": [1, 2, 3, 4]},
        "histogram": [1] * 256, "byteentropy": [1] * 256,
        "strings": {"numstrings": i, "avlength": 0, "printabledist": [0] * 96, "printables": 0,
                    "entropy": 0, "string_counts": {}},
        "header": {}, "section": {}, "imports": {}, "exports": [], "datadirectories": [],
        "richheader": [], "authenticode": {}, "pefilewarnings": [],
    }  # fmt: skip


def test_data_vectorize_drops_repeated_sha256_in_ember2024_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records = [_v3_record(i, sha) for i, sha in enumerate([1, 2, 1, 3, 2, 2])]
    _write_jsonl(tmp_path / "week.jsonl", records)
    out = tmp_path / "ember.parquet"
    assert run_cli(["data", "vectorize", str(tmp_path / "week.jsonl"), "-o", str(out), "-q"]) == 0
    printed = capsys.readouterr().out
    assert "Wrote 3 rows (2 malware, 1 benign, 0 unlabelled)" in printed
    assert "Dropped 3 rows" in printed
    table = pq.read_table(out)
    assert table.column("sha256").to_pylist() == [f"{s:064x}" for s in (1, 2, 3)]
    assert table.column("strings_numstrings").to_pylist() == [0, 1, 3]  # first ones kept
    assert table.schema.metadata == pq.read_schema(out).metadata and table.schema.metadata
    assert drop_duplicate_sha256(out) == {}  # nothing left to drop
