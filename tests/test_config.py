"""Configuration errors name the field, the value and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from fedmetamal.config import build_config, load_config
from fedmetamal.errors import ConfigError


def test_defaults_validate() -> None:
    cfg = build_config({})
    assert cfg.algorithm.name == "fedavg"
    assert cfg.dataset.source == "synthetic"
    assert cfg.model.hidden == [256, 64]


def test_unknown_field_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"unknown field 'training.round'"):
        build_config({"training": {"round": 3}})


def test_out_of_range_value_names_field_and_value() -> None:
    with pytest.raises(ConfigError) as err:
        build_config({"partition": {"alpha": -1}})
    assert "partition.alpha = -1" in str(err.value)
    assert "greater than 0" in str(err.value)


def test_unknown_partition_lists_choices() -> None:
    with pytest.raises(ConfigError) as err:
        build_config({"partition": {"kind": "dirichlett"}})
    assert "'dirichlett'" in str(err.value) and "'dirichlet'" in str(err.value)


def test_unknown_algorithm_lists_algorithms() -> None:
    with pytest.raises(ConfigError) as err:
        build_config({"algorithm": {"name": "fedsgd"}})
    assert "unknown algorithm 'fedsgd'" in str(err.value)
    assert "scaffold" in str(err.value)


def test_algorithm_params_validated_by_the_algorithm() -> None:
    cfg = build_config({"algorithm": {"name": "fedprox", "params": {"mu": 0.1}}})
    assert cfg.algorithm.params == {"mu": 0.1}
    assert build_config({"algorithm": {"name": "fedprox"}}).algorithm.params == {"mu": 0.01}
    with pytest.raises(ConfigError, match="parameters of 'fedprox': mu"):
        build_config({"algorithm": {"name": "fedprox", "params": {"beta": 0.1}}})
    with pytest.raises(ConfigError, match="mu"):
        build_config({"algorithm": {"name": "fedprox", "params": {"mu": -1}}})


def test_yaml_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("training: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(listy)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("training:\n  rounds: zero\n")
    with pytest.raises(ConfigError, match=r"config file .*wrong.yaml.*training.rounds = 'zero'"):
        load_config(wrong)


def test_examples_are_valid() -> None:
    """Every example is a valid run config, or (with a ``grid``) a valid experiment suite."""
    from fedmetamal.experiments.suite import load_suite

    examples = sorted(Path(__file__).parents[1].joinpath("examples").glob("*.yaml"))
    assert examples, "examples/ should hold example configs"
    suites = 0
    for path in examples:
        if "grid" in yaml.safe_load(path.read_text()):
            assert load_suite(path).runs
            suites += 1
        else:
            load_config(path)
    assert suites >= 2  # smoke.yaml and noniid.yaml
