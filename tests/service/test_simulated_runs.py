"""Simulated runs inside the server: the simulation runtime behind the same records, events,
controls and restart behaviour as a network run, and the very model ``simulate`` trains."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from tests.net.harness import ServerThread, small_config, wait_until

from fedmetamal.api import simulate
from fedmetamal.config import RunConfig
from fedmetamal.errors import ConfigError
from fedmetamal.fl.histogram_metrics import BINS
from fedmetamal.models.checkpoint import load_checkpoint
from fedmetamal.service.records import RunRecord
from fedmetamal.service.simulated_runs import SimulatedRunEngine

FINAL = ("completed", "failed", "stopped")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerThread]:
    srv = ServerThread(tmp_path / "server")
    try:
        yield srv
    finally:
        srv.stop()


def _wait_state(srv: ServerThread, run_id: str, states: tuple[str, ...]) -> RunRecord:
    def look() -> RunRecord | None:
        run = srv.core.store.get_run(run_id)
        return run if run.state in states else None

    return wait_until(look, 120, f"run {run_id} to be {' or '.join(states)}", every=0.05)


def _final_params(srv: ServerThread, run_id: str) -> torch.Tensor:
    run = srv.core.store.get_run(run_id)
    assert run.checkpoint_path
    return load_checkpoint(srv.core.data_dir / run.checkpoint_path).params


def _create(srv: ServerThread, cfg: RunConfig, clients: int = 3, pause: bool = False) -> str:
    """Create and start a simulated run on the server's loop (paused before its first round
    when ``pause``: the request is in before the engine's task first runs)."""

    def make() -> str:
        rec = srv.core.create_run("sim", cfg.model_dump_json(), [], True, simulated=clients)
        if pause:
            srv.core.pause_run(rec.run_id)
        return rec.run_id

    return srv.run_sync(make)


def test_a_simulated_run_records_what_a_network_run_records(server: ServerThread) -> None:
    cfg = small_config(**{"partition.clients": 5})  # the request's count wins over this
    expected = simulate(small_config(), write_outputs=False)
    with server.control() as c:
        run = c.create_run("sim", cfg.model_dump_json(), [], start=True, simulated_participants=3)
        assert run.mode == "simulated" and run.state == "running"
        events = list(c.watch(run.run_id))
        got = c.run_action("Get", run.run_id)
        rounds = c.list_rounds(run.run_id)
        models = c.list_models(run.run_id)
    assert got.state == "completed", got.error
    assert got.mode == "simulated" and json.loads(got.config_json)["partition"]["clients"] == 3
    assert float((_final_params(server, run.run_id) - expected.params).abs().max()) <= 1e-6

    assert [r.round for r in rounds] == [1, 2, 3]
    assert all(list(r.sampled) == ["client-0", "client-1", "client-2"] for r in rounds)
    assert all(list(r.reported) == list(r.sampled) for r in rounds)
    for r, rec in zip(rounds, expected.history, strict=True):
        assert r.metrics["roc_auc"] == pytest.approx(rec.metrics["roc_auc"], abs=1e-9)
        assert r.metrics["train_loss"] == pytest.approx(rec.train_loss, abs=1e-9)
    stored = server.core.store.list_rounds(run.run_id)
    assert sorted(stored[-1].client_metrics) == ["client-0", "client-1", "client-2"]
    assert "test_roc_auc" in stored[-1].client_metrics["client-1"]
    assert [m.model_id for m in models] == [r.model_id for r in rounds]
    assert got.latest_metrics["roc_auc"] == pytest.approx(expected.final_metrics["roc_auc"])

    kinds = [e.kind for e in events]
    assert kinds.count("round_started") == 3 and kinds.count("round_finished") == 3
    assert kinds.count("heterogeneity") == 1 and kinds[-1] == "run_state"
    finished = [e for e in events if e.kind == "round_finished"]
    assert finished[-1].metrics["roc_auc"] == pytest.approx(expected.final_metrics["roc_auc"])
    report = json.loads(
        (server.core.data_dir / "runs" / run.run_id / "heterogeneity.json").read_text()
    )
    assert report["federation"] == pytest.approx(expected.heterogeneity["federation"], nan_ok=True)
    assert report["participants"] == ["client-0", "client-1", "client-2"]

    ckpt = load_checkpoint(
        server.core.data_dir / server.core.store.get_run(run.run_id).checkpoint_path
    )
    hb, hm = ckpt.extra_tensors["eval.hist_benign"], ckpt.extra_tensors["eval.hist_malware"]
    assert hb.dtype == torch.int64 and hb.shape == (BINS,) and hm.shape == (BINS,)
    assert int(hb.sum() + hm.sum()) == expected.final_metrics["n"]
    meta = ckpt.metadata
    assert meta["round"] == 3 and meta["mode"] == "simulated"
    assert 0.0 <= meta["threshold"]["value"] <= 1.0 and meta["threshold"]["benign"] > 0
    assert meta["evaluation"]["source"] == "global test set"


def test_simulated_runs_take_simulation_options_but_no_participants(server: ServerThread) -> None:
    semi = small_config(**{"semi.scenario": "labels-at-clients", "semi.label_ratio": 0.5})
    rec = server.run_sync(
        lambda: server.core.create_run("semi", semi.model_dump_json(), [], False, 4)
    )
    assert rec.mode == "simulated" and rec.state == "created"
    assert server.core.store.get_run(rec.run_id).mode == "simulated"
    with pytest.raises(ConfigError, match="network runtime does not support"):
        server.run_sync(lambda: server.core.create_run("net", semi.model_dump_json(), []))
    with pytest.raises(ConfigError, match="takes no participants"):
        server.run_sync(
            lambda: server.core.create_run("x", small_config().model_dump_json(), ["p1"], False, 3)
        )
    with pytest.raises(ConfigError, match="krum"):  # too few clients a round for the rule
        bad = small_config(**{"aggregation.kind": "krum", "aggregation.byzantine": 1})
        server.run_sync(lambda: server.core.create_run("x", bad.model_dump_json(), [], False, 2))


def test_pause_resume_and_stop(server: ServerThread, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = small_config(**{"training.rounds": 4})
    original = SimulatedRunEngine._train_round

    def pausing(self: SimulatedRunEngine) -> Any:  # a pause request arriving during round 2
        out = original(self)
        if out.record.round == 2 and self.run_id == target["run"]:
            server.loop.call_soon_threadsafe(server.core.pause_run, self.run_id)
        return out

    target = {"run": ""}
    monkeypatch.setattr(SimulatedRunEngine, "_train_round", pausing)
    run_id = _create(server, cfg, pause=True)
    target["run"] = run_id
    assert _wait_state(server, run_id, ("paused",)).round == 0
    assert server.core.store.list_rounds(run_id) == []
    server.run_sync(lambda: server.core.resume_run(run_id))
    paused = _wait_state(server, run_id, ("paused", *FINAL))
    assert paused.state == "paused" and paused.round == 2
    assert [r.round for r in server.core.store.list_rounds(run_id)] == [1, 2]
    server.run_sync(lambda: server.core.resume_run(run_id))
    done = _wait_state(server, run_id, FINAL)
    assert done.state == "completed" and done.round == 4
    expected = simulate(cfg, write_outputs=False).params
    assert float((_final_params(server, run_id) - expected).abs().max()) <= 1e-6

    stopped_id = _create(server, cfg, pause=True)
    _wait_state(server, stopped_id, ("paused",))
    server.run_sync(lambda: server.core.stop_run(stopped_id))
    stopped = _wait_state(server, stopped_id, FINAL)
    assert stopped.state == "stopped" and stopped.round == 0
    assert server.core.store.list_models(stopped_id) == []
    states = [e.message for e in server.core.store.events_after(0, stopped_id, 100)]
    assert "stopped after round 0" in states


RESTART_CASES = {
    "scaffold": {"algorithm.name": "scaffold"},  # server and client control variates
    "dp-adaptive-clip": {  # the accountant's history and the adapted clip
        "privacy.mode": "participant",
        "privacy.noise_multiplier": 0.3,
        "privacy.clip": 1.0,
        "privacy.adaptive_clip": True,
        "privacy.clip_count_stddev": 0.5,
    },
}


@pytest.mark.parametrize("case", sorted(RESTART_CASES))
def test_a_restart_resumes_from_the_last_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    """The server stops while round 3 trains; the next server continues from round 2's
    checkpoint and ends with the model of an uninterrupted simulation."""
    cfg = small_config(**{"training.rounds": 4, **RESTART_CASES[case]})
    original = SimulatedRunEngine._train_round
    in_round_3, release, old_thread_done = threading.Event(), threading.Event(), threading.Event()

    def held(self: SimulatedRunEngine) -> Any:
        assert self.built is not None
        if self.built.sim.state.round == 2 and not in_round_3.is_set():
            in_round_3.set()
            release.wait(60)
            try:
                return original(self)
            finally:
                old_thread_done.set()
        return original(self)

    monkeypatch.setattr(SimulatedRunEngine, "_train_round", held)
    first = ServerThread(tmp_path / "server")
    try:
        run_id = _create(first, cfg)
        assert in_round_3.wait(60)
    finally:
        first.stop()
        release.set()
    assert old_thread_done.wait(60)  # the abandoned round finished, and recorded nothing
    second = ServerThread(tmp_path / "server")
    try:
        assert second.core.store.get_run(run_id).round == 2
        done = _wait_state(second, run_id, FINAL)
        assert done.state == "completed", done.error
        params = _final_params(second, run_id)
        rounds = second.core.store.list_rounds(run_id)
        events = second.core.store.events_after(0, run_id, 1000)
    finally:
        second.stop()
    expected = simulate(cfg, write_outputs=False)
    assert float((params - expected.params).abs().max()) <= 1e-6
    assert [r.round for r in rounds] == [1, 2, 3, 4]
    for r, rec in zip(rounds, expected.history, strict=True):
        assert r.metrics["train_loss"] == pytest.approx(rec.train_loss, abs=1e-9)
        if rec.epsilon is not None:
            assert r.metrics["epsilon"] == pytest.approx(rec.epsilon)
    messages = [e.message for e in events]
    assert "resumed from round 2 (runs/" + run_id + "/round-00002.safetensors)" in messages
    assert sum(e.kind == "heterogeneity" for e in events) == 1


def test_the_store_keeps_the_run_mode_and_upgrades_version_1_databases(tmp_path: Path) -> None:
    import sqlite3

    from fedmetamal.service.store import Store

    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    store = Store(url)
    base = RunRecord("r-net", "n", "created", "{}", [], 1.0, 1.0)
    store.add_run(base)
    store.add_run(RunRecord("r-sim", "s", "created", "{}", [], 2.0, 2.0, mode="simulated"))
    with pytest.raises(ValueError, match="run mode"):
        store.add_run(RunRecord("r-bad", "b", "created", "{}", [], 3.0, 3.0, mode="remote"))
    assert [(r.run_id, r.mode) for r in store.list_runs()] == [
        ("r-sim", "simulated"),
        ("r-net", "network"),
    ]
    assert store.get_run("r-sim").mode == "simulated"
    store.close()
    conn = sqlite3.connect(tmp_path / "db.sqlite")  # as version 1 left it
    try:
        with conn:
            conn.execute("ALTER TABLE runs DROP COLUMN mode")
            conn.execute("UPDATE settings SET value = '1' WHERE key = 'schema_version'")
    finally:
        conn.close()
    store = Store(url)
    try:
        assert store.get_setting("schema_version") == "2"
        assert {r.run_id: r.mode for r in store.list_runs()} == {
            "r-net": "network",
            "r-sim": "network",
        }
        store.add_run(RunRecord("r-new", "x", "created", "{}", [], 4.0, 4.0, mode="simulated"))
        assert store.get_run("r-new").mode == "simulated"
    finally:
        store.close()
