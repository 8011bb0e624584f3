"""Running suites for real (tiny trainings): outputs, resume, failures, parallel workers, CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from tiny_config import TINY
from typer.testing import CliRunner

from fedmetamal.cli_experiment import experiment_app
from fedmetamal.errors import ConfigError
from fedmetamal.experiments.run_pool import resolve_jobs
from fedmetamal.experiments.run_state import inspect_run
from fedmetamal.experiments.runner import run_suite, suite_status
from fedmetamal.experiments.suite import load_suite
from fedmetamal.experiments.suite_layout import SUITE_FORMAT


def write_suite(tmp_path: Path, grid: dict[str, Any], **spec: Any) -> Path:
    path = tmp_path / "suite.yaml"
    spec = {"name": "tiny", "config": TINY, "grid": grid, **spec}
    path.write_text(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


class Events:
    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def __call__(self, event: dict[str, Any]) -> None:
        self.items.append(event)

    def ids(self, kind: str) -> list[str]:
        return [e["id"] for e in self.items if e["event"] == kind]


def status_lines(suite_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (suite_dir / "status.jsonl").read_text().splitlines()]


def test_suite_runs_writes_its_directory_and_resumes(tmp_path: Path) -> None:
    path = write_suite(tmp_path, {"algorithm.name": ["fedavg", "fedprox"], "seed": [0, 1]})
    out = tmp_path / "out"
    events = Events()
    outcome = run_suite(path, out_dir=out, jobs=1, on_event=events)
    assert (outcome.finished, outcome.skipped, outcome.failed, outcome.total) == (4, 0, 0, 4)
    assert outcome.suite_dir == out.resolve()

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format"] == SUITE_FORMAT and manifest["name"] == "tiny"
    assert manifest["method_axis"] == "algorithm.name"
    assert [a["key"] for a in manifest["axes"]] == ["algorithm.name", "seed"]
    ids = [r["id"] for r in manifest["runs"]]
    assert len(ids) == 4 and manifest["runs"][0]["values"] == {
        "algorithm.name": "fedavg",
        "seed": 0,
    }
    assert (out / "suite.yaml").read_text() == path.read_text()
    assert sorted(events.ids("finish")) == sorted(ids) and events.items[0]["event"] == "plan"
    assert [line["status"] for line in status_lines(out)] == ["finished"] * 4
    for run_id in ids:
        summary = json.loads((out / "runs" / run_id / "summary.json").read_text())
        assert summary["status"] == "finished"
        config = yaml.safe_load((out / "runs" / run_id / "config.yaml").read_text())
        assert config["output"]["name"] == run_id
    assert sorted(p.name for p in (out / "runs").iterdir()) == sorted(ids)

    # nothing to do the second time
    again = Events()
    outcome = run_suite(path, out_dir=out, jobs=1, on_event=again)
    assert (outcome.finished, outcome.skipped) == (0, 4) and not again.ids("start")
    assert sorted(again.ids("skip")) == sorted(ids)

    # a deleted run and a killed run (.partial) are redone, and only they
    kept = out / "runs" / ids[3] / "summary.json"
    kept_mtime = kept.stat().st_mtime_ns
    shutil.rmtree(out / "runs" / ids[0])
    shutil.rmtree(out / "runs" / ids[1])
    (out / "runs" / f"{ids[1]}.partial").mkdir()
    (out / "runs" / f"{ids[1]}.partial" / "metrics.jsonl").write_text('{"round": 1')
    interrupted = out / "runs" / f"{ids[2]}.failed"
    shutil.move(out / "runs" / ids[2], interrupted)  # what Ctrl-C inside a run leaves
    (interrupted / "error.json").write_text(json.dumps({"error": "KeyboardInterrupt"}))
    resumed = Events()
    outcome = run_suite(path, out_dir=out, jobs=1, on_event=resumed)
    assert sorted(resumed.ids("start")) == sorted(ids[:3])
    assert (outcome.finished, outcome.skipped) == (3, 1)
    assert kept.stat().st_mtime_ns == kept_mtime
    assert sorted(p.name for p in (out / "runs").iterdir()) == sorted(ids)

    st = suite_status(out)
    assert st.counts()["finished"] == 4 and [e["id"] for e, _ in st.runs] == ids


def test_failed_runs_are_recorded_and_others_finish(tmp_path: Path) -> None:
    grid = {
        "partition.clients": [3, 500],  # 500 clients cannot be cut from 600 samples
        "training.client_lr": [0.1, 1.0e6],  # diverges
    }
    path = write_suite(tmp_path, grid)
    out = tmp_path / "out"
    events = Events()
    outcome = run_suite(path, out_dir=out, jobs=1, on_event=events)
    assert (outcome.finished, outcome.failed) == (1, 3)
    runs = load_suite(path).runs
    ok, diverged = runs[0].id, runs[1].id
    errors = {f["id"]: f["error"] for f in outcome.failures}
    assert errors[diverged] == "TrainingDivergedError"
    assert errors[runs[2].id] == errors[runs[3].id] == "PartitionError"
    for run in runs[1:]:
        state = inspect_run(out / "runs", run.id)
        assert state.status == "failed" and state.error == errors[run.id]
        assert (out / "runs" / f"{run.id}.failed" / "error.json").is_file()
    # a run that failed before its directory existed still leaves its config behind
    assert (out / "runs" / f"{runs[2].id}.failed" / "config.yaml").is_file()
    assert inspect_run(out / "runs", ok).status == "finished"
    lines = {line["id"]: line for line in status_lines(out)}
    assert lines[diverged]["status"] == "failed" and "diverged" in lines[diverged]["message"]

    # failed earlier: reported, not rerun ...
    again = Events()
    outcome = run_suite(path, out_dir=out, jobs=1, on_event=again)
    assert not again.ids("start") and (outcome.skipped, outcome.failed) == (1, 3)
    assert all(e["previous"] for e in again.items if e["event"] == "fail")
    # ... unless asked: the old .failed directory is replaced, not piled up
    retry = Events()
    outcome = run_suite(path, out_dir=out, jobs=1, retry_failed=True, on_event=retry)
    assert sorted(retry.ids("start")) == sorted(r.id for r in runs[1:])
    assert outcome.failed == 3 and not any(f["previous"] for f in outcome.failures)
    assert not list((out / "runs").glob("*.failed-*"))
    assert suite_status(out).counts()["failed"] == 3


def test_interrupt_stops_cleanly_and_resume_finishes(tmp_path: Path) -> None:
    path = write_suite(tmp_path, {"seed": [0, 1, 2]})
    out = tmp_path / "out"

    def stop_after_first(event: dict[str, Any]) -> None:
        if event["event"] == "finish":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_suite(path, out_dir=out, jobs=1, on_event=stop_after_first)
    assert [s.status for _, s in suite_status(out).runs].count("finished") == 1
    outcome = run_suite(path, out_dir=out, jobs=1)
    assert (outcome.finished, outcome.skipped) == (2, 1)


def test_edited_suite_keeps_finished_runs_and_a_busy_suite_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = run_suite(write_suite(tmp_path, {"seed": [0, 1]}), out_dir=out, jobs=1)
    assert first.finished == 2
    events = Events()
    grown = run_suite(write_suite(tmp_path, {"seed": [1, 2]}), out_dir=out, jobs=1, on_event=events)
    assert (grown.finished, grown.skipped, grown.total) == (1, 1, 2)
    manifest = json.loads((out / "manifest.json").read_text())
    assert [r["settings"]["seed"] for r in manifest["runs"]] == ["1", "2"]
    assert len(list((out / "runs").iterdir())) == 3  # seed 0's run is left alone

    fcntl = pytest.importorskip("fcntl")
    with (out / ".lock").open("a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(ConfigError, match="another process"):
            run_suite(write_suite(tmp_path, {"seed": [1, 2]}), out_dir=out, jobs=1)


def test_parallel_workers(tmp_path: Path) -> None:
    path = write_suite(tmp_path, {"algorithm.name": ["fedavg", "scaffold"]})
    pooled, inline = Events(), Events()
    outcome = run_suite(path, out_dir=tmp_path / "pool", jobs=2, on_event=pooled)
    assert (outcome.jobs, outcome.finished, outcome.failed) == (2, 2, 0)
    assert suite_status(tmp_path / "pool").counts()["finished"] == 2
    # workers change where runs execute, not what they compute
    run_suite(path, out_dir=tmp_path / "inline", jobs=1, on_event=inline)

    def auc(events: Events) -> dict[str, float]:
        return {e["id"]: e["metrics"]["roc_auc"] for e in events.items if e["event"] == "finish"}

    assert auc(pooled) == pytest.approx(auc(inline), abs=1e-4)


def test_resolve_jobs(tmp_path: Path) -> None:
    suite = load_suite(write_suite(tmp_path, {"seed": [0, 1, 2]}, parallel=2))
    assert resolve_jobs(None, suite, suite.runs) == 2
    assert resolve_jobs("1", suite, suite.runs) == 1
    assert resolve_jobs(8, suite, suite.runs) == 3  # never more than the pending runs
    assert 1 <= resolve_jobs("auto", suite, suite.runs) <= 3
    assert resolve_jobs("auto", suite, []) == 1
    with pytest.raises(ConfigError, match="number or 'auto'"):
        resolve_jobs("many", suite, suite.runs)
    with pytest.raises(ConfigError, match="at least 1"):
        resolve_jobs(0, suite, suite.runs)


def _cli() -> typer.Typer:
    app = typer.Typer()
    app.add_typer(experiment_app, name="experiment")

    @app.callback()
    def _root() -> None:
        pass

    return app


def test_cli_dry_run_run_status_and_report(tmp_path: Path) -> None:
    path = write_suite(tmp_path, {"algorithm.name": ["fedavg", "fedprox"]})
    out = tmp_path / "out"
    runner = CliRunner()
    app = _cli()
    dry = runner.invoke(app, ["experiment", "run", str(path), "--out", str(out), "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "fedprox" in dry.output and "pending" in dry.output and "dry run" in dry.output
    assert not out.exists()

    res = runner.invoke(app, ["experiment", "run", str(path), "--out", str(out), "-j", "1"])
    assert res.exit_code == 0, res.output
    assert "2 finished" in res.output and (out / "report.html").is_file()

    st = runner.invoke(app, ["experiment", "status", str(out)], env={"COLUMNS": "200"})
    assert st.exit_code == 0 and st.output.count("finished") >= 2

    rep = runner.invoke(app, ["experiment", "report", str(out), "--help"])
    assert rep.exit_code == 0
    bad = runner.invoke(app, ["experiment", "report", str(tmp_path)])
    assert isinstance(bad.exception, ConfigError) and "not a suite directory" in str(bad.exception)
