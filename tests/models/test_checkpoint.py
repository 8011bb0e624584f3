"""Checkpoints round-trip exactly and refuse files that are not theirs."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from fedmetamal.data.preprocess import Preprocessor
from fedmetamal.errors import DataError
from fedmetamal.models.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from fedmetamal.models.networks import Network

D = 8


def _preprocessor() -> Preprocessor:
    rng = np.random.default_rng(0)
    return Preprocessor(
        log_mask=np.arange(D) % 3 == 0,
        mean=rng.normal(size=D).astype(np.float32),
        std=rng.uniform(0.1, 50.0, D).astype(np.float32),
    )


def _save(path: Path, net: Network, **kwargs: object) -> torch.Tensor:
    params = torch.randn(net.num_params, generator=torch.Generator().manual_seed(0))
    save_checkpoint(path, net, params, _preprocessor(), [f"feat_{i}" for i in range(D)], **kwargs)
    return params


@pytest.mark.parametrize(
    "net", [Network(D, ()), Network(D, (6, 4), "gelu", "layer", 0.2)], ids=["logreg", "mlp"]
)
def test_round_trip_is_exact(tmp_path: Path, net: Network) -> None:
    path = tmp_path / "run" / "model.safetensors"
    extra = {"momentum": torch.randn(net.num_params), "step": torch.tensor([12], dtype=torch.int64)}
    meta = {"round": 5, "metrics": {"roc_auc": 0.93}, "algorithm": "fedavg"}
    params = _save(path, net, extra_tensors=extra, metadata=meta)

    ckpt = load_checkpoint(path)
    assert isinstance(ckpt, Checkpoint)
    assert ckpt.network == net
    assert ckpt.params.dtype == torch.float32 and torch.equal(ckpt.params, params)
    prep = _preprocessor()
    np.testing.assert_array_equal(ckpt.preprocessor.log_mask, prep.log_mask)
    np.testing.assert_array_equal(ckpt.preprocessor.mean, prep.mean)
    np.testing.assert_array_equal(ckpt.preprocessor.std, prep.std)
    assert ckpt.feature_names == [f"feat_{i}" for i in range(D)]
    assert ckpt.extra_tensors.keys() == extra.keys()
    for k, t in extra.items():
        assert ckpt.extra_tensors[k].dtype == t.dtype and torch.equal(ckpt.extra_tensors[k], t)
    assert ckpt.metadata == meta
    assert [p.name for p in path.parent.iterdir()] == ["model.safetensors"]  # no temp files


def test_file_layout(tmp_path: Path) -> None:
    net = Network(D, (4,))
    path = tmp_path / "model.safetensors"
    _save(path, net, extra_tensors={"opt.m": torch.zeros(3)})
    with safe_open(str(path), framework="pt") as f:
        keys = set(f.keys())
        header = json.loads(f.metadata()["fedmetamal"])
    assert keys == {
        *net.spec.names,
        "preprocess.log_mask",
        "preprocess.mean",
        "preprocess.std",
        "extra.opt.m",
    }
    assert header["format"] == "fedmetamal-model" and header["version"] == 1
    assert header["network"]["widths"] == [D, 4, 1]
    assert header["network"]["hidden"] == [4] and header["user"] == {}


def test_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.safetensors")
    with pytest.raises(DataError, match="does not exist or is not a file"):
        load_checkpoint(tmp_path)


def test_garbage_bytes_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "garbage.safetensors"
    path.write_bytes(b"\x80\x04\x95 definitely not a safetensors file" * 10)
    with pytest.raises(DataError, match="not a readable safetensors file"):
        load_checkpoint(path)


def test_foreign_safetensors_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.safetensors"
    save_file({"weight": torch.zeros(3, 3)}, str(path), metadata={"format": "pt"})
    with pytest.raises(DataError, match="not a FedMetaMal model checkpoint"):
        load_checkpoint(path)
    save_file({"weight": torch.zeros(3)}, str(path), metadata={"fedmetamal": '{"format": "x"}'})
    with pytest.raises(DataError, match="format marker"):
        load_checkpoint(path)


def _rewrite(
    path: Path,
    edit_tensors: Callable[[dict[str, torch.Tensor]], object] | None = None,
    edit_header: Callable[[dict[str, Any]], object] | None = None,
) -> None:
    """Tamper with a saved checkpoint's tensors or header, as a corrupt or forged file would."""
    with safe_open(str(path), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not a dict)
        header = json.loads(f.metadata()["fedmetamal"])
    if edit_tensors:
        edit_tensors(tensors)
    if edit_header:
        edit_header(header)
    save_file(tensors, str(path), metadata={"fedmetamal": json.dumps(header)})


def test_tensors_not_matching_the_network_are_refused(tmp_path: Path) -> None:
    net = Network(D, (4,))
    path = tmp_path / "model.safetensors"
    _save(path, net)
    _rewrite(path, edit_tensors=lambda t: t.update({"layer0.weight": torch.zeros(D, 5)}))
    with pytest.raises(DataError, match=r"does not match .*'layer0\.weight' has shape \(8, 5\)"):
        load_checkpoint(path)

    _save(path, net)
    _rewrite(path, edit_tensors=lambda t: t.pop("layer1.bias"))
    with pytest.raises(DataError, match=r"missing 'layer1\.bias'"):
        load_checkpoint(path)

    _save(path, net)
    _rewrite(path, edit_header=lambda h: h["network"].update(hidden=[4, 4]))
    with pytest.raises(DataError, match=r"missing 'layer2\.weight'"):
        load_checkpoint(path)

    _save(path, net)
    _rewrite(path, edit_tensors=lambda t: t.pop("preprocess.std"))
    with pytest.raises(DataError, match=r"missing 'preprocess\.std'"):
        load_checkpoint(path)


def test_bad_header_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    _save(path, Network(D, ()))
    _rewrite(path, edit_header=lambda h: h["network"].update(activation="swish"))
    with pytest.raises(DataError, match="invalid network description"):
        load_checkpoint(path)

    _save(path, Network(D, ()))
    _rewrite(path, edit_header=lambda h: h.update(version=99))
    with pytest.raises(DataError, match="format version 99"):
        load_checkpoint(path)

    _save(path, Network(D, ()))
    _rewrite(path, edit_header=lambda h: h.update(feature_names=["a"]))
    with pytest.raises(DataError, match="names 1 features"):
        load_checkpoint(path)


def test_inconsistent_save_is_refused(tmp_path: Path) -> None:
    net = Network(D, (4,))
    path = tmp_path / "model.safetensors"
    names = [f"f{i}" for i in range(D)]
    with pytest.raises(ValueError, match="params has shape"):
        save_checkpoint(path, net, torch.zeros(3), _preprocessor(), names)
    params = torch.zeros(net.num_params)
    with pytest.raises(ValueError, match="preprocessor has 3 features"):
        save_checkpoint(path, net, params, Preprocessor.identity(3), names)
    with pytest.raises(ValueError, match="2 feature names"):
        save_checkpoint(path, net, params, _preprocessor(), ["a", "b"])
    with pytest.raises(TypeError, match="JSON-serialisable"):
        save_checkpoint(path, net, params, _preprocessor(), names, metadata={"x": object()})
    assert not path.exists()
