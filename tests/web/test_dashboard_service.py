"""DashboardService: the New-run form's schema and checks, templates, model reports."""

from __future__ import annotations

import importlib.util
import json

import pytest

from fedmetamal.config import RunConfig
from fedmetamal.fl.registry import ALGORITHMS
from fedmetamal.v1 import dashboard_pb2 as pb

from .conftest import VIEWER, Web


def test_config_schema_describes_the_run_configuration(web: Web) -> None:
    viewer = web.login(*VIEWER)
    schema = viewer.call(
        "DashboardService", "GetConfigSchema", pb.GetConfigSchemaRequest(), pb.ConfigSchema
    )
    assert isinstance(schema, pb.ConfigSchema)
    js = json.loads(schema.json_schema)
    assert {"dataset", "training", "algorithm", "network"} <= set(js["properties"])
    defaults = RunConfig.model_validate_json(schema.defaults_json)
    assert defaults == RunConfig()
    algos = {a.name: a for a in schema.algorithms}
    assert set(algos) == set(ALGORITHMS)
    prox = json.loads(algos["fedprox"].params_schema_json)
    assert "mu" in prox["properties"]
    assert algos["fedprox"].summary and algos["fedprox"].reference
    assert list(schema.datasets)[:2] == ["synthetic", "pe-headers"]


def _validate(web: Web, config: object, simulated: bool) -> pb.ValidateConfigReply:
    b = web.login(*VIEWER)
    text = config if isinstance(config, str) else json.dumps(config)
    reply = b.call(
        "DashboardService",
        "ValidateConfig",
        pb.ValidateConfigRequest(config_json=text, simulated=simulated),
        pb.ValidateConfigReply,
    )
    assert isinstance(reply, pb.ValidateConfigReply)
    return reply


def test_validate_config_reports_field_paths(web: Web) -> None:
    ok = _validate(web, {"training": {"rounds": 7}}, simulated=True)
    assert ok.valid and not ok.errors
    assert json.loads(ok.normalized_json)["training"]["rounds"] == 7
    assert json.loads(ok.normalized_json)["algorithm"]["name"] == "fedavg"

    bad = _validate(
        web,
        {"training": {"rounds": 0, "client_lr": "fast"}, "typo": 1},
        simulated=True,
    )
    assert not bad.valid and not bad.normalized_json
    paths = {e.path: e.message for e in bad.errors}
    assert {"training.rounds", "training.client_lr", "typo"} <= set(paths)
    assert "unknown field" in paths["typo"]

    algo = _validate(web, {"algorithm": {"name": "fedprox", "params": {"mu": -1}}}, True)
    assert not algo.valid and algo.errors[0].path == "algorithm"
    assert "mu" in algo.errors[0].message

    broken = _validate(web, '{"training": ', simulated=True)
    assert not broken.valid and "JSON" in broken.errors[0].message


def test_network_runs_are_checked_for_what_the_runtime_supports(web: Web) -> None:
    cfg = {"attack": {"kind": "sign-flip"}}
    assert _validate(web, cfg, simulated=True).valid
    net = _validate(web, cfg, simulated=False)
    assert not net.valid
    assert "attack.kind" in net.errors[0].message


def test_templates_are_saved_by_admins_and_listed_for_everyone(web: Web) -> None:
    admin = web.login()
    cfg = json.dumps({"training": {"rounds": 4}})
    tpl = admin.call(
        "DashboardService",
        "SaveTemplate",
        pb.SaveTemplateRequest(name="four rounds", config_json=cfg),
        pb.Template,
    )
    assert isinstance(tpl, pb.Template)
    assert (tpl.name, tpl.created_by, tpl.config_json) == ("four rounds", "admin", cfg)
    bad = admin.call(
        "DashboardService",
        "SaveTemplate",
        pb.SaveTemplateRequest(name="bad", config_json='{"training": {"rounds": 0}}'),
        pb.Template,
    )
    assert bad.error["code"] == "invalid_argument" and "training.rounds" in bad.error["message"]
    unnamed = admin.code(
        "DashboardService",
        "SaveTemplate",
        pb.SaveTemplateRequest(name="  ", config_json=cfg),
        pb.Template,
    )
    assert unnamed == "invalid_argument"
    viewer = web.login(*VIEWER)
    listed = viewer.call(
        "DashboardService", "ListTemplates", pb.ListTemplatesRequest(), pb.ListTemplatesReply
    )
    assert [t.name for t in listed.templates] == ["four rounds"]
    denied = viewer.code(
        "DashboardService",
        "SaveTemplate",
        pb.SaveTemplateRequest(name="mine", config_json=cfg),
        pb.Template,
    )
    assert denied == "permission_denied"
    # saving again under the same name replaces it
    cfg5 = json.dumps({"training": {"rounds": 5}})
    admin.call(
        "DashboardService",
        "SaveTemplate",
        pb.SaveTemplateRequest(name="four rounds", config_json=cfg5),
        pb.Template,
    )
    listed = viewer.call(
        "DashboardService", "ListTemplates", pb.ListTemplatesRequest(), pb.ListTemplatesReply
    )
    assert [t.config_json for t in listed.templates] == [cfg5]


def test_model_report_checks_its_arguments(web: Web) -> None:
    viewer = web.login(*VIEWER)
    code = viewer.code(
        "DashboardService",
        "GetModelReport",
        pb.ModelReportRequest(model_id="x", target_fpr=1.5),
        pb.ModelReport,
    )
    assert code == "invalid_argument"
    if importlib.util.find_spec("fedmetamal.service.model_report") is None:
        pytest.skip("fedmetamal.service.model_report is not written yet")
    code = viewer.code(
        "DashboardService",
        "GetModelReport",
        pb.ModelReportRequest(model_id="no-such-model", target_fpr=0.01),
        pb.ModelReport,
    )
    assert code == "not_found"
