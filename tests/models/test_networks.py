"""The batched forward must be exactly the per-client model, in any stacking."""

from __future__ import annotations

import pytest
import torch

from fedmetamal.config import ModelConfig
from fedmetamal.models.flat import ParamSpec
from fedmetamal.models.networks import Network

D = 12
NETWORKS = {
    "logreg": Network(D, ()),
    "mlp-relu": Network(D, (16, 8), "relu"),
    "mlp-gelu-layernorm": Network(D, (16, 8), "gelu", "layer"),
    "mlp-tanh-layernorm": Network(D, (10,), "tanh", "layer"),
    "mlp-dropout": Network(D, (16,), "relu", dropout=0.3),
}


def _params(net: Network, clients: int, seed: int = 0) -> torch.Tensor:
    """Random parameters of ordinary scale, so activations and norms are exercised."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(clients, net.num_params, generator=g) * 0.5


def _inputs(clients: int, batch: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(clients, batch, D, generator=g) * 2.0


@pytest.mark.parametrize("name", NETWORKS)
def test_stacked_forward_equals_each_client_alone(name: str) -> None:
    net = NETWORKS[name]
    params, x = _params(net, 4), _inputs(4, 7)
    stacked = net.forward(params, x)
    assert stacked.shape == (4, 7)
    for c in range(4):
        alone = net.forward(params[c : c + 1], x[c : c + 1])
        torch.testing.assert_close(stacked[c], alone[0], atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", NETWORKS)
def test_forward_equals_to_module(name: str) -> None:
    net = NETWORKS[name]
    params, x = _params(net, 3), _inputs(3, 9)
    stacked = net.forward(params, x)
    for c in range(3):
        module = net.to_module(params[c]).eval()
        with torch.no_grad():
            reference = module(x[c]).squeeze(-1)
        torch.testing.assert_close(stacked[c], reference, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("name", NETWORKS)
def test_to_module_holds_exactly_the_parameters(name: str) -> None:
    net = NETWORKS[name]
    module = net.to_module(_params(net, 1)[0])
    assert sum(p.numel() for p in module.parameters()) == net.num_params
    assert net.describe()["parameters"] == net.num_params


def test_dropout_only_in_training_and_seeded() -> None:
    net = NETWORKS["mlp-dropout"]
    params, x = _params(net, 2), _inputs(2, 50)
    assert torch.equal(net.forward(params, x), net.forward(params, x, train=False))
    a = net.forward(params, x, train=True, generator=torch.Generator().manual_seed(3))
    b = net.forward(params, x, train=True, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert not torch.allclose(a, net.forward(params, x))


@pytest.mark.parametrize("name", NETWORKS)
def test_init_is_deterministic_per_generator(name: str) -> None:
    net = NETWORKS[name]
    a = net.init(torch.Generator().manual_seed(7))
    b = net.init(torch.Generator().manual_seed(7))
    c = net.init(torch.Generator().manual_seed(8))
    assert a.shape == (net.num_params,) and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_init_follows_linear_default_bounds_and_unit_norm() -> None:
    net = NETWORKS["mlp-gelu-layernorm"]
    named = net.spec.unflatten(net.init(torch.Generator().manual_seed(0)))
    for i, fan_in in enumerate(net.widths[:-1]):
        bound = fan_in**-0.5
        assert named[f"layer{i}.weight"].abs().max() <= bound
        assert named[f"layer{i}.bias"].abs().max() <= bound
    for i in range(len(net.hidden)):
        assert torch.equal(named[f"norm{i}.weight"], torch.ones(net.widths[i + 1]))
        assert torch.equal(named[f"norm{i}.bias"], torch.zeros(net.widths[i + 1]))


@pytest.mark.parametrize("name", NETWORKS)
def test_spec_flatten_unflatten_roundtrip(name: str) -> None:
    spec = NETWORKS[name].spec
    flat = torch.randn(spec.size)
    named = spec.unflatten(flat)
    assert list(named) == list(spec.names)
    assert [tuple(t.shape) for t in named.values()] == list(spec.shapes)
    assert torch.equal(spec.flatten(named), flat)
    stacked = spec.unflatten(torch.randn(5, spec.size))
    assert all(t.shape == (5, *s) for t, s in zip(stacked.values(), spec.shapes, strict=True))


def test_spec_rejects_wrong_sizes_and_missing_names() -> None:
    spec = ParamSpec(("w", "b"), ((3, 2), (2,)))
    assert spec.size == 8 and spec.offsets() == [(0, 6), (6, 8)]
    with pytest.raises(ValueError, match="expected 8"):
        spec.unflatten(torch.zeros(7))
    with pytest.raises(ValueError, match="missing"):
        spec.flatten({"w": torch.zeros(3, 2)})


def test_from_config() -> None:
    logreg = Network.from_config(ModelConfig(kind="logreg", hidden=[32]), 20)
    assert logreg.hidden == () and logreg.widths == (20, 1)
    assert logreg.describe()["kind"] == "logreg"
    mlp = Network.from_config(ModelConfig(hidden=[32, 4], norm="layer"), 20)
    assert mlp.widths == (20, 32, 4, 1) and mlp.describe()["kind"] == "mlp"
