"""The validation study on tiny data: outputs, correlations from the CSV, resume, skips."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from scipy import stats

from fedmetamal.config import RunConfig, build_config
from fedmetamal.data.heterogeneity import FEDERATION_MEASURES
from fedmetamal.experiments.noniid_study_plan import (
    StudyEntry,
    federation_id,
    partition_label,
    partition_slug,
    study_entries,
)
from fedmetamal.experiments.noniid_validation import (
    StudyEvent,
    ValidationResult,
    entry_config,
    run_validation,
)

TINY = {
    "dataset": {"synthetic": {"n_samples": 1500, "n_features": 24}},
    "partition": {"clients": 4},
    "model": {"hidden": [16]},
    "training": {"rounds": 2},
    "output": {"onnx": False, "checkpoint": False},
}
#: An entry that cannot be built: 4 clients of >= 1000 samples from 1200 training samples.
IMPOSSIBLE = StudyEntry({"kind": "dirichlet", "alpha": 1.0, "min_client_size": 1000})


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> tuple[ValidationResult, list[StudyEvent]]:
    out = tmp_path_factory.mktemp("study")
    events: list[StudyEvent] = []
    entries = [*study_entries("quick", has_family=True), IMPOSSIBLE]
    result = run_validation(
        build_config(TINY), entries, out, iid_seeds=2, on_progress=events.append
    )
    return result, events


def test_full_preset_spans_the_kinds() -> None:
    full = study_entries("full", has_family=True)
    assert len(full) >= 40
    kinds = {e.partition["kind"] for e in full}
    assert kinds >= {"dirichlet", "label-quantity", "quantity", "feature-noise", "family-dirichlet"}
    assert any(e.partition.get("feature_skew") == "noise" for e in full)
    without = study_entries("full", has_family=False)
    assert len(without) >= 40 and not any(e.needs_family for e in without)
    assert 6 <= len(study_entries("quick", has_family=True)) <= 10


def test_names_and_ids_are_stable() -> None:
    base = build_config(TINY)
    cfg = entry_config(base, StudyEntry({"kind": "dirichlet", "alpha": 0.3}, seed=1))
    assert partition_slug(cfg.partition, cfg.seed) == "dirichlet-a0.3-c4-s1"
    assert partition_label(cfg.partition) == "dirichlet α=0.3"
    assert cfg.algorithm.name == "fedavg" and cfg.training == base.training
    mix = entry_config(
        base, StudyEntry({"kind": "dirichlet", "alpha": 0.1, "feature_skew": "noise", "noise": 1})
    )
    assert partition_slug(mix.partition, 0) == "dirichlet-a0.1-noise1-c4-s0"
    a = federation_id(cfg.partition, 1, "h")
    assert a == federation_id(cfg.partition, 1, "h") != federation_id(cfg.partition, 1, "h2")


def test_base_algorithm_and_kind_settings_do_not_leak() -> None:
    base = build_config({**TINY, "partition": {"clients": 4, "kind": "dirichlet", "alpha": 9.0}})
    base = RunConfig.model_validate({**base.model_dump(), "algorithm": {"name": "fedprox"}})
    cfg = entry_config(base, StudyEntry({"kind": "quantity", "quantity": "dirichlet"}))
    assert cfg.algorithm.name == "fedavg"
    assert cfg.partition.alpha == 0.5 and cfg.partition.clients == 4


def test_outputs_match_the_trained_federations(
    study: tuple[ValidationResult, list[StudyEvent]],
) -> None:
    result, events = study
    out = result.out_dir
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    finished = [r for r in records if r["role"] == "federation" and r["status"] == "finished"]
    frame = pd.read_csv(out / "federations.csv")
    assert len(frame) == len(finished) == len(result.federations) >= 5
    assert set(frame["id"]) == {r["id"] for r in finished}
    assert list(frame.columns[:3]) == ["id", "kind", "description"]
    assert set(FEDERATION_MEASURES) <= set(frame.columns)

    # Drops are measured from the IID baseline's mean.
    summary = json.loads((out / "summary.json").read_text())
    base = summary["baseline"]
    assert len(base["roc_auc_values"]) == 2
    assert base["roc_auc_mean"] == pytest.approx(sum(base["roc_auc_values"]) / 2)
    expected = (base["roc_auc_mean"] - frame["roc_auc"]).to_numpy()
    assert frame["auc_drop"].to_numpy() == pytest.approx(expected)

    # Correlations come from exactly the CSV's numbers.
    corr = pd.read_csv(out / "correlations.csv").set_index("measure")
    rho, p = stats.spearmanr(frame["index"], frame["auc_drop"])
    assert corr.loc["index", "spearman_auc"] == pytest.approx(rho)
    assert corr.loc["index", "spearman_auc_p"] == pytest.approx(p)
    tau, _ = stats.kendalltau(frame["label_emd"], frame["accuracy_drop"])
    assert corr.loc["label_emd", "kendall_accuracy"] == pytest.approx(tau)
    assert (corr["n"] == len(frame)).all()

    assert summary["n_federations"] == len(frame)
    target = summary["target"]
    assert target["spearman_auc"] == pytest.approx(rho)
    assert target["reached"] == (rho >= 0.8)
    assert target["beats_rival"] == (rho > corr.loc["label_emd", "spearman_auc"])
    assert summary["verdict"].startswith("index Spearman")
    assert "| index |" in (out / "correlations.md").read_text()

    for m in FEDERATION_MEASURES:
        assert (out / f"scatter_{m}.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "scatter_panel.png").is_file() and (out / "scatter_panel.pdf").is_file()
    assert sum(e.status == "trained" for e in events) == result.trained == len(finished) + 2


def test_impossible_partition_is_skipped_with_its_reason(
    study: tuple[ValidationResult, list[StudyEvent]],
) -> None:
    result, events = study
    skipped = [s for s in result.skipped if "min_client_size=1000" in s["reason"]]
    assert len(skipped) == 1 and skipped[0]["status"] == "skipped"
    assert any(e.status == "skipped" for e in events)
    summary = json.loads((result.out_dir / "summary.json").read_text())
    assert summary["n_skipped"] == len(result.skipped) >= 1


def test_rerun_resumes_without_training(
    study: tuple[ValidationResult, list[StudyEvent]],
) -> None:
    first, _ = study
    lines = (first.out_dir / "results.jsonl").read_text()
    events: list[StudyEvent] = []
    entries = [*study_entries("quick", has_family=True), IMPOSSIBLE]
    again = run_validation(
        build_config(TINY),
        entries,
        first.out_dir,
        iid_seeds=2,
        on_progress=events.append,
        figures=False,
    )
    assert again.trained == 0 and not any(e.status in ("start", "trained") for e in events)
    assert (first.out_dir / "results.jsonl").read_text() == lines
    assert again.reused == len(first.records)
    pd.testing.assert_frame_equal(again.federations, first.federations)


def test_torn_last_line_is_ignored(
    study: tuple[ValidationResult, list[StudyEvent]], tmp_path: Path
) -> None:
    from fedmetamal.experiments.noniid_validation import read_results

    first, _ = study
    path = tmp_path / "results.jsonl"
    path.write_text((first.out_dir / "results.jsonl").read_text() + '{"id": "torn', "utf-8")
    assert len(read_results(path)) == len(first.records)
    assert set(read_results(path)) == {r["id"] for r in first.records}


def test_parallel_jobs_match_the_serial_study(
    study: tuple[ValidationResult, list[StudyEvent]], tmp_path: Path
) -> None:
    first, _ = study
    entries = study_entries("quick", has_family=True)[:1]
    result = run_validation(
        build_config(TINY), entries, tmp_path, iid_seeds=1, jobs=2, figures=False
    )
    assert result.trained == 2 and len(result.federations) == 1
    serial = first.federations.set_index("id")
    for row in result.federations.to_dict("records"):
        assert row["roc_auc"] == pytest.approx(serial.loc[row["id"], "roc_auc"], abs=1e-3)
        assert row["index"] == pytest.approx(serial.loc[row["id"], "index"])
