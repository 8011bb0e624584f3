"""A plain per-client federated training loop, written from the papers, used only by tests.

Every client trains an ordinary ``nn.Sequential`` with ``torch.optim.SGD`` on
``nn.BCEWithLogitsLoss``; every server update is written out by hand. Nothing here calls the
project's algorithm hooks, ``local_train``, the client store or the server optimisers: the only
shared pieces are the choices that must agree for the two to see the same data (the initial
parameters, which clients a round samples, the per-client shuffle and the step count) and the
conversion between the flat parameter vector and an ``nn.Module``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from fedmetamal.config import RunConfig
from fedmetamal.data.federation import Federation
from fedmetamal.fl.local import batch_plan, local_step_count
from fedmetamal.fl.schedule import SHUFFLE_STREAM, client_lr, round_seed, sample_clients
from fedmetamal.models.networks import Network

Vector = torch.Tensor  # flat float64 parameter vector (P,)


# ---- flat vector <-> ordinary module ------------------------------------------------------
def module_to_flat(network: Network, module: nn.Module) -> Vector:
    """The module's parameters in the flat layout: per layer ``weight`` as (in, out), ``bias``."""
    assert network.norm == "none", "the reference loop covers networks without normalisation"
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == len(network.widths) - 1
    parts: list[torch.Tensor] = []
    for name in network.spec.names:
        layer, kind = name.split(".")
        lin = linears[int(layer.removeprefix("layer"))]
        tensor = lin.weight.T if kind == "weight" else lin.bias
        parts.append(tensor.detach().reshape(-1))
    return torch.cat(parts).to(torch.float64)


def build_module(network: Network, flat: Vector) -> nn.Sequential:
    module = network.to_module(flat.to(torch.float32))
    module.train()
    return module


# ---- data ---------------------------------------------------------------------------------
@dataclass
class ClientData:
    X: torch.Tensor  # (n, d) float32
    y: torch.Tensor  # (n,) float32 0/1

    @property
    def n(self) -> int:
        return int(self.y.shape[0])


def client_datasets(fed: Federation, pooled: bool) -> list[ClientData]:
    """Each client's labelled training rows; for the centralised baseline one pooled client."""
    Xs, ys = [], []
    for c in fed.clients:
        keep = c.train.y >= 0
        Xs.append(np.asarray(c.train.X, dtype=np.float32)[keep])
        ys.append(c.train.y[keep].astype(np.float32))
    if pooled:
        Xs, ys = [np.concatenate(Xs)], [np.concatenate(ys)]
    return [
        ClientData(torch.from_numpy(X), torch.from_numpy(y)) for X, y in zip(Xs, ys, strict=True)
    ]


# ---- one client's local training ----------------------------------------------------------
@dataclass
class LocalResult:
    params: Vector  # final local parameters y_i
    steps: int  # local SGD steps taken (K / tau_i)


def train_client(
    network: Network,
    cfg: RunConfig,
    data: ClientData,
    client: int,
    round_index: int,
    global_params: Vector,
    lr: float,
    prox_mu: float = 0.0,
    scaffold_correction: Vector | None = None,
) -> LocalResult:
    """Local SGD from the global model, as one would write it by hand for a single client.

    ``prox_mu`` adds FedProx's mu/2 ||w - w_global||^2 to the loss; ``scaffold_correction``
    (c - c_i, flat) is added to every gradient before the optimiser step.
    """
    t = cfg.training
    module = build_module(network, global_params)
    params = list(module.parameters())
    anchors = [p.detach().clone() for p in params]
    correction = None
    if scaffold_correction is not None:
        reference = build_module(network, scaffold_correction.to(torch.float64))
        correction = [p.detach().clone() for p in reference.parameters()]
    opt = torch.optim.SGD(params, lr=lr, momentum=t.client_momentum, weight_decay=t.weight_decay)
    loss_fn = nn.BCEWithLogitsLoss()
    n_steps = local_step_count(data.n, t.batch_size, t.local_epochs, t.local_steps)
    gen = torch.Generator().manual_seed(round_seed(cfg.seed, round_index, SHUFFLE_STREAM, client))
    plan = batch_plan(data.n, t.batch_size, n_steps, gen)
    for rows in plan:
        idx = torch.from_numpy(rows)
        opt.zero_grad()
        loss = loss_fn(module(data.X[idx]).squeeze(-1), data.y[idx])
        if prox_mu > 0:
            prox = sum(((p - a) ** 2).sum() for p, a in zip(params, anchors, strict=True))
            loss = loss + prox_mu / 2 * prox
        loss.backward()
        if correction is not None:
            with torch.no_grad():
                for p, c in zip(params, correction, strict=True):
                    assert p.grad is not None
                    p.grad += c
        opt.step()
    return LocalResult(module_to_flat(network, module), len(plan))


# ---- the federated loop -------------------------------------------------------------------
@dataclass
class ServerState:
    momentum: Vector | None = None  # FedAvgM
    m: Vector | None = None  # adaptive first moment
    v: Vector | None = None  # adaptive second moment
    control: Vector | None = None  # SCAFFOLD server control variate c
    client_controls: dict[int, Vector] = field(default_factory=dict)  # SCAFFOLD c_i


def _fednova_norm(tau: int, rho: float) -> float:
    """FedNova's a_i = ||a_i||_1 for local SGD (tau) or SGD with momentum rho."""
    if rho == 0:
        return float(tau)
    return (tau - rho * (1 - rho**tau) / (1 - rho)) / (1 - rho)


def reference_run(cfg: RunConfig, fed: Federation) -> torch.Tensor:
    """Global parameters (float32) after ``cfg.training.rounds`` rounds of ``cfg.algorithm``."""
    t = cfg.training
    name = cfg.algorithm.name
    hyper = cfg.algorithm.params
    default_server_lr = 0.01 if name in ("fedadam", "fedyogi", "fedadagrad") else 1.0
    eta = cfg.algorithm.server_lr if cfg.algorithm.server_lr is not None else default_server_lr
    network = Network.from_config(cfg.model, fed.n_features)
    x = network.init(torch.Generator().manual_seed(cfg.seed)).to(torch.float64)
    clients = client_datasets(fed, pooled=name == "centralised")
    n_total = len(clients)
    state = ServerState()
    if name == "scaffold":
        state.control = torch.zeros_like(x)
        state.client_controls = {i: torch.zeros_like(x) for i in range(n_total)}
    if name in ("fedadam", "fedyogi", "fedadagrad"):
        state.m = torch.zeros_like(x)
        state.v = torch.full_like(x, hyper["tau"] ** 2)
    if name == "fedavgm":
        state.momentum = torch.zeros_like(x)

    for r in range(t.rounds):
        lr = client_lr(t, r)
        sampled = [int(i) for i in sample_clients(n_total, t.client_fraction, cfg.seed, r)]
        deltas: list[Vector] = []
        taus: list[int] = []
        control_changes: list[Vector] = []
        for i in sampled:
            correction = None
            if name == "scaffold":
                assert state.control is not None
                correction = state.control - state.client_controls[i]
            res = train_client(
                network,
                cfg,
                clients[i],
                i,
                r,
                x,
                lr,
                prox_mu=hyper["mu"] if name == "fedprox" else 0.0,
                scaffold_correction=correction,
            )
            deltas.append(res.params - x)
            taus.append(res.steps)
            if name == "scaffold":
                # Option II: c_i+ = c_i - c + (x - y_i) / (K lr)
                assert state.control is not None
                c_i = state.client_controls[i]
                new_c_i = c_i - state.control + (x - res.params) / (res.steps * lr)
                control_changes.append(new_c_i - c_i)
                state.client_controls[i] = new_c_i

        if t.weighting == "samples":
            w = torch.tensor([clients[i].n for i in sampled], dtype=torch.float64)
        else:
            w = torch.ones(len(sampled), dtype=torch.float64)
        p = w / w.sum()
        avg_delta = sum(pi * d for pi, d in zip(p, deltas, strict=True))
        assert isinstance(avg_delta, torch.Tensor)

        if name in ("fedavg", "fedprox", "centralised"):
            x = x + eta * avg_delta
        elif name == "fedavgm":
            assert state.momentum is not None
            state.momentum = hyper["server_momentum"] * state.momentum + avg_delta
            x = x + eta * state.momentum
        elif name == "scaffold":
            assert state.control is not None
            x = x + eta * avg_delta
            state.control = state.control + sum(control_changes) / n_total
        elif name == "fednova":
            a = [_fednova_norm(tau, t.client_momentum) for tau in taus]
            tau_eff = sum(float(pi) * ai for pi, ai in zip(p, a, strict=True))
            normalised = sum(pi * d / ai for pi, d, ai in zip(p, deltas, a, strict=True))
            x = x + eta * tau_eff * normalised
        elif name in ("fedadam", "fedyogi", "fedadagrad"):
            assert state.m is not None and state.v is not None
            b1, b2, tau = hyper["beta1"], hyper["beta2"], hyper["tau"]
            state.m = b1 * state.m + (1 - b1) * avg_delta
            sq = avg_delta**2
            if name == "fedadam":
                state.v = b2 * state.v + (1 - b2) * sq
            elif name == "fedyogi":
                state.v = state.v - (1 - b2) * sq * torch.sign(state.v - sq)
            else:
                state.v = state.v + sq
            x = x + eta * state.m / (state.v.sqrt() + tau)
        else:
            raise ValueError(f"the reference loop does not implement '{name}'")
    return x.to(torch.float32)
