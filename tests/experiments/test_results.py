"""Reading suite directories: tidy frames with the right numbers, every run state, bad input."""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from fake_suite import make_suite

from fedmetamal.errors import ConfigError
from fedmetamal.experiments.atomic_write import write_atomic
from fedmetamal.experiments.naming import slugify, unique_slugs
from fedmetamal.experiments.results import load_results


def test_final_frame_has_one_row_per_run_with_known_numbers(tmp_path: Path) -> None:
    fake = make_suite(tmp_path / "s")
    res = load_results(tmp_path / "s")
    final = res.final
    assert len(final) == 2 * 3 * 3
    assert (final["status"] == "finished").all()
    for col in ("id", "status", "algorithm.name", "partition", "seed", "roc_auc", "accuracy",
                "loss", "heterogeneity_index", "alpha", "seconds"):  # fmt: skip
        assert col in final.columns, col
    merged = final.merge(fake.expected, on="id", suffixes=("", "_want"))
    assert len(merged) == len(fake.expected)
    for m in ("roc_auc", "accuracy", "loss"):
        np.testing.assert_allclose(merged[m], merged[f"{m}_want"], rtol=0, atol=0)
    assert list(merged["seed"]) == list(merged["seed_want"])
    assert set(final["method"]) == {"fedavg", "fedprox"}
    assert (final["seconds"] == 1.5).all()
    assert res.methods == ["fedavg", "fedprox"]
    assert res.settings == ["iid", "dirichlet α=0.1", "dirichlet α=1"]
    assert res.primary_metric == "roc_auc"


def test_alpha_comes_from_config_and_index_from_summary(tmp_path: Path) -> None:
    make_suite(tmp_path / "s")
    final = load_results(tmp_path / "s").final.set_index("partition")
    assert final.loc["iid", "alpha"].isna().all()
    assert (final.loc["dirichlet α=0.1", "alpha"] == 0.1).all()
    assert (final.loc["dirichlet α=1", "alpha"] == 1.0).all()
    assert final["heterogeneity_index"].between(0, 1).all()
    assert "het_label_emd" in final.columns


def test_heterogeneity_nested_report_is_read(tmp_path: Path) -> None:
    fake = make_suite(tmp_path / "s", methods=("fedavg",), seeds=(0,))
    run = fake.root / "runs" / fake.ids[("fedavg", "iid", 0)]
    summary = json.loads((run / "summary.json").read_text())
    summary["heterogeneity"] = {"federation": {"index": 0.42, "label_js": None}, "clients": []}
    (run / "summary.json").write_text(json.dumps(summary))
    final = load_results(fake.root).final.set_index("id")
    assert final.loc[run.name, "heterogeneity_index"] == 0.42
    assert math.isnan(final.loc[run.name, "het_label_js"])


def test_curves_have_one_row_per_evaluated_round(tmp_path: Path) -> None:
    fake = make_suite(tmp_path / "s", rounds=4)
    run = fake.root / "runs" / fake.ids[("fedavg", "iid", 0)]
    # a round without evaluation (evaluation.every > 1) is not a curve point
    with (run / "metrics.jsonl").open("a") as f:
        f.write(json.dumps({"round": 5, "clients": 4, "lr": 0.1, "train_loss": 0.2}) + "\n")
    res = load_results(fake.root)
    curves = res.curves
    assert len(curves) == 18 * 4
    assert list(curves.columns[:5]) == ["id", "method", "setting", "seed", "round"]
    one = curves[curves["id"] == run.name].sort_values("round")
    assert list(one["round"]) == [1, 2, 3, 4]
    want = fake.expected.set_index("id").loc[run.name, "roc_auc"]
    np.testing.assert_allclose(one["roc_auc"], [want * r / 4 for r in (1, 2, 3)] + [want])


def test_failed_pending_missing_and_running_runs_are_reported(tmp_path: Path) -> None:
    fake = make_suite(
        tmp_path / "s", fail=("fedprox/iid/1",), pending=("fedavg/iid/2", "fedavg/iid/1")
    )
    gone = fake.ids[("fedprox", "dirichlet α=1", 0)]
    shutil.rmtree(fake.root / "runs" / gone)  # deleted after the runner recorded it
    running = fake.ids[("fedavg", "iid", 1)]
    (fake.root / "runs" / f"{running}.partial").mkdir()
    res = load_results(fake.root)
    by_id = {r.id: r for r in res.runs}
    failed = by_id[fake.ids[("fedprox", "iid", 1)]]
    assert (failed.status, failed.error, failed.message) == ("failed", "ValueError", "boom 11")
    assert by_id[fake.ids[("fedavg", "iid", 2)]].status == "pending"
    assert by_id[fake.ids[("fedavg", "iid", 2)]].message == "not run yet"
    assert by_id[running].status == "pending"
    assert ".partial" in str(by_id[running].message)
    assert by_id[gone].status == "missing"
    assert "gone" in str(by_id[gone].message)
    counts = res.counts()
    assert counts == {"finished": 14, "failed": 1, "pending": 2, "missing": 1, "unreadable": 0}
    assert res.problems()[0].status == "failed"
    row = res.final.set_index("id").loc[failed.id]
    assert row["status"] == "failed" and np.isnan(row["roc_auc"])


def test_failure_known_only_from_status_line(tmp_path: Path) -> None:
    fake = make_suite(tmp_path / "s", methods=("fedavg",), seeds=(0,), fail=("fedavg/iid/0",))
    run_id = fake.ids[("fedavg", "iid", 0)]
    shutil.rmtree(fake.root / "runs" / f"{run_id}.failed")  # e.g. failed before simulate()
    rec = next(r for r in load_results(fake.root).runs if r.id == run_id)
    assert (rec.status, rec.error, rec.message) == ("failed", "ValueError", "boom 1")


def test_latest_of_several_failed_directories_wins(tmp_path: Path) -> None:
    fake = make_suite(tmp_path / "s", methods=("fedavg",), seeds=(0,), fail=("fedavg/iid/0",))
    run_id = fake.ids[("fedavg", "iid", 0)]
    second = fake.root / "runs" / f"{run_id}.failed-2"
    second.mkdir()
    (second / "error.json").write_text(json.dumps({"error": "KeyError", "message": "later"}))
    os.utime(second, (2e9, 2e9))
    rec = next(r for r in load_results(fake.root).runs if r.id == run_id)
    assert (rec.error, rec.message) == ("KeyError", "later")


def test_corrupt_metrics_line_makes_only_that_run_unreadable(tmp_path: Path) -> None:
    fake = make_suite(tmp_path / "s")
    bad = fake.root / "runs" / fake.ids[("fedavg", "iid", 0)]
    with (bad / "metrics.jsonl").open("a") as f:
        f.write('{"round": 4, "test_roc_a\n')
    broken_summary = fake.root / "runs" / fake.ids[("fedprox", "iid", 0)]
    (broken_summary / "summary.json").write_text("{not json")
    res = load_results(fake.root)
    by_id = {r.id: r for r in res.runs}
    assert by_id[bad.name].status == "unreadable"
    assert "metrics.jsonl line 4" in str(by_id[bad.name].message)
    assert by_id[broken_summary.name].status == "unreadable"
    assert "summary.json" in str(by_id[broken_summary.name].message)
    assert res.counts()["finished"] == 16
    assert bad.name not in set(res.curves["id"])
    assert np.isnan(res.final.set_index("id").loc[bad.name, "roc_auc"])


def test_runs_of_a_fresh_suite_are_all_pending(tmp_path: Path) -> None:
    fake = make_suite(tmp_path / "s", methods=("fedavg",))
    shutil.rmtree(fake.root / "runs")
    (fake.root / "status.jsonl").unlink()
    res = load_results(fake.root)
    assert res.counts()["pending"] == 9
    assert res.curves.empty


def test_missing_manifest_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a suite directory"):
        load_results(tmp_path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_results(tmp_path / "nowhere")


def test_other_manifest_format_names_the_versions(tmp_path: Path) -> None:
    fake = make_suite(tmp_path / "s", methods=("fedavg",), seeds=(0,))
    manifest = json.loads((fake.root / "manifest.json").read_text())
    manifest["format"] = "fedmetamal-suite/9"
    (fake.root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match=r"fedmetamal-suite/9.*fedmetamal-suite/1"):
        load_results(fake.root)
    (fake.root / "manifest.json").write_text(json.dumps({"name": "x"}))
    with pytest.raises(ConfigError, match="no 'format' field"):
        load_results(fake.root)
    (fake.root / "manifest.json").write_text("{")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_results(fake.root)


def test_slugs_are_file_safe_and_unique() -> None:
    assert slugify("dirichlet α=0.05") == "dirichlet-alpha-0.05"
    assert slugify("FedProx (μ=0.01)") == "fedprox-mu-0.01"
    assert slugify("../../etc") == "etc"
    assert unique_slugs(["a b", "a-b", "a_b"]) == {"a b": "a-b", "a-b": "a-b-2", "a_b": "a-b-3"}


def test_write_atomic_replaces_whole_file_and_leaves_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "out" / "t.csv"
    write_atomic(path, "old")
    write_atomic(path, b"new")
    assert path.read_text() == "new"
    assert [p.name for p in path.parent.iterdir()] == ["t.csv"]


def test_interrupted_and_incomplete_runs_are_pending(tmp_path: Path) -> None:
    fake = make_suite(tmp_path / "s", methods=("fedavg",), seeds=(0, 1), fail=("fedavg/iid/0",))
    stopped = fake.ids[("fedavg", "iid", 0)]
    info = {"status": "failed", "error": "KeyboardInterrupt", "message": ""}
    (fake.root / "runs" / f"{stopped}.failed" / "error.json").write_text(json.dumps(info))
    torn = fake.root / "runs" / fake.ids[("fedavg", "iid", 1)]
    (torn / "summary.json").unlink()
    by_id = {r.id: r for r in load_results(fake.root).runs}
    assert by_id[stopped].status == "pending" and by_id[stopped].error is None
    assert "interrupted" in str(by_id[stopped].message)
    assert by_id[torn.name].status == "pending"
    assert "no summary.json" in str(by_id[torn.name].message)
