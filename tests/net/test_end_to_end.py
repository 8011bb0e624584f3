"""Server and three participant processes over gRPC give the simulation's global model."""

from __future__ import annotations

import json

import onnx
import pytest
from tests.net.federation_processes import ProcessFederation
from tests.net.harness import federation_files, small_config

from fedmetamal.api import build_federation, simulate
from fedmetamal.data.heterogeneity import measure_federation

pytestmark = pytest.mark.slow


def test_fedavg_over_grpc_matches_the_simulation(tmp_path, processes) -> None:
    cfg = small_config(**{"training.rounds": 3})
    files = federation_files(cfg, tmp_path / "data")
    fed = ProcessFederation(tmp_path, processes)
    fed.start_server()
    names = [f"participant-{i}" for i in range(1, 4)]
    for name, (train, test) in zip(names, files, strict=True):
        fed.start_participant(name, train, test)
    ids = fed.participant_ids(names)
    run_id = fed.run(cfg, ids)
    assert fed.wait_finished(run_id) == "completed", fed.logs()

    expected = simulate(cfg, write_outputs=False, federation=build_federation(cfg)).params
    got = fed.final_params(run_id, 3)
    assert float((got - expected).abs().max()) < 1e-5

    with fed.control() as c:
        rounds = c.list_rounds(run_id)
        assert [r.round for r in rounds] == [1, 2, 3]
        assert all(sorted(r.reported) == sorted(ids) for r in rounds)
        assert 0.5 < rounds[-1].metrics["roc_auc"] <= 1.0  # federated evaluation ran
        # each participant's own metrics: training loss, and its local test split's AUC
        assert set(rounds[-1].client_metrics) == set(ids)
        for values in (m.values for m in rounds[-1].client_metrics.values()):
            assert values["train_loss"] > 0 and 0.0 <= values["test_roc_auc"] <= 1.0
        events = [e.kind for e in c.watch(run_id)]
        assert events.count("round_finished") == 3 and events[-1] == "run_state"
        models = c.list_models(run_id)
        assert [m.round for m in models] == [1, 2, 3]
        header, data = c.export_model(models[-1].model_id, "onnx")
        report = json.loads(c.run_action("Get", run_id).heterogeneity_json)
    # the non-IID measures from what the participants shared equal the simulation's
    sim_report = measure_federation(build_federation(cfg)).to_dict()
    assert report["federation"] == pytest.approx(sim_report["federation"], rel=1e-9, nan_ok=True)
    assert [row["size"] for row in report["clients"]] == [
        row["size"] for row in sim_report["clients"]
    ]
    model = onnx.load_from_string(data)
    assert header.filename.endswith(".onnx") and model.graph.input[0].name == "features"
