"""A participant's side of secure aggregation: one protocol state machine per session (a
round's attempt), kept in memory across the four stage tasks. Keys and masks come from the
operating system's randomness: nothing the server sees lets it recover one update."""

from __future__ import annotations

import numpy as np
import torch

from fedmetamal.config import RunConfig
from fedmetamal.privacy.secagg import SecAggClient
from fedmetamal.privacy.secagg_ring import quantise
from fedmetamal.service import secagg_wire as wire
from fedmetamal.sim.secure_round import SecureAggregator
from fedmetamal.v1 import federation_pb2 as pb

#: Sessions kept at once (a new round's session replaces the oldest).
MAX_SESSIONS = 4


class SecAggSessionLost(Exception):
    """The participant restarted mid-protocol: it drops out of this round's aggregation."""


class ParticipantSecAgg:
    def __init__(self) -> None:
        self._sessions: dict[str, tuple[SecAggClient, pb.SecAggParams]] = {}

    def _get(self, msg: pb.SecAggMessage) -> tuple[SecAggClient, pb.SecAggParams]:
        found = self._sessions.get(msg.session)
        if found is None:
            raise SecAggSessionLost(
                f"no secure-aggregation state for session {msg.session[:16]} (restarted "
                "mid-round); dropping out of this round"
            )
        return found

    def advertise(self, slot: int, msg: pb.SecAggMessage) -> pb.SecAggMessage:
        if msg.WhichOneof("body") != "params":
            raise ValueError("an advertise task without protocol parameters")
        p = msg.params
        client = SecAggClient(
            slot, int(p.threshold), int(p.vector_len), neighbours=int(p.neighbours) or None
        )
        while len(self._sessions) >= MAX_SESSIONS:
            self._sessions.pop(next(iter(self._sessions)))
        self._sessions[msg.session] = (client, p)
        return pb.SecAggMessage(session=msg.session, keys=wire.keys_to_pb(client.advertise()))

    def share_keys(self, msg: pb.SecAggMessage) -> pb.SecAggMessage:
        client, _ = self._get(msg)
        if msg.WhichOneof("body") != "broadcast":
            raise ValueError("a share-keys task without the key broadcast")
        out = client.share_keys(wire.broadcast_from_pb(msg.broadcast))
        return pb.SecAggMessage(session=msg.session, shares=wire.shares_to_pb(out.shares))

    def masked_input(
        self, msg: pb.SecAggMessage, cfg: RunConfig, delta: np.ndarray, num_samples: int
    ) -> np.ndarray:
        """The update encoded as the simulation's secure aggregator encodes it, masked."""
        client, p = self._get(msg)
        if msg.WhichOneof("body") != "shares":
            raise ValueError("a masked-input task without the routed shares")
        if not np.isfinite(delta).all():
            raise ValueError("the local update is not finite; not sending it")
        encoder = SecureAggregator(cfg.secagg, float(p.weight_bound), cfg.seed, lambda: 0)
        w = float(num_samples) if cfg.training.weighting == "samples" else 1.0
        rows, rng = encoder.encode(torch.from_numpy(delta).unsqueeze(0), torch.tensor([w]), None)
        if abs(rng - p.range) > 1e-12 * max(1.0, abs(rng)):
            raise ValueError(f"the server's encoding range {p.range} is not the run's {rng}")
        values = np.clip(rows.detach().to(torch.float64).numpy()[0], -rng, rng)
        x = quantise(values, rng, int(p.bits))
        routed = wire.routed_from_pb(client.client_id, msg.shares)
        return client.masked_input(routed, x).y

    def unmask(self, msg: pb.SecAggMessage) -> pb.SecAggMessage:
        client, _ = self._get(msg)
        if msg.WhichOneof("body") != "unmask_request":
            raise ValueError("an unmask task without the request")
        resp = client.unmask(wire.request_from_pb(msg.unmask_request))
        self._sessions.pop(msg.session, None)  # the protocol is over for this participant
        return pb.SecAggMessage(session=msg.session, unmask_response=wire.response_to_pb(resp))
