"""Suite files: grid expansion, labels, run ids, exclusion, and every bad input caught before
anything is written."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from tiny_config import TINY

from fedmetamal.errors import ConfigError
from fedmetamal.experiments.runner import run_suite
from fedmetamal.experiments.suite import check_suite_dir, load_suite, read_manifest
from fedmetamal.experiments.suite_axes import auto_label
from fedmetamal.experiments.suite_layout import SUITE_FORMAT
from fedmetamal.experiments.suite_spec import DEFAULT_METRICS

GRID: dict[str, Any] = {
    "algorithm.name": ["fedavg", "fedprox", "scaffold"],
    "partition": [
        {"kind": "dirichlet", "alpha": 0.05},
        {"kind": "label-quantity", "k": 1, "label": "k=1"},
    ],
    "seed": [0, 1],
}


def write_suite(tmp_path: Path, stem: str = "study", **spec: Any) -> Path:
    spec.setdefault("config", TINY)
    spec.setdefault("grid", GRID)
    path = tmp_path / f"{stem}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def test_grid_expands_to_the_product_in_grid_order(tmp_path: Path) -> None:
    suite = load_suite(write_suite(tmp_path))
    assert suite.name == "study"  # the file stem
    assert len(suite.runs) == 3 * 2 * 2
    assert [a.key for a in suite.axes] == ["algorithm.name", "partition", "seed"]
    assert suite.axes[1].labels == ("dirichlet α=0.05", "k=1")
    assert suite.method_axis == "algorithm.name"
    assert suite.metrics == list(DEFAULT_METRICS)
    first, last = suite.runs[0], suite.runs[-1]
    assert first.settings == {
        "algorithm.name": "fedavg",
        "partition": "dirichlet α=0.05",
        "seed": "0",
    }
    assert last.settings == {"algorithm.name": "scaffold", "partition": "k=1", "seed": "1"}
    assert last.values["partition"] == {"kind": "label-quantity", "k": 1}  # label removed
    cfg = last.config
    assert (cfg.algorithm.name, cfg.partition.kind, cfg.partition.k, cfg.seed) == (
        "scaffold",
        "label-quantity",
        1,
        1,
    )
    assert cfg.partition.clients == 3  # from the inline config, kept under the merged axis


def test_automatic_labels() -> None:
    assert auto_label({"kind": "dirichlet", "alpha": 0.05}) == "dirichlet α=0.05"
    assert auto_label({"kind": "label-quantity", "k": 1}) == "label-quantity k=1"
    assert auto_label({"kind": "quantity", "sigma": 1.0}) == "quantity sigma=1.0"
    assert auto_label({"name": "fedprox", "params": {"mu": 0.01}}) == "fedprox mu=0.01"
    assert auto_label({"mu": 0.01, "server_lr": 1}) == "mu=0.01, server_lr=1"
    assert auto_label(0.1) == "0.1"
    assert auto_label("fedavg") == "fedavg"


def test_run_ids_are_readable_safe_stable_and_config_sensitive(tmp_path: Path) -> None:
    runs = load_suite(write_suite(tmp_path)).runs
    ids = [r.id for r in runs]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[a-z0-9][a-z0-9._-]*-[0-9a-f]{8}", i) for i in ids)
    assert ids[0].startswith("fedavg-dirichlet-a0.05-s0-")
    assert ids[-1].startswith("scaffold-k1-s1-")
    assert [r.id for r in load_suite(write_suite(tmp_path)).runs] == ids  # deterministic

    # a changed base setting changes every id (no stale result is reused) ...
    changed = {**TINY, "training": {"rounds": 3}}
    other = [r.id for r in load_suite(write_suite(tmp_path, "study", config=changed)).runs]
    assert not set(other) & set(ids)
    assert [i.rsplit("-", 1)[0] for i in other] == [i.rsplit("-", 1)[0] for i in ids]
    # ... while adding a value to an axis keeps the ids of the runs already there
    more = {**GRID, "seed": [0, 1, 2]}
    grown = [r.id for r in load_suite(write_suite(tmp_path, "study", grid=more)).runs]
    assert set(ids) < set(grown) and len(grown) == 18
    # runtime and output settings do not change what a run computes, so not its id
    fast = {**TINY, "runtime": {"threads": 1}}
    assert [r.id for r in load_suite(write_suite(tmp_path, "study", config=fast)).runs] == ids


def test_exclude_by_label_value_or_partial_mapping(tmp_path: Path) -> None:
    def count(exclude: list[dict[str, Any]]) -> int:
        return len(load_suite(write_suite(tmp_path, exclude=exclude)).runs)

    assert count([{"algorithm.name": "scaffold", "partition": "k=1"}]) == 10
    assert count([{"partition": {"kind": "dirichlet"}}]) == 6
    assert count([{"seed": 1}, {"algorithm.name": ["fedavg", "fedprox"], "seed": 0}]) == 2
    runs = load_suite(write_suite(tmp_path, exclude=[{"partition": "k=1"}])).runs
    assert all(r.settings["partition"] != "k=1" for r in runs)


def test_base_file_inline_config_and_dotted_keys_merge(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    base = {**TINY, "training": {"rounds": 7, "batch_size": 16}, "partition": {"clients": 4}}
    (tmp_path / "conf" / "base.yaml").write_text(yaml.safe_dump(base))
    sub = tmp_path / "suites"
    sub.mkdir()
    suite = load_suite(
        write_suite(
            sub,
            base="../conf/base.yaml",
            config={"training": {"rounds": 2}, "model.hidden": [8]},
            grid={"partition.alpha": [0.1, 1.0], "seed": [0]},
        )
    )
    cfg = suite.runs[0].config
    assert (cfg.training.rounds, cfg.training.batch_size) == (2, 16)
    assert cfg.model.hidden == [8] and cfg.partition.clients == 4
    assert [r.config.partition.alpha for r in suite.runs] == [0.1, 1.0]
    assert suite.method_axis == "partition.alpha"  # the first axis that is not the seed
    assert suite.runs[0].id.startswith("alpha0.1-s0-")


def test_base_algorithm_params_do_not_leak_into_other_algorithms(tmp_path: Path) -> None:
    config = {**TINY, "algorithm": {"name": "fedprox", "params": {"mu": 0.5}}}
    suite = load_suite(
        write_suite(tmp_path, config=config, grid={"algorithm.name": GRID["algorithm.name"]})
    )
    params = {r.config.algorithm.name: r.config.algorithm.params for r in suite.runs}
    assert params["fedprox"]["mu"] == 0.5
    assert "mu" not in params["fedavg"] and "mu" not in params["scaffold"]


def test_mapping_axis_for_algorithm_with_its_params(tmp_path: Path) -> None:
    grid = {"algorithm": [{"name": "fedavg"}, {"name": "fedprox", "params": {"mu": 0.1}}]}
    suite = load_suite(write_suite(tmp_path, grid=grid))
    assert suite.axes[0].labels == ("fedavg", "fedprox mu=0.1")
    assert suite.method_axis == "algorithm"
    assert suite.runs[1].config.algorithm.params["mu"] == 0.1


BAD: list[tuple[dict[str, Any], str]] = [
    ({"grids": GRID}, "unknown field 'grids'"),
    ({"grid": {}}, "empty grid"),
    ({"grid": {"seed": []}}, "Grid axis 'seed' has no values"),
    ({"grid": {"seed": 3}}, "grid.seed"),
    ({"grid": {"algo.name": ["fedavg"]}}, "Did you mean 'algorithm'"),
    ({"grid": {"training.rounds.x": [1]}}, "is a setting, not a section"),
    ({"grid": {"output.dir": ["a"]}}, "cannot be varied"),
    ({"grid": {"training.rounds": ["two"]}}, "grid axis 'training.rounds'"),
    ({"grid": {"partition": [{"kind": "dirichlet", "alpha": -1}]}}, "greater than 0"),
    ({"grid": {"partition": [{"kind": "dirichlet", "alfa": 1}]}}, "partition.alfa"),
    ({"grid": {"algorithm.name": ["fedavgg"]}}, "unknown algorithm 'fedavgg'"),
    ({"grid": {"seed": [0, 0]}}, "two values labelled '0'"),
    ({"metrics": ["auc"]}, "'auc' is not a metric"),
    ({"metrics": []}, "metrics is empty"),
    ({"methods": "algorithm"}, "'algorithm' is not a grid axis"),
    ({"methods": "seed"}, "replicate axis"),
    ({"parallel": 0}, "parallel must be"),
    ({"exclude": [{"optimizer": "sgd"}]}, "not a grid axis"),
    ({"exclude": [{"algorithm.name": "fedavgm"}]}, "matches no value"),
    ({"exclude": [{"seed": [0, 1]}]}, "no runs"),
    ({"base": "missing.yaml"}, "does not exist"),
    ({"config": {"training": {"rounds": 0}}}, "training.rounds"),
    ({"name": "a/b"}, "cannot name a folder"),
]


@pytest.mark.parametrize(("spec", "message"), BAD, ids=[m for _, m in BAD])
def test_bad_suites_fail_before_anything_is_written(
    tmp_path: Path, spec: dict[str, Any], message: str
) -> None:
    path = write_suite(tmp_path, **spec)
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match=re.escape(message)):
        run_suite(path, out_dir=out, jobs=1)
    assert not out.exists()


def test_not_yaml_or_not_a_mapping(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("grid: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_suite(bad)
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_suite(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_suite(tmp_path / "nope.yaml")


def _manifest_dir(tmp_path: Path, text: str) -> Path:
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.json").write_text(text)
    return out


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (json.dumps({"format": "fedmetamal-suite/0", "name": "study"}), "'fedmetamal-suite/0'"),
        ("{not json", "not a readable suite manifest"),
        (json.dumps({"format": SUITE_FORMAT, "name": "other"}), "holds suite 'other'"),
    ],
)
def test_incompatible_suite_directories(tmp_path: Path, text: str, message: str) -> None:
    out = _manifest_dir(tmp_path, text)
    with pytest.raises(ConfigError, match=re.escape(message)):
        run_suite(write_suite(tmp_path), out_dir=out, jobs=1)
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json"]


def test_a_foreign_non_empty_folder_is_not_used(tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("...")
    with pytest.raises(ConfigError, match="not a suite directory"):
        check_suite_dir(load_suite(write_suite(tmp_path)), out)
    with pytest.raises(ConfigError, match=r"no manifest\.json"):
        read_manifest(out)
    with pytest.raises(ConfigError, match="does not exist"):
        read_manifest(tmp_path / "absent")


def test_the_example_suites_are_valid() -> None:
    examples = Path(__file__).resolve().parents[2] / "examples"
    smoke = load_suite(examples / "smoke.yaml")
    assert len(smoke.runs) == 8 and smoke.method_axis == "algorithm.name"
    noniid = load_suite(examples / "noniid.yaml")
    assert len(noniid.runs) == 5 * 6 * 3
    assert {r.config.partition.clients for r in noniid.runs} == {10}
    assert noniid.axes[1].labels[-1] == "label-quantity k=1"


def test_config_hash_ignores_settings_left_at_their_defaults() -> None:
    """A later version adding a setting (at its default) keeps run ids and finished runs."""
    from fedmetamal.config import build_config
    from fedmetamal.experiments.suite_grid import config_hash

    base = {"partition": {"kind": "dirichlet", "alpha": 0.1}}
    explicit = {**base, "preprocess": {"standardize": True}, "training": {"rounds": 30}}
    assert config_hash(build_config(base)) == config_hash(build_config(explicit))
    assert config_hash(build_config(base)) != config_hash(
        build_config({**base, "training": {"rounds": 31}})
    )
    assert config_hash(build_config(base)) == config_hash(
        build_config({**base, "output": {"name": "elsewhere"}, "runtime": {"threads": 1}})
    )
