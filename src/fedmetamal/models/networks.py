"""Detectors as functions of flat parameters, evaluated for many clients at once.

``forward(params, x)`` takes a stack of parameter vectors (C, P) and a stack of inputs
(C, B, d) and returns logits (C, B): client c's model applied to client c's batch, computed with
batched matmuls. One client is just C = 1, so the simulation runtime, the per-client reference
loop and the network participant all run the same forward code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from fedmetamal.config import ModelConfig
from fedmetamal.models.flat import ParamSpec

#: A generator for the whole stack of clients, or one per client (row).
Generators = torch.Generator | Sequence[torch.Generator] | None

_ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu, "tanh": torch.tanh}
_MODULES: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}


@dataclass(frozen=True)
class Network:
    """A multilayer perceptron (no hidden layers = logistic regression) over flat parameters.

    Weights are stored (in, out) so a batched forward is ``baddbmm(bias, h, W)`` with no
    transposes; LayerNorm (optional) has a per-client gain and bias.
    """

    n_features: int
    hidden: tuple[int, ...]
    activation: str = "relu"
    norm: str = "none"
    dropout: float = 0.0

    @classmethod
    def from_config(cls, cfg: ModelConfig, n_features: int) -> Network:
        hidden = tuple(cfg.hidden) if cfg.kind == "mlp" else ()
        return cls(n_features, hidden, cfg.activation, cfg.norm, cfg.dropout)

    @property
    def widths(self) -> tuple[int, ...]:
        return (self.n_features, *self.hidden, 1)

    @property
    def spec(self) -> ParamSpec:
        names: list[str] = []
        shapes: list[tuple[int, ...]] = []
        w = self.widths
        for i in range(len(w) - 1):
            names += [f"layer{i}.weight", f"layer{i}.bias"]
            shapes += [(w[i], w[i + 1]), (w[i + 1],)]
            if self.norm == "layer" and i < len(w) - 2:
                names += [f"norm{i}.weight", f"norm{i}.bias"]
                shapes += [(w[i + 1],), (w[i + 1],)]
        return ParamSpec(tuple(names), tuple(shapes))

    @property
    def num_params(self) -> int:
        return self.spec.size

    def init(self, generator: torch.Generator) -> torch.Tensor:
        """PyTorch's default Linear init (uniform +-1/sqrt(fan_in)), drawn from ``generator``."""
        parts = []
        for name, shape in zip(self.spec.names, self.spec.shapes, strict=True):
            if name.startswith("norm"):
                fill = 1.0 if name.endswith("weight") else 0.0
                parts.append(torch.full(shape, fill))
                continue
            fan_in = self.widths[int(name.split(".")[0].removeprefix("layer"))]
            bound = fan_in**-0.5
            parts.append((torch.rand(shape, generator=generator) * 2 - 1) * bound)
        return torch.cat([p.reshape(-1) for p in parts])

    def forward(
        self,
        params: torch.Tensor,
        x: torch.Tensor,
        *,
        train: bool = False,
        generator: Generators = None,
    ) -> torch.Tensor:
        """Logits (C, B) of each client's model ``params[c]`` on its batch ``x[c]``."""
        return self.forward_named(self.spec.unflatten(params), x, train=train, generator=generator)

    def forward_named(
        self,
        p: dict[str, torch.Tensor],
        x: torch.Tensor,
        *,
        train: bool = False,
        generator: Generators = None,
    ) -> torch.Tensor:
        """``forward`` on named parameter tensors, each (C, *shape) as ``spec.unflatten`` gives."""
        return self.head(p, self.first_layer(p, x), train=train, generator=generator)

    def first_layer(self, p: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """The first layer's pre-activation (C, B, widths[1]).

        Training takes the gradient with respect to this output rather than to the first weight,
        and folds that weight's SGD step into one in-place matmul (``fl.local.local_train``).
        """
        return torch.baddbmm(p["layer0.bias"].unsqueeze(-2), x, p["layer0.weight"])

    def head(
        self,
        p: dict[str, torch.Tensor],
        z: torch.Tensor,
        *,
        train: bool = False,
        generator: Generators = None,
    ) -> torch.Tensor:
        """Logits (C, B) from the first layer's pre-activation ``z``."""
        act = _ACTIVATIONS[self.activation]
        h = z
        for i in range(1, len(self.widths) - 1):
            if self.norm == "layer":  # of hidden layer i - 1's output
                gain, shift = p[f"norm{i - 1}.weight"], p[f"norm{i - 1}.bias"]
                h = F.layer_norm(h, h.shape[-1:]) * gain.unsqueeze(-2) + shift.unsqueeze(-2)
            h = act(h)
            if train and self.dropout > 0:
                h = h * _keep_mask(h, self.dropout, generator) / (1.0 - self.dropout)
            h = torch.baddbmm(p[f"layer{i}.bias"].unsqueeze(-2), h, p[f"layer{i}.weight"])
        return h.squeeze(-1)

    def to_module(self, params: torch.Tensor) -> nn.Sequential:
        """An ordinary ``nn.Sequential`` holding ``params`` (one client, shape (P,))."""
        p = self.spec.unflatten(params.detach().float().cpu())
        layers: list[nn.Module] = []
        n_layers = len(self.widths) - 1
        for i in range(n_layers):
            lin = nn.Linear(self.widths[i], self.widths[i + 1])
            with torch.no_grad():
                lin.weight.copy_(p[f"layer{i}.weight"].T)
                lin.bias.copy_(p[f"layer{i}.bias"])
            layers.append(lin)
            if i == n_layers - 1:
                break
            if self.norm == "layer":
                ln = nn.LayerNorm(self.widths[i + 1])
                with torch.no_grad():
                    ln.weight.copy_(p[f"norm{i}.weight"])
                    ln.bias.copy_(p[f"norm{i}.bias"])
                layers.append(ln)
            layers.append(_MODULES[self.activation]())
            if self.dropout > 0:
                layers.append(nn.Dropout(self.dropout))
        return nn.Sequential(*layers)

    def describe(self) -> dict[str, object]:
        return {
            "kind": "mlp" if self.hidden else "logreg",
            "widths": list(self.widths),
            "activation": self.activation,
            "norm": self.norm,
            "dropout": self.dropout,
            "parameters": self.num_params,
        }


def _keep_mask(h: torch.Tensor, rate: float, generator: Generators) -> torch.Tensor:
    """Dropout's keep mask; with one generator per client, each client's rows come from its own
    generator, so the masks do not depend on how clients are grouped."""
    if generator is None or isinstance(generator, torch.Generator):
        return torch.rand(h.shape, generator=generator, device=h.device) >= rate
    rows = [torch.rand(h.shape[1:], generator=g, device=h.device) for g in generator]
    return torch.stack(rows) >= rate


def masked_bce(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-client mean binary cross-entropy over the real (mask = 1) samples; shape (C,)."""
    per_sample = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return (per_sample * mask).sum(-1) / mask.sum(-1).clamp_min(1.0)


def weighted_bce(
    logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """Per-client sum of per-sample weighted binary cross-entropy; shape (C,).

    The weights carry each part's normalisation (semi-supervised steps mix labelled rows,
    averaged over the real ones, with pseudo-labelled rows averaged over all unlabelled ones).
    """
    per_sample = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return (per_sample * weights).sum(-1)
