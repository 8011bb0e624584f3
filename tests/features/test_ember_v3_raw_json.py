"""Raw EMBER2024 JSON -> ember-v3 vectors: parity with the reference's own vectorizer, agreement
with our direct extraction, the streaming converter, and ``fedmetamal data vectorize``.

The raw JSON comes from the reference's raw-feature step run in its own environment
(``.cache/ember-ref`` or ``$FEDMETAMAL_EMBER_REF``), exactly the objects EMBER2024's ``.jsonl``
files hold; those tests skip, saying how to build it, when it is absent. The converter and CLI
tests use small hand-made records of non-PE files and need no reference.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from fedmetamal.cli import run as run_cli
from fedmetamal.errors import DataError
from fedmetamal.features.dataset_file import check_schema
from fedmetamal.features.ember import SCHEMA
from fedmetamal.features.ember.extractor import extract_path
from fedmetamal.features.ember.layout import COLUMNS, GROUP_BY_NAME, GROUPS, WIDTH
from fedmetamal.features.ember.parity import RTOL
from fedmetamal.features.ember.parser_warnings import PATTERNS
from fedmetamal.features.ember.raw_json import RawFeatureError, vectorize_jsonl, vectorize_raw

from .pe_corpus import Corpus

ROOT = Path(__file__).resolve().parents[2]
WORKER = ROOT / "src/fedmetamal/features/ember/reference_raw_worker.py"
#: Files in the (light) reference run: the smallest PE files and a few non-PE files.
PE_FILES = 20
OTHER_FILES = 5


@dataclass(frozen=True)
class RawRun:
    """The reference's raw JSON line and its own vector for each file (NaN where it raised)."""

    paths: list[Path]
    lines: list[str]
    vectors: np.ndarray
    errors: list[str]


@pytest.fixture(scope="module")
def raw_run(pe_corpus: Corpus, reference_python: Path) -> RawRun:
    """Raw JSON of corpus files from the reference, with its pefile warning patterns set to ours
    (ember-cdd-wdis ships none), so every group is computed on both sides."""
    pe = sorted(pe_corpus.pe_files, key=lambda p: p.stat().st_size)[:PE_FILES]
    other = [p for p in pe_corpus.other_files if p.stat().st_size > 0][:OTHER_FILES]
    paths = pe + other
    with tempfile.TemporaryDirectory() as out:
        patterns = Path(out) / "pefile_warnings.txt"
        patterns.write_text("".join(f"{p}\n" for p in PATTERNS))
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
        subprocess.run(
            [str(reference_python), str(WORKER), str(Path(out) / "run"), str(patterns)],
            input="".join(f"{p}\n" for p in paths),
            text=True,
            check=True,
            env=env,
            capture_output=True,
        )
        run = Path(out) / "run"
        lines = (run / "raw.jsonl").read_text().splitlines()
        vectors = np.load(run / "vectors.npy", allow_pickle=False)
        errors = json.loads((run / "meta.json").read_text())["errors"]
    assert len(lines) == len(paths) and not any(errors), errors
    return RawRun(paths, lines, vectors, errors)


def _differences(ours: np.ndarray, theirs: np.ndarray) -> dict[str, list[str]]:
    """Per group, the columns where two vectors differ beyond float32 rounding."""
    out: dict[str, list[str]] = {}
    for group in GROUPS:
        a, b = ours[group.start : group.stop], theirs[group.start : group.stop]
        bad = np.flatnonzero(~np.isclose(a, b, rtol=RTOL, atol=0, equal_nan=False))
        if bad.size:
            out[group.name] = [f"{group.columns[j]}: {a[j]!r} vs {b[j]!r}" for j in bad[:5]]
    return out


def test_raw_json_vectors_match_the_reference_vectorizer(raw_run: RawRun) -> None:
    exact = 0
    for path, line, reference in zip(raw_run.paths, raw_run.lines, raw_run.vectors, strict=True):
        ours = vectorize_raw(json.loads(line))
        assert ours.dtype == np.float32 and ours.shape == (WIDTH,)
        assert np.isfinite(reference).all()
        assert _differences(ours, reference) == {}, path
        exact += bool(np.array_equal(ours, reference))
    # Every group agrees within rounding; nearly all files agree bit for bit.
    assert exact >= len(raw_run.paths) - 2


def test_raw_json_vectors_equal_our_direct_extraction(raw_run: RawRun) -> None:
    for path, line in zip(raw_run.paths, raw_run.lines, strict=True):
        direct = extract_path(path)
        assert direct is not None
        assert _differences(vectorize_raw(json.loads(line)), direct.values) == {}, path


def test_the_corpus_exercises_the_pe_groups(raw_run: RawRun) -> None:
    """Guards the two tests above against passing on all-zero groups."""
    vectors = np.vstack([vectorize_raw(json.loads(line)) for line in raw_run.lines])
    for name in (
        "header",
        "section",
        "imports",
        "exports",
        "datadirectories",
        "richheader",
        "pefilewarnings",
    ):
        group = GROUP_BY_NAME[name]
        assert vectors[:, group.start : group.stop].any(), name
    non_pe = vectors[-1, GROUP_BY_NAME["header"].start : GROUP_BY_NAME["header"].stop]
    assert not non_pe.any()  # the non-PE files keep empty PE groups


def _record(i: int, **extra: Any) -> dict[str, Any]:
    """A raw record of a small non-PE file as EMBER2024 stores one (empty PE groups)."""
    rng = np.random.default_rng(i)
    histogram = rng.integers(0, 50, 256)
    return {
        "sha256": f"{i:064x}",
        "label": [0, 1][i % 2],
        "family": "fam" if i % 2 else "",
        "first_submission_date": 1_700_000_000 + i,
        "general": {"size": int(histogram.sum()), "entropy": 7.5, "is_pe": 0,
                    "start_bytes": [37, 80, 68, 70]},
        "histogram": histogram.tolist(),
        "byteentropy": rng.integers(0, 50, 256).tolist(),
        "strings": {"numstrings": 3, "avlength": 6.0 + i, "printabledist": [1] * 96,
                    "printables": 96, "entropy": 6.58, "string_counts": {"/URI": 1, "url": i}},
        "header": {}, "section": {}, "imports": {}, "exports": [], "datadirectories": [],
        "richheader": [], "authenticode": {}, "pefilewarnings": [],
        **extra,
    }  # fmt: skip


def _write_jsonl(path: Path, records: list[Any]) -> Path:
    path.write_text("".join(f"{json.dumps(r)}\n" for r in records))
    return path


def test_vectorize_raw_fills_the_byte_and_string_groups_of_a_non_pe_record() -> None:
    record = _record(3)
    vector = vectorize_raw(record)
    histogram = vector[GROUP_BY_NAME["histogram"].start : GROUP_BY_NAME["histogram"].stop]
    counts = np.asarray(record["histogram"], dtype=np.float32)
    assert np.array_equal(histogram, counts / counts.sum())
    assert vector[COLUMNS.index("general_start_byte_0")] == 37
    assert vector[COLUMNS.index("strings_url")] == 3 and vector[COLUMNS.index("strings_/URI")] == 1
    assert vector[COLUMNS.index("strings_printabledist_5")] == np.float32(1 / 96)
    assert not vector[GROUP_BY_NAME["header"].start :].any()


def test_known_warning_patterns_set_flags_and_unknown_ones_are_noted() -> None:
    notes: list[str] = []
    vector = vectorize_raw(_record(1, pefilewarnings=[PATTERNS[0], PATTERNS[5], "Odd..."]), notes)
    start = GROUP_BY_NAME["pefilewarnings"].start
    assert vector[start] == 1 and vector[start + 5] == 1
    assert vector[COLUMNS.index("pefilewarnings_num_warnings")] == 2
    assert notes == ["unknown pefile warning patterns not counted: Odd..."]


def test_authenticode_fields_map_to_their_columns_in_order() -> None:
    fields = {"num_certs": 2, "self_signed": 1, "empty_program_name": 0, "no_countersigner": 1,
              "parse_error": 0, "chain_max_depth": 3, "latest_signing_time": 1.7e9,
              "signing_time_diff": -12.5}  # fmt: skip
    vector = vectorize_raw(_record(0, authenticode=fields))
    group = GROUP_BY_NAME["authenticode"]
    got = dict(zip(group.columns, vector[group.start : group.stop].tolist(), strict=True))
    assert got == {f"authenticode_{k}": np.float32(v) for k, v in fields.items()}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"richheader": [7, "x"]}, "group 'richheader' is malformed"),
        ({"strings": {"numstrings": 1}}, "group 'strings' is malformed: missing key"),
        ({"histogram": [1, 2, 3]}, "holds 3 counts, not 256"),
    ],
)
def test_malformed_groups_name_the_group(change: dict[str, Any], message: str) -> None:
    with pytest.raises(RawFeatureError, match=message):
        vectorize_raw({**_record(0), **change})
    record = _record(0)
    del record["authenticode"], record["pefilewarnings"]
    with pytest.raises(RawFeatureError, match="missing feature groups: authenticode, pefile"):
        vectorize_raw(record)


def test_vectorize_jsonl_writes_a_stamped_dataset_in_batches(tmp_path: Path) -> None:
    records = [_record(i) for i in range(7)] + [_record(7, label=-1, family=None)]
    first = _write_jsonl(tmp_path / "a.jsonl", records[:5])
    second = _write_jsonl(tmp_path / "b.jsonl", records[5:])
    out = tmp_path / "out" / "data.parquet"
    summary = vectorize_jsonl([first, second], out, batch_rows=3)
    assert summary.rows == 8 and dict(summary.labels) == {0: 4, 1: 3, -1: 1}
    assert check_schema(out, SCHEMA)["columns"] == list(COLUMNS)
    assert pq.ParquetFile(out).metadata.num_row_groups == 3
    table = pq.read_table(out).to_pandas()
    assert list(table["label"]) == [0, 1, 0, 1, 0, 1, 0, -1]
    assert table["sha256"][2] == f"{2:064x}" and table["path"][6] == "b.jsonl:2"
    assert pq.read_table(out).column("family").to_pylist()[:2] == [None, "fam"]
    assert table["first_seen"][0] == "2023-11-14T22:13:20Z"
    assert table["size"][4] == records[4]["general"]["size"]
    values = table[list(COLUMNS)].to_numpy(dtype=np.float32)
    expected = np.vstack([vectorize_raw(r) for r in records])
    assert np.array_equal(values, expected)
    assert not list(tmp_path.glob("out/*.partial"))
    limited = vectorize_jsonl([first, second], tmp_path / "five.parquet", limit=5)
    assert limited.rows == 5


def test_data_vectorize_then_simulate_trains_on_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write_jsonl(tmp_path / "week1.jsonl", [_record(i) for i in range(12)])
    _write_jsonl(tmp_path / "week2.jsonl", [_record(i) for i in range(12, 24)])
    out = tmp_path / "ember.parquet"
    assert run_cli(["data", "vectorize", str(tmp_path), "-o", str(out), "-q"]) == 0
    printed = capsys.readouterr().out
    assert "Wrote 24 rows (12 malware, 12 benign, 0 unlabelled) from 2 file(s)" in printed
    args = ["simulate", "--dataset", str(out), "--clients", "2", "--rounds", "1"]
    args += ["--hidden", "8", "--batch-size", "8", "--no-outputs", "--json"]
    args += ["--set", "partition.min_client_size=4"]
    assert run_cli(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["dataset"]["features"] == WIDTH and summary["dataset"]["samples"] == 24


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([json.dumps(_record(0)), "{not json"], "line 2: not JSON lines"),
        ([json.dumps(_record(0)), "[1, 2]"], "line 2: a JSON list, not an object"),
        (
            [json.dumps({k: v for k, v in _record(0).items() if k != "richheader"})],
            "line 1: missing feature groups: richheader",
        ),
        ([json.dumps({**_record(0), "label": "evil"})], "line 1: label is 'evil'"),
        ([json.dumps({k: v for k, v in _record(0).items() if k != "label"})], "missing field"),
    ],
)
def test_bad_input_is_one_clear_error(
    lines: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.parquet"
    code = run_cli(["data", "vectorize", str(bad), "-o", str(out), "-q"])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "bad.jsonl" in err and "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob("*.partial"))
    with pytest.raises(DataError, match=message):
        vectorize_jsonl([bad], out)


def test_missing_inputs_are_one_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path / "out.parquet")
    assert run_cli(["data", "vectorize", str(tmp_path / "nope.jsonl"), "-o", out]) == 2
    assert "nope.jsonl' does not exist" in capsys.readouterr().err
    assert run_cli(["data", "vectorize", str(tmp_path), "-o", out]) == 2
    assert "holds no .jsonl files" in capsys.readouterr().err
