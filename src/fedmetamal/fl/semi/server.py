"""Server fine-tuning on the server's labelled set (SemiFL; any method under labels-at-server).

The server is one more "client" holding labelled data: it runs the very same ``local_train``
(supervised loss, plain SGD) from the aggregated global model, so nothing about a step differs
from a client's.
"""

from __future__ import annotations

import torch

from fedmetamal.fl.base import Algorithm, NoParams, RoundContext
from fedmetamal.fl.local import Batch, batch_plan, local_step_count, local_train
from fedmetamal.fl.schedule import round_seed
from fedmetamal.fl.semi.streams import SERVER_DROPOUT_STREAM, SERVER_STREAM
from fedmetamal.models.networks import Network


def server_finetune(
    network: Network,
    params: torch.Tensor,
    X: torch.Tensor,
    y: torch.Tensor,
    ctx: RoundContext,
    *,
    batch_size: int,
    epochs: float,
    seed: int,
) -> tuple[torch.Tensor, float]:
    """The global model after ``epochs`` of supervised SGD on the server set, and its loss.

    ``ctx`` gives the round, learning rate, momentum and weight decay (the clients' own);
    ``params`` (P,) is not modified. Batches: a seeded shuffle per epoch, last batch partial.
    """
    n = int(y.shape[0])
    if n == 0:
        return params, float("nan")
    steps = local_step_count(n, batch_size, epochs, None)
    shuffle = torch.Generator().manual_seed(round_seed(seed, ctx.round, SERVER_STREAM))
    plan = batch_plan(n, batch_size, steps, shuffle)
    one = torch.ones(1, device=params.device)
    batches = (_batch(X, y, torch.from_numpy(rows).to(X.device), one) for rows in plan)
    gen = None
    if network.dropout > 0:
        gen = torch.Generator(device=params.device).manual_seed(
            round_seed(seed, ctx.round, SERVER_DROPOUT_STREAM)
        )
    server_ctx = RoundContext(
        ctx.round, params, {}, ctx.lr, momentum=ctx.momentum, weight_decay=ctx.weight_decay
    )
    out, _ = local_train(network, Algorithm(NoParams()), server_ctx, batches, {}, one * n, gen)
    return params + out.delta[0], float(out.train_loss[0])


def _batch(X: torch.Tensor, y: torch.Tensor, rows: torch.Tensor, one: torch.Tensor) -> Batch:
    x = X.index_select(0, rows).unsqueeze(0)
    return Batch(x, y.index_select(0, rows).unsqueeze(0), torch.ones_like(x[..., 0]), one)
