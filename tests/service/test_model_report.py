"""The model report: ROC curve, threshold and confusion matrix from the evaluation histograms
each engine stores in its checkpoints (simulated runs: the global test set; network runs: the
server's test set, else the participants' pooled local test splits)."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from tests.net.harness import (
    ServerThread,
    federation_files,
    participant_ids,
    small_config,
    start_participants,
    wait_until,
)

from fedmetamal.api import build_federation
from fedmetamal.config import RunConfig
from fedmetamal.errors import ConfigError
from fedmetamal.fl.histogram_metrics import BINS, histogram_metrics
from fedmetamal.models.checkpoint import load_checkpoint
from fedmetamal.service.model_report import MAX_ROC_POINTS, model_report, roc_points
from fedmetamal.service.store import NotFound
from fedmetamal.v1 import dashboard_pb2


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerThread]:
    srv = ServerThread(tmp_path / "server")
    try:
        yield srv
    finally:
        srv.stop()


def _simulated_run(srv: ServerThread, cfg: RunConfig) -> str:
    run_id = srv.run_sync(
        lambda: srv.core.create_run("sim", cfg.model_dump_json(), [], True, simulated=3).run_id
    )

    def done() -> bool:
        return srv.core.store.get_run(run_id).state in ("completed", "failed", "stopped")

    wait_until(done, 120, "the simulated run", every=0.05)
    assert srv.core.store.get_run(run_id).state == "completed"
    return run_id


def _report(srv: ServerThread, model_id: str, target_fpr: float) -> dashboard_pb2.ModelReport:
    return srv.run_sync(lambda: model_report(srv.core, model_id, target_fpr))


def _auc(report: dashboard_pb2.ModelReport) -> float:
    fpr = np.array([p.fpr for p in report.roc])
    tpr = np.array([p.tpr for p in report.roc])
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def _check_curve_and_matrix(report: dashboard_pb2.ModelReport, n: int, roc_auc: float) -> None:
    pts = [(p.fpr, p.tpr, p.threshold) for p in report.roc]
    assert 2 <= len(pts) <= MAX_ROC_POINTS
    assert pts[0] == (0.0, 0.0, 1.0) and pts[-1][:2] == (1.0, 1.0)
    assert all(a[0] <= b[0] and a[1] <= b[1] and a[2] > b[2] for a, b in itertools.pairwise(pts))
    assert _auc(report) == pytest.approx(roc_auc, abs=0.01)
    c = report.confusion
    assert c.true_positives + c.false_positives + c.true_negatives + c.false_negatives == n


def test_report_of_a_simulated_model(server: ServerThread) -> None:
    run_id = _simulated_run(server, small_config())
    rec = server.core.store.list_models(run_id)[-1]
    ckpt = load_checkpoint(server.core.data_dir / rec.path)
    n = int(rec.metrics["n"])
    stored = _report(server, rec.model_id, 0.0)
    assert stored.model_id == rec.model_id and stored.run_id == run_id and stored.round == 3
    assert stored.num_params == ckpt.network.num_params == rec.num_params
    assert stored.n_features == 64
    assert json.loads(stored.architecture_json)["hidden"] == [32]
    assert stored.metrics["roc_auc"] == pytest.approx(rec.metrics["roc_auc"])
    assert (
        stored.evaluated_on
        == f"global test set ({n} files: {int(n * rec.metrics['malware_share'] + 0.5)} malware)"
    )
    _check_curve_and_matrix(stored, n, rec.metrics["roc_auc"])
    assert stored.threshold == pytest.approx(ckpt.metadata["threshold"]["value"])

    benign = ckpt.extra_tensors["eval.hist_benign"].numpy()
    for target in (0.05, 0.2, 0.5):
        r = _report(server, rec.model_id, target)
        c = r.confusion
        fpr = c.false_positives / (c.false_positives + c.true_negatives)
        assert fpr <= target
        # the lowest such edge: one bin lower flags more than the target
        cut = round(r.threshold * BINS)
        assert cut == 0 or benign[cut - 1 :].sum() / benign.sum() > target
        assert c.true_positives == int(ckpt.extra_tensors["eval.hist_malware"][cut:].sum())
        _check_curve_and_matrix(r, n, rec.metrics["roc_auc"])
    loose, strict = _report(server, rec.model_id, 0.5), _report(server, rec.model_id, 0.05)
    assert loose.threshold < strict.threshold


def test_a_round_without_evaluation_has_no_curve(server: ServerThread) -> None:
    run_id = _simulated_run(server, small_config(**{"evaluation.every": 2}))
    models = server.core.store.list_models(run_id)
    first = _report(server, models[0].model_id, 0.01)
    assert list(first.roc) == [] and "not evaluated" in first.evaluated_on
    assert first.threshold == pytest.approx(
        load_checkpoint(server.core.data_dir / models[0].path).metadata["threshold"]["value"]
    )
    assert len(_report(server, models[1].model_id, 0.01).roc) > 2  # round 2 was evaluated


def test_unknown_models_and_bad_rates_are_refused(server: ServerThread) -> None:
    with pytest.raises(NotFound, match="No model"):
        _report(server, "run-nope-r00001", 0.01)
    run_id = _simulated_run(server, small_config(**{"training.rounds": 1}))
    model_id = server.core.store.list_models(run_id)[0].model_id
    for bad in (-0.1, 1.0, float("nan")):
        with pytest.raises(ConfigError, match="target_fpr"):
            _report(server, model_id, bad)
    (server.core.data_dir / server.core.store.get_model(model_id).path).unlink()
    with pytest.raises(NotFound, match="missing"):
        _report(server, model_id, 0.01)


def test_roc_points_are_thinned_along_the_curve() -> None:
    rng = np.random.default_rng(0)
    scores_b = rng.beta(2, 5, 40_000)
    scores_m = rng.beta(5, 2, 40_000)
    b = np.bincount((scores_b * BINS).astype(int), minlength=BINS)
    m = np.bincount((scores_m * BINS).astype(int), minlength=BINS)
    pts = roc_points(b, m)
    assert len(pts) <= MAX_ROC_POINTS
    fpr, tpr = np.array([p[0] for p in pts]), np.array([p[1] for p in pts])
    auc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
    assert auc == pytest.approx(histogram_metrics(b, m, 0.0)["roc_auc"], abs=1e-4)
    assert max(np.diff(fpr + tpr)) < 0.02  # no stretch of the curve left without points
    full = roc_points(b, m, max_points=BINS + 1)
    assert len(full) == 1 + int(((b + m) > 0).sum())


# -- network runs ----------------------------------------------------------------------------
def _network_run(tmp_path: Path, cfg: RunConfig, server_test: bool) -> tuple[ServerThread, str]:
    """A network run with in-process participants; the server is left running."""
    files = federation_files(cfg, tmp_path / "data")
    server = ServerThread(tmp_path / "server")
    if server_test:
        test = build_federation(cfg).test
        server.run_sync(lambda: setattr(server.core, "test_data", test))
    tokens = [server.token() for _ in files]

    async def run() -> str:
        stop = asyncio.Event()
        tasks = start_participants(server, files, tmp_path, stop, tokens)
        ids = await participant_ids(server, len(files))
        with server.control() as c:
            run = c.create_run("net", cfg.model_dump_json(), sorted(ids), start=True)
            await asyncio.to_thread(lambda: list(c.watch(run.run_id)))
        stop.set()
        await asyncio.gather(*tasks)
        return run.run_id

    try:
        run_id = asyncio.run(run())
    except BaseException:
        server.stop()
        raise
    return server, run_id


@pytest.mark.parametrize("server_test", [False, True], ids=["local-splits", "server-test-set"])
def test_report_of_a_network_model(tmp_path: Path, server_test: bool) -> None:
    cfg = small_config(**{"training.rounds": 2})
    server, run_id = _network_run(tmp_path, cfg, server_test)
    try:
        assert server.core.store.get_run(run_id).state == "completed"
        rec = server.core.store.list_models(run_id)[-1]
        report = _report(server, rec.model_id, 0.1)
        if server_test:
            n = build_federation(cfg).test.n_samples
            assert report.evaluated_on.startswith(f"server test set ({n} files")
        else:
            n = sum(c.test.n_samples for c in build_federation(cfg).clients)
            assert report.evaluated_on.startswith(f"participants' local test splits ({n} files")
        _check_curve_and_matrix(report, n, rec.metrics["roc_auc"])
        c = report.confusion
        assert c.false_positives / (c.false_positives + c.true_negatives) <= 0.1
    finally:
        server.stop()
