"""Secure aggregation over the network: the four stages of ``privacy/secagg.py`` as four task
rounds, so the server only ever learns the sum of the participants' updates.

1. advertise: each sampled participant makes fresh X25519 keys and uploads the public ones;
2. share keys: each gets the key broadcast (its SecAgg+ neighbourhood) and uploads its
   encrypted Shamir shares, which the server routes;
3. masked train: each trains as usual, encodes its update exactly as the simulation's
   :class:`~fedmetamal.sim.secure_round.SecureAggregator` does (``[w/w_max * delta,
   range * w/w_max]``, clipped and quantised), and uploads it masked;
4. unmask: the survivors reveal the shares that strip the masks.

A participant that drops out at any stage is handled by the protocol while the threshold
holds; otherwise the round is retried with fresh keys. The decoded sum gives the weighted mean
update, applied with the algorithm's own server optimiser.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from fedmetamal.fl.aggregate import Aggregator
from fedmetamal.fl.base import ClientOutput
from fedmetamal.privacy.secagg import MaskedInput, ProtocolError, SecAggAborted, SecAggServer
from fedmetamal.privacy.secagg_ring import dequantise_sum
from fedmetamal.service import secagg_wire as wire
from fedmetamal.sim.secure_round import DEFAULT_RANGE, effective_neighbours, round_threshold
from fedmetamal.v1 import federation_pb2 as pb

if TYPE_CHECKING:
    from fedmetamal.service.run_engine import Collected, RunEngine


class _KnownUpdate(Aggregator):
    """The aggregate the protocol decoded, handed to the algorithm's server update."""

    def __init__(self, update: torch.Tensor) -> None:
        super().__init__()
        self.update = update

    @property
    def is_mean(self) -> bool:
        return False

    def __call__(self, deltas: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return self.update


def weight_bound(cfg: Any, sizes: list[int]) -> float:
    """The public bound w_max on a participant's weight (as the simulation computes it)."""
    if cfg.training.weighting != "samples":
        return 1.0
    return max(float(max(sizes, default=1)), 1.0)


class SecureRounds:
    def __init__(self, engine: RunEngine) -> None:
        self.e = engine

    async def run(
        self, r: int, sampled: list[int]
    ) -> tuple[
        Collected, tuple[torch.Tensor, dict[str, torch.Tensor], float, dict[str, str]] | None
    ]:
        from fedmetamal.service.run_engine import Collected

        e = self.e
        cfg, sa = e.cfg, e.cfg.secagg
        assert e.state is not None
        done = Collected()
        cohort = [s for s in sampled if e.core.registry.can_train(e.slots[s])]
        for s in set(sampled) - set(cohort):
            done.rejected[e.slots[s]] = "offline or not approved"
        m = len(cohort)
        threshold = round_threshold(sa, m) if m else 1
        k = effective_neighbours(m, sa.neighbours) if m else None
        need = max(threshold, cfg.network.min_participants)
        if m < need:
            done.failure = f"{m} participant(s) online for secure aggregation; needs {need}"
            return done, None
        p = e.state.network.num_params
        rng = sa.range if sa.range is not None else DEFAULT_RANGE
        session = uuid.uuid4().hex
        params = pb.SecAggParams(
            threshold=threshold,
            vector_len=p + 1,
            neighbours=k or 0,
            bits=sa.bits,
            range=rng,
            weight_bound=weight_bound(cfg, e.sizes),
        )
        server = SecAggServer(threshold, p + 1, neighbours=k)

        def msg(**body: Any) -> pb.SecAggMessage:
            return pb.SecAggMessage(session=session, **body)

        try:
            # 1. advertise
            got = await self._stage(
                r, "secagg_advertise", cohort, lambda _s: msg(params=params), done
            )
            for slot, res in got:
                self._take(
                    done,
                    slot,
                    lambda res=res, slot=slot: server.receive_advertise(
                        _checked_keys(slot, res.secagg)
                    ),
                )
            bcast = server.close_advertise()
            u1 = sorted(bcast.members or [key.client_id for key in bcast.keys])
            # 2. share keys
            got = await self._stage(
                r,
                "secagg_share_keys",
                u1,
                lambda s: msg(broadcast=wire.broadcast_to_pb(bcast.for_client(s))),
                done,
            )
            for slot, res in got:
                self._take(
                    done,
                    slot,
                    lambda res=res, slot=slot: server.receive_share_keys(
                        wire.share_keys_from_pb(slot, _body(res.secagg, "shares"))
                    ),
                )
            routed = server.close_share_keys()
            # 3. masked training
            got = await self._stage(
                r,
                "secagg_masked_train",
                sorted(routed),
                lambda s: msg(shares=wire.shares_to_pb(routed[s].shares)),
                done,
                tensors=e._task_tensors(r),
                expected={"masked": ("uint32", (p + 1,))},
            )
            trained: dict[int, Any] = {}
            for slot, res in got:
                self._take(
                    done,
                    slot,
                    lambda res=res, slot=slot: server.receive_masked_input(
                        MaskedInput(slot, res.tensors["masked"])
                    ),
                )
                trained[slot] = res
            for cid, why in server.excluded.items():
                done.rejected[e.slots[cid]] = f"malformed masked update: {why}"
            req = server.close_masked_input()
            # 4. unmask
            got = await self._stage(
                r,
                "secagg_unmask",
                list(req.survivors),
                lambda _s: msg(unmask_request=wire.request_to_pb(req)),
                done,
            )
            for slot, res in got:
                self._take(
                    done,
                    slot,
                    lambda res=res, slot=slot: server.receive_unmask(
                        wire.response_from_pb(slot, _body(res.secagg, "unmask_response"))
                    ),
                )
            total = await asyncio.to_thread(server.close_unmasking)
        except SecAggAborted as err:
            done.failure = f"secure aggregation aborted ({err})"
            return done, None
        survivors = list(req.survivors)
        done.results = [(s, trained[s]) for s in survivors]
        decoded = dequantise_sum(total, len(survivors), rng, sa.bits)
        weight_share = float(decoded[-1]) / rng
        if not weight_share > 0.0:
            done.failure = "the survivors' weights sum to zero"
            return done, None
        update = torch.as_tensor(decoded[:-1] / weight_share, dtype=torch.float32)
        outcome = await asyncio.to_thread(self._apply, update, [trained[s] for s in survivors])
        return done, outcome

    async def _stage(
        self,
        r: int,
        kind: str,
        slots: list[int],
        secagg: Any,
        done: Collected,
        tensors: dict[str, np.ndarray] | None = None,
        expected: dict[str, tuple[str, tuple[int, ...]]] | None = None,
    ) -> list[tuple[int, Any]]:
        got = await self.e.dispatch(r, kind, slots, tensors or {}, expected or {}, secagg)
        done.rejected |= got.rejected
        return got.results

    def _take(self, done: Collected, slot: int, receive: Any) -> None:
        """Feed one message to the protocol; a malformed one drops its sender."""
        try:
            receive()
        except (ProtocolError, ValueError) as err:
            done.rejected[self.e.slots[slot]] = f"secure aggregation message refused: {err}"

    def _apply(
        self, update: torch.Tensor, results: list[Any]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], float, dict[str, str]]:
        e = self.e
        assert e.state is not None and e.algorithm is not None
        st, algo = e.state, e.algorithm
        n = torch.tensor([float(x.num_samples) for x in results])
        loss = torch.tensor([float(x.train_loss) for x in results])
        w = n if e.cfg.training.weighting == "samples" else torch.ones_like(n)
        train_loss = float((w * loss).sum() / w.sum())
        out = ClientOutput(torch.zeros((1, update.numel())), n[:1], torch.ones(1), loss[:1])
        saved = algo.aggregator
        algo.aggregator = _KnownUpdate(update)
        try:
            new_params, new_state = algo.server_update(
                st.params, st.server_state, out, w[:1], len(e.slots)
            )
        finally:
            algo.aggregator = saved
        return new_params.clone(), {k: v.clone() for k, v in new_state.items()}, train_loss, {}


def _body(m: Any, field: str) -> Any:
    if m is None or m.WhichOneof("body") != field:
        raise ValueError(f"expected a '{field}' secure-aggregation message")
    return getattr(m, field)


def _checked_keys(slot: int, m: Any) -> Any:
    keys = wire.keys_from_pb(_body(m, "keys"))
    if keys.client_id != slot:
        raise ValueError(f"keys advertised for client {keys.client_id}, not {slot}")
    return keys
