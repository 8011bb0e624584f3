"""The small interface every federated algorithm implements.

An algorithm is pure tensor math on flat parameter vectors. Client-side hooks receive a stack of
clients (C, P) — the simulation runtime stacks many, a network participant passes one — and the
server-side hook receives the stacked results of the clients that reported. No hook knows about
threads, sockets, files or processes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from pydantic import BaseModel, ConfigDict

from fedmetamal.fl.aggregate import Aggregator
from fedmetamal.fl.server_opt import ServerOptimizer, ServerSGD

State = dict[str, torch.Tensor]


class NoParams(BaseModel):
    """Hyperparameters of an algorithm that has none of its own."""

    model_config = ConfigDict(extra="forbid")


@dataclass
class RoundContext:
    """What a client needs to train in one round (identical for every client of the round)."""

    round: int
    global_params: torch.Tensor  # (P,)
    broadcast: State  # algorithm-specific tensors the server sends along (e.g. SCAFFOLD's c)
    lr: float
    momentum: float = 0.0
    weight_decay: float = 0.0


@dataclass
class ClientOutput:
    """Results of C clients, stacked: what each sends back to the server."""

    delta: torch.Tensor  # (C, P): final local params minus global params
    num_samples: torch.Tensor  # (C,) training samples held
    steps: torch.Tensor  # (C,) local optimisation steps taken
    train_loss: torch.Tensor  # (C,) mean training loss over the local steps
    extras: State = field(default_factory=dict)  # (C, ...) algorithm-specific

    @staticmethod
    def stack(outputs: list[ClientOutput], delta: torch.Tensor | None = None) -> ClientOutput:
        """Concatenate outputs of separate groups of clients (e.g. per-client network uploads).

        ``delta``: the groups' deltas already laid out in order in one tensor (the simulation
        runtime trains groups in slices of one buffer), so they need no copy.
        """
        keys = outputs[0].extras.keys()
        return ClientOutput(
            torch.cat([o.delta for o in outputs]) if delta is None else delta,
            torch.cat([o.num_samples for o in outputs]),
            torch.cat([o.steps for o in outputs]),
            torch.cat([o.train_loss for o in outputs]),
            {k: torch.cat([o.extras[k] for o in outputs]) for k in keys},
        )


class Algorithm:
    """Base class: FedAvg behaviour, which most algorithms modify in one or two hooks."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    reference: ClassVar[str] = ""
    Params: ClassVar[type[BaseModel]] = NoParams
    default_server_lr: ClassVar[float] = 1.0
    #: Train on all clients' data pooled into one (the centralised baseline).
    pooled: ClassVar[bool] = False
    #: An override of ``aggregate`` that still routes through ``self.aggregator``; algorithms
    #: overriding it without doing so are refused robust rules rather than silently averaging.
    robust_aggregation: ClassVar[bool] = False

    def __init__(
        self,
        params: BaseModel,
        server_lr: float | None = None,
        aggregator: Aggregator | None = None,
    ) -> None:
        self.params = params
        self.server_lr = self.default_server_lr if server_lr is None else server_lr
        self.optimizer = self.make_server_optimizer()
        #: How client deltas are combined: the weighted mean unless a robust rule is configured.
        self.aggregator = Aggregator() if aggregator is None else aggregator

    # ---- server side -------------------------------------------------------------------
    def make_server_optimizer(self) -> ServerOptimizer:
        return ServerSGD(self.server_lr)

    def init_server_state(self, global_params: torch.Tensor) -> State:
        return self.optimizer.init_state(global_params)

    def broadcast(self, server_state: State) -> State:
        """Server tensors the clients need this round (none for FedAvg)."""
        return {}

    def aggregate(self, out: ClientOutput, weights: torch.Tensor) -> torch.Tensor:
        """The clients' deltas combined by the aggregation rule (by default their weighted mean,
        ``weights / weights.sum() @ delta``): the pseudo-gradient with its sign flipped."""
        return self.aggregator(out.delta, weights)

    def server_update(
        self,
        global_params: torch.Tensor,
        server_state: State,
        out: ClientOutput,
        weights: torch.Tensor,
        n_clients_total: int,
    ) -> tuple[torch.Tensor, State]:
        """New global parameters and server state from the clients' stacked outputs."""
        update = self.aggregate(out, weights)
        return self.optimizer.step(global_params, update, server_state)

    # ---- client side -------------------------------------------------------------------
    def init_client_state(self, num_params: int) -> State:
        """Per-client state kept between rounds (e.g. SCAFFOLD's control variate); none here."""
        return {}

    def gradient_correction(
        self,
        params: torch.Tensor,
        ctx: RoundContext,
        client_state: State,
    ) -> torch.Tensor | None:
        """Term added to every local gradient (FedProx's proximal pull, SCAFFOLD's drift fix)."""
        return None

    def client_finish(
        self,
        final_params: torch.Tensor,
        steps: torch.Tensor,
        ctx: RoundContext,
        client_state: State,
    ) -> tuple[State, State]:
        """Extras to upload and the client's new persistent state, after local training."""
        return {}, client_state
