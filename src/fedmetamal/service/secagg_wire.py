"""The secure-aggregation state machines' messages (``privacy/secagg.py``) as protobuf, both
ways. Every field is checked on the way in, so a hostile message becomes a ``ValueError`` with
a reason, never a crash inside the protocol."""

from __future__ import annotations

from fedmetamal.privacy.secagg import (
    AdvertiseKeys,
    EncryptedShare,
    KeyBroadcast,
    RevealedShare,
    RoutedShares,
    ShareKeysMsg,
    UnmaskRequest,
    UnmaskResponse,
)
from fedmetamal.v1 import federation_pb2 as pb

#: Bounds on what one message may hold (a cohort far larger than any round here).
MAX_IDS = 100_000


def _id(v: int) -> int:
    if not 0 <= v < MAX_IDS:
        raise ValueError(f"client id {v} out of range")
    return int(v)


def keys_to_pb(k: AdvertiseKeys) -> pb.SecAggKeys:
    return pb.SecAggKeys(client_id=k.client_id, c_pk=k.c_pk, s_pk=k.s_pk)


def keys_from_pb(m: pb.SecAggKeys) -> AdvertiseKeys:
    if len(m.c_pk) != 32 or len(m.s_pk) != 32:
        raise ValueError("public keys must be 32 bytes")
    return AdvertiseKeys(_id(m.client_id), bytes(m.c_pk), bytes(m.s_pk))


def broadcast_to_pb(b: KeyBroadcast) -> pb.SecAggBroadcast:
    return pb.SecAggBroadcast(
        keys=[keys_to_pb(k) for k in b.keys],
        members=list(b.members),
        neighbours=b.neighbours or 0,
        graph_seed=b.graph_seed,
    )


def broadcast_from_pb(m: pb.SecAggBroadcast) -> KeyBroadcast:
    if len(m.keys) > MAX_IDS or len(m.members) > MAX_IDS:
        raise ValueError("broadcast too large")
    return KeyBroadcast(
        tuple(keys_from_pb(k) for k in m.keys),
        tuple(_id(v) for v in m.members),
        int(m.neighbours) or None,
        bytes(m.graph_seed),
    )


def _share_to_pb(s: EncryptedShare) -> pb.SecAggShare:
    return pb.SecAggShare(
        sender=s.sender, recipient=s.recipient, nonce=s.nonce, ciphertext=s.ciphertext
    )


def _share_from_pb(m: pb.SecAggShare) -> EncryptedShare:
    if len(m.nonce) != 12 or len(m.ciphertext) > 4096:
        raise ValueError("malformed encrypted share")
    return EncryptedShare(_id(m.sender), _id(m.recipient), bytes(m.nonce), bytes(m.ciphertext))


def shares_to_pb(shares: tuple[EncryptedShare, ...]) -> pb.SecAggShares:
    return pb.SecAggShares(shares=[_share_to_pb(s) for s in shares])


def share_keys_from_pb(client_id: int, m: pb.SecAggShares) -> ShareKeysMsg:
    if len(m.shares) > MAX_IDS:
        raise ValueError("too many shares")
    return ShareKeysMsg(client_id, tuple(_share_from_pb(s) for s in m.shares))


def routed_from_pb(recipient: int, m: pb.SecAggShares) -> RoutedShares:
    return RoutedShares(recipient, tuple(_share_from_pb(s) for s in m.shares))


def request_to_pb(r: UnmaskRequest) -> pb.SecAggUnmaskRequest:
    return pb.SecAggUnmaskRequest(survivors=list(r.survivors), dropped=list(r.dropped))


def request_from_pb(m: pb.SecAggUnmaskRequest) -> UnmaskRequest:
    return UnmaskRequest(tuple(_id(v) for v in m.survivors), tuple(_id(v) for v in m.dropped))


def _revealed_to_pb(r: RevealedShare) -> pb.SecAggRevealed:
    return pb.SecAggRevealed(owner=r.owner, x=r.x, ys=r.ys)


def _revealed_from_pb(m: pb.SecAggRevealed) -> RevealedShare:
    if len(m.ys) > 4096:
        raise ValueError("malformed revealed share")
    return RevealedShare(_id(m.owner), int(m.x), bytes(m.ys))


def response_to_pb(r: UnmaskResponse) -> pb.SecAggUnmaskResponse:
    return pb.SecAggUnmaskResponse(
        b_shares=[_revealed_to_pb(s) for s in r.b_shares],
        sk_shares=[_revealed_to_pb(s) for s in r.sk_shares],
    )


def response_from_pb(client_id: int, m: pb.SecAggUnmaskResponse) -> UnmaskResponse:
    if len(m.b_shares) + len(m.sk_shares) > MAX_IDS:
        raise ValueError("too many revealed shares")
    return UnmaskResponse(
        client_id,
        tuple(_revealed_from_pb(s) for s in m.b_shares),
        tuple(_revealed_from_pb(s) for s in m.sk_shares),
    )
