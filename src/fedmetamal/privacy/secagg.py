"""Secure aggregation (Bonawitz et al., CCS 2017; SecAgg+ of Bell et al., CCS 2020), semi-honest.

Clients and server never share memory: every step consumes and returns plain dataclass
messages (bytes / ints / numpy arrays), so the same objects run in-process (see
:func:`secure_sum`) or behind a transport. Stages:

0. advertise   - each client sends X25519 public keys c_pk (share encryption), s_pk (masks).
1. share_keys  - each client Shamir-shares its self-mask seed b_u and its s private key
                 t-of-|N(u)|+1 among itself and its neighbours N(u); each share is AES-GCM
                 encrypted to its recipient and routed by the server.
2. masked_input- y_u = x_u + PRG(b_u) + sum_{v in N(u), v>u} PRG(s_uv)
                 - sum_{v in N(u), v<u} PRG(s_uv) mod 2^32.
3. unmasking   - survivors reveal b-shares of surviving neighbours and s-key shares of
                 dropped neighbours (never both for one client); the server strips all masks.

Graphs: with ``neighbours=None`` N(u) is every other advertiser (the original protocol).
With ``neighbours=k`` (SecAgg+) N(u) comes from a random Harary-style k-regular graph over
the advertisers, derived from a 32-byte public ``graph_seed`` that the server broadcasts
with the keys; every client recomputes its own neighbourhood and refuses a broadcast that
disagrees with it. Key agreement, masking and sharing then cost O(k) instead of O(n) per
client, and the threshold t applies within each closed neighbourhood {u} ∪ N(u).

Not implemented: the consistency-check round and signatures needed against an actively
malicious server, and share verification.
"""

from __future__ import annotations

import logging
import math
import os
import struct
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import ParamSpec, TypeVar

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from fedmetamal.privacy import secagg_ring
from fedmetamal.privacy.shamir import (
    SMALL_PRIME,
    batch_chunks,
    reconstruct_bytes_batch,
    share_bytes_batch,
)

logger = logging.getLogger(__name__)
_P = ParamSpec("_P")
_T = TypeVar("_T")

STAGES = ("advertise", "share_keys", "masked_input", "unmasking")
SECRET_BYTES = 32
GRAPH_SEED_BYTES = 32
_N_CHUNKS = batch_chunks(SECRET_BYTES)  # field elements (p = 2^31 - 1) per shared secret
_ELEM = ">u4"  # wire encoding of one field element
_SHARE_LEN = 4 * _N_CHUNKS  # bytes of one secret's share
_HEADER = struct.Struct(">QQQ")  # sender, recipient, share x
_PLAINTEXT_LEN = _HEADER.size + 2 * _SHARE_LEN
_INFO_MASK = b"fedmetamal/secagg/v1/mask"
_INFO_ENC = b"fedmetamal/secagg/v1/share-enc"
_INFO_GRAPH = b"fedmetamal/secagg/v1/graph"
_ZERO_NONCE = b"\x00" * 16
_ID_BYTES = 4  # wire size of a client id / share point in byte accounting


class SecAggAborted(RuntimeError):
    """Raised when fewer than ``threshold`` clients remain, so the round cannot finish.

    ``reason`` replaces the default message for aborts of another kind (a SecAgg+ survivor
    graph that fell apart); ``alive`` is then the size of one surviving component.
    """

    def __init__(self, stage: str, alive: int, threshold: int, reason: str | None = None) -> None:
        msg = reason or f"{alive} alive < threshold {threshold}"
        super().__init__(f"secagg aborted at {stage}: {msg}")
        self.stage = stage
        self.alive = alive
        self.threshold = threshold


class ProtocolError(RuntimeError):
    """A message that an honest party must refuse (wrong stage, inconsistent request)."""


# --------------------------------------------------------------------------- messages


@dataclass(frozen=True)
class AdvertiseKeys:
    """Client -> server: the two raw 32-byte X25519 public keys."""

    client_id: int
    c_pk: bytes
    s_pk: bytes


@dataclass(frozen=True)
class KeyBroadcast:
    """Server -> clients: advertised keys sorted by id, plus the SecAgg+ graph parameters.

    ``members`` (sorted advertiser ids), ``neighbours`` (k) and ``graph_seed`` are empty /
    None for the complete graph. With SecAgg+ a client only needs the keys of its own
    closed neighbourhood: see :meth:`for_client`.
    """

    keys: tuple[AdvertiseKeys, ...]
    members: tuple[int, ...] = ()
    neighbours: int | None = None
    graph_seed: bytes = b""

    def for_client(self, client_id: int) -> KeyBroadcast:
        """The O(k) view a SecAgg+ server sends to one client (the full one if complete)."""
        if self.neighbours is None:
            return self
        keep = neighbour_graph(self.members, self.neighbours, self.graph_seed)[client_id]
        keep = keep | {client_id}
        return KeyBroadcast(
            tuple(k for k in self.keys if k.client_id in keep),
            self.members,
            self.neighbours,
            self.graph_seed,
        )


@dataclass(frozen=True)
class EncryptedShare:
    """One AES-GCM ciphertext of (b_u share, s_sk_u share) from sender to recipient."""

    sender: int
    recipient: int
    nonce: bytes
    ciphertext: bytes


@dataclass(frozen=True)
class ShareKeysMsg:
    """Client -> server: encrypted shares for each of the sender's neighbours."""

    client_id: int
    shares: tuple[EncryptedShare, ...]


@dataclass(frozen=True)
class RoutedShares:
    """Server -> one client: the ciphertexts addressed to it by the members of U2."""

    recipient: int
    shares: tuple[EncryptedShare, ...]


@dataclass(frozen=True)
class MaskedInput:
    """Client -> server: the masked uint32 vector."""

    client_id: int
    y: np.ndarray


@dataclass(frozen=True)
class UnmaskRequest:
    """Server -> survivors: who survived (reveal b) and who dropped (reveal s key)."""

    survivors: tuple[int, ...]
    dropped: tuple[int, ...]


@dataclass(frozen=True)
class RevealedShare:
    """A decrypted share of ``owner``'s secret; ``ys`` packs big-endian 4-byte field elements."""

    owner: int
    x: int
    ys: bytes


@dataclass(frozen=True)
class UnmaskResponse:
    """Survivor -> server: b-shares of survivors and s-key shares of dropped clients."""

    client_id: int
    b_shares: tuple[RevealedShare, ...]
    sk_shares: tuple[RevealedShare, ...]


# --------------------------------------------------------------------------- crypto


def _hkdf(secret: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(secret)


@lru_cache(maxsize=4)
def _zeros(nbytes: int) -> bytes:
    return bytes(nbytes)


def _keystream(seed: bytes, length: int) -> np.ndarray:
    """Read-only view of ``length`` ChaCha20 keystream words (zero nonce)."""
    enc = Cipher(algorithms.ChaCha20(seed, _ZERO_NONCE), mode=None).encryptor()
    return np.frombuffer(enc.update(_zeros(4 * length)), dtype="<u4")


def prg_words(seed: bytes, length: int) -> np.ndarray:
    """Expand a 32-byte seed into ``length`` uint32 words with ChaCha20 (zero nonce).

    A zero nonce is safe because every seed is fresh per round and used for one stream.
    """
    return _keystream(seed, length).astype(np.uint32)


def _apply_prg(acc: np.ndarray, seed: bytes, sign: int) -> None:
    """acc += sign * PRG(seed) mod 2^32, in place (no temporary mask arrays)."""
    ks = _keystream(seed, acc.shape[0])
    if sign > 0:
        np.add(acc, ks, out=acc, casting="unsafe")
    else:
        np.subtract(acc, ks, out=acc, casting="unsafe")


def _mask_seed(sk: X25519PrivateKey, peer_pk: bytes) -> bytes:
    return _hkdf(sk.exchange(X25519PublicKey.from_public_bytes(peer_pk)), _INFO_MASK)


def _split_share(owner: int, x: int, body: bytes) -> tuple[RevealedShare, RevealedShare]:
    return RevealedShare(owner, x, body[:_SHARE_LEN]), RevealedShare(owner, x, body[_SHARE_LEN:])


def _xs(client_id: int) -> int:
    return client_id + 1  # Shamir evaluation point; 0 is the secret


def _pair_sign(u: int, v: int) -> int:
    """+1 if u adds PRG(s_uv) (v > u), -1 if it subtracts it."""
    return 1 if v > u else -1


# --------------------------------------------------------------------------- graph


def suggested_neighbours(n_clients: int) -> int | None:
    """k = 2 * ceil(log2 n) (Bell et al.'s O(log n) scale), or None where that is complete."""
    if n_clients < 2:
        return None
    k = 2 * math.ceil(math.log2(n_clients))
    return None if k >= n_clients - 1 else k


def _seeded_permutation(items: Sequence[int], seed: bytes) -> list[int]:
    """Fisher-Yates driven by ChaCha20(HKDF(seed)); identical on every party and platform."""
    out = list(items)
    m = len(out)
    if m < 2:
        return out
    words = _keystream(_hkdf(seed, _INFO_GRAPH), 2 * m).astype(np.uint64)
    rand = (words[0::2] << np.uint64(32)) | words[1::2]  # 64-bit draws: modulo bias < 2^-50
    for i in range(m - 1, 0, -1):
        j = int(rand[i]) % (i + 1)
        out[i], out[j] = out[j], out[i]
    return out


@lru_cache(maxsize=64)
def _graph_cached(members: tuple[int, ...], k: int, seed: bytes) -> dict[int, frozenset[int]]:
    m = len(members)
    if k >= m - 1:
        every = frozenset(members)
        return {u: every - {u} for u in members}
    ring = _seeded_permutation(members, seed)
    adj: dict[int, set[int]] = {u: set() for u in members}
    offsets = list(range(1, k // 2 + 1))
    if k % 2:
        offsets.append(m // 2)  # odd k: add the "diameter" chord (degree k+1 if m is odd)
    for pos, u in enumerate(ring):
        for d in offsets:
            v = ring[(pos + d) % m]
            adj[u].add(v)
            adj[v].add(u)
    return {u: frozenset(vs) for u, vs in adj.items()}


def neighbour_graph(members: Sequence[int], k: int, seed: bytes) -> Mapping[int, frozenset[int]]:
    """Random Harary-style graph H(k, m) over ``members``: a seeded random ring where each
    node links to the k/2 nearest on each side (plus a diameter chord if k is odd).

    Degree is k (k+1 for some nodes when k and m are odd) and the graph is k-connected,
    so no small set of dropouts splits it; it is complete when k >= m - 1. The result
    depends only on (sorted members, k, seed), which every client can recompute.
    """
    if k < 2:
        raise ValueError("neighbours must be >= 2 for a connected graph")
    if len(seed) != GRAPH_SEED_BYTES:
        raise ValueError(f"graph seed must be {GRAPH_SEED_BYTES} bytes")
    return _graph_cached(tuple(sorted(set(members))), k, bytes(seed))


def check_secagg_params(n_clients: int, threshold: int, neighbours: int | None, bits: int) -> None:
    """Raise ValueError saying what to change if these settings cannot run or could wrap."""
    secagg_ring.check_capacity(n_clients, bits)
    if threshold < 1:
        raise ValueError(f"threshold must be >= 1, got {threshold}")
    if threshold > n_clients:
        raise ValueError(
            f"threshold {threshold} exceeds the cohort size {n_clients}: lower the threshold "
            f"to at most {n_clients} (a majority, {n_clients // 2 + 1}, is usual)"
        )
    if neighbours is None:
        return
    if neighbours < 2:
        raise ValueError(
            f"neighbours={neighbours}: use >= 2 (a connected graph) or None for the complete graph"
        )
    k_eff = min(neighbours, n_clients - 1)
    if threshold > k_eff + 1:
        raise ValueError(
            f"threshold {threshold} exceeds the SecAgg+ neighbourhood size {k_eff + 1} "
            f"(a client and its {k_eff} neighbours): lower the threshold to at most "
            f"{k_eff + 1} (a majority, {(k_eff + 1) // 2 + 1}, is usual) or raise neighbours"
        )


# --------------------------------------------------------------------------- client


class SecAggClient:
    """One participant's state machine; call the stage methods in order.

    ``neighbours``/``graph_seed`` are the public round parameters: a SecAgg+ client refuses
    a broadcast with another k, or another seed when one was fixed in advance.
    """

    def __init__(
        self,
        client_id: int,
        threshold: int,
        vector_len: int,
        randbytes: Callable[[int], bytes] = os.urandom,
        *,
        neighbours: int | None = None,
        graph_seed: bytes | None = None,
    ) -> None:
        if client_id < 0:
            raise ValueError("client ids must be non-negative")
        self.client_id = client_id
        self.threshold = threshold
        self.vector_len = vector_len
        self.neighbours = neighbours
        self._graph_seed = graph_seed
        self._rand = randbytes
        self._c_sk = X25519PrivateKey.from_private_bytes(randbytes(32))
        self._s_sk = X25519PrivateKey.from_private_bytes(randbytes(32))
        self._stage = 0
        self._keys: dict[int, AdvertiseKeys] = {}
        self._known: frozenset[int] = frozenset()  # U1 as announced by the server
        self._nbrs: frozenset[int] = frozenset()  # N(u), excluding u
        self._aead: dict[int, AESGCM] = {}  # per-neighbour share keys, derived once
        self._b = b""
        self._own = b""  # this client's own share row of (b_u, s_sk), wire-encoded
        self._inbox: dict[int, EncryptedShare] = {}
        self._u2: frozenset[int] = frozenset()

    def _expect(self, stage: int) -> None:
        if self._stage != stage:
            raise ProtocolError(f"client {self.client_id}: stage {STAGES[stage]} out of order")
        self._stage = stage + 1

    def advertise(self) -> AdvertiseKeys:
        """Stage 0: publish raw public keys."""
        self._expect(0)
        return self.advertise_copy()

    def advertise_copy(self) -> AdvertiseKeys:
        """The keys this client advertised (used to check the broadcast)."""
        return AdvertiseKeys(
            self.client_id,
            self._c_sk.public_key().public_bytes_raw(),
            self._s_sk.public_key().public_bytes_raw(),
        )

    def _cipher(self, peer: int) -> AESGCM:
        aead = self._aead.get(peer)
        if aead is None:
            peer_pk = X25519PublicKey.from_public_bytes(self._keys[peer].c_pk)
            aead = AESGCM(_hkdf(self._c_sk.exchange(peer_pk), _INFO_ENC))
            self._aead[peer] = aead
        return aead

    def _neighbourhood(self, bcast: KeyBroadcast, keys: dict[int, AdvertiseKeys]) -> frozenset[int]:
        """Check the broadcast's graph parameters and return N(u)."""
        if self.neighbours is None:
            if bcast.neighbours is not None or bcast.members or bcast.graph_seed:
                raise ProtocolError("SecAgg+ graph in a complete-graph round")
            if len(keys) < self.threshold:
                raise SecAggAborted("advertise", len(keys), self.threshold)
            self._known = frozenset(keys)
            return frozenset(keys) - {self.client_id}
        if bcast.neighbours != self.neighbours:
            raise ProtocolError(f"broadcast graph degree {bcast.neighbours} != {self.neighbours}")
        if len(bcast.graph_seed) != GRAPH_SEED_BYTES or (
            self._graph_seed is not None and bcast.graph_seed != self._graph_seed
        ):
            raise ProtocolError("broadcast graph seed is malformed or not the agreed one")
        members = bcast.members
        if list(members) != sorted(set(members)) or self.client_id not in members:
            raise ProtocolError("broadcast member list must be sorted, unique and include me")
        if not set(keys) <= set(members):
            raise ProtocolError("broadcast carries keys of non-members")
        if len(members) < self.threshold:
            raise SecAggAborted("advertise", len(members), self.threshold)
        nbrs = neighbour_graph(members, self.neighbours, bcast.graph_seed)[self.client_id]
        missing = nbrs - set(keys)
        if missing:
            raise ProtocolError(f"broadcast graph inconsistent: no keys for neighbours {missing}")
        if len(nbrs) + 1 < self.threshold:
            raise SecAggAborted("advertise", len(nbrs) + 1, self.threshold)
        self._known = frozenset(members)
        return nbrs

    def share_keys(self, bcast: KeyBroadcast) -> ShareKeysMsg:
        """Stage 1: check the broadcast, share b_u and s_sk among {u} ∪ N(u), encrypt each."""
        self._expect(1)
        keys = {k.client_id: k for k in bcast.keys}
        if len(keys) != len(bcast.keys):
            raise ProtocolError("duplicate client ids in broadcast")
        nbrs = self._neighbourhood(bcast, keys)
        mine = keys.get(self.client_id)
        if mine is None or mine != self.advertise_copy():
            raise ProtocolError("own keys missing or altered in broadcast")
        closed = sorted(nbrs | {self.client_id})
        pks = [keys[v].c_pk for v in closed] + [keys[v].s_pk for v in closed]
        if len(set(pks)) != len(pks) or any(len(p) != 32 for p in pks):
            raise ProtocolError("public keys must be distinct 32-byte values")
        self._keys = {v: keys[v] for v in closed}
        self._nbrs = nbrs
        xs = [_xs(i) for i in closed]
        self._b = self._rand(SECRET_BYTES)
        secrets = [self._b, self._s_sk.private_bytes_raw()]
        rows = share_bytes_batch(secrets, self.threshold, xs, self._rand).astype(_ELEM)
        nonces = self._rand(12 * len(nbrs))
        out = []
        i = 0
        for v, x, row in zip(closed, xs, rows, strict=True):
            if v == self.client_id:
                self._own = row.tobytes()
                continue
            pt = _HEADER.pack(self.client_id, v, x) + row.tobytes()
            nonce = nonces[12 * i : 12 * i + 12]
            i += 1
            ct = self._cipher(v).encrypt(nonce, pt, _HEADER.pack(self.client_id, v, 0))
            out.append(EncryptedShare(self.client_id, v, nonce, ct))
        return ShareKeysMsg(self.client_id, tuple(out))

    def masked_input(self, routed: RoutedShares, x: np.ndarray) -> MaskedInput:
        """Stage 2: keep the routed ciphertexts and send x masked by self and pair masks."""
        self._expect(2)
        if routed.recipient != self.client_id:
            raise ProtocolError("shares routed to the wrong client")
        inbox: dict[int, EncryptedShare] = {}
        for es in routed.shares:
            if es.recipient != self.client_id or es.sender not in self._nbrs or es.sender in inbox:
                raise ProtocolError(f"bad routed share from {es.sender}")
            inbox[es.sender] = es
        self._inbox = inbox
        self._u2 = frozenset(inbox) | {self.client_id}
        if len(self._u2) < self.threshold:
            raise SecAggAborted("share_keys", len(self._u2), self.threshold)
        x = np.asarray(x)
        if x.dtype != np.uint32 or x.shape != (self.vector_len,):
            raise ValueError(f"x must be uint32 of shape ({self.vector_len},)")
        y = x.copy()
        _apply_prg(y, self._b, 1)
        for v in sorted(inbox):
            _apply_prg(y, _mask_seed(self._s_sk, self._keys[v].s_pk), _pair_sign(self.client_id, v))
        return MaskedInput(self.client_id, y)

    def _open(self, owner: int) -> tuple[RevealedShare, RevealedShare]:
        """(b-share, s-key-share) of ``owner`` held by this client; decrypts and checks it."""
        if owner == self.client_id:
            return _split_share(owner, _xs(owner), self._own)
        es = self._inbox[owner]
        aad = _HEADER.pack(owner, self.client_id, 0)
        pt = self._cipher(owner).decrypt(es.nonce, es.ciphertext, aad)
        if len(pt) != _PLAINTEXT_LEN:
            raise ProtocolError(f"share from {owner} has wrong length")
        u, v, x = _HEADER.unpack_from(pt)
        if (u, v, x) != (owner, self.client_id, _xs(self.client_id)):
            raise ProtocolError(f"share from {owner} has a mismatched header")
        body = pt[_HEADER.size :]
        if int(np.frombuffer(body, dtype=_ELEM).max()) >= SMALL_PRIME:
            raise ProtocolError(f"share from {owner} holds an out-of-field value")
        return _split_share(owner, x, body)

    def unmask(self, req: UnmaskRequest) -> UnmaskResponse:
        """Stage 3: reveal b-shares of surviving and s-key shares of dropped neighbours.

        Never both for one client: the request must list them disjointly.
        """
        self._expect(3)
        surv, drop = set(req.survivors), set(req.dropped)
        if surv & drop:
            raise ProtocolError(f"request asks for both secrets of {sorted(surv & drop)}")
        if len(surv) != len(req.survivors) or len(drop) != len(req.dropped):
            raise ProtocolError("duplicate ids in unmask request")
        if self.client_id not in surv:
            raise ProtocolError("unmask request sent to a non-survivor")
        closed = self._nbrs | {self.client_id}
        local_surv, local_drop = surv & closed, drop & closed
        if len(local_surv) < self.threshold:
            raise SecAggAborted("masked_input", len(local_surv), self.threshold)
        if not (surv | drop) <= self._known or not (local_surv | local_drop) <= self._u2:
            raise ProtocolError("unmask request names clients outside U2")
        b = tuple(self._open(w)[0] for w in sorted(local_surv))
        sk = tuple(self._open(w)[1] for w in sorted(local_drop))
        return UnmaskResponse(self.client_id, b, sk)


# --------------------------------------------------------------------------- server


class SecAggServer:
    """Routes messages, tracks the surviving sets U1 ⊇ U2 ⊇ U3 ⊇ U4, and unmasks the sum.

    With ``neighbours=k`` the server draws the SecAgg+ graph from ``graph_seed`` (fresh
    random bytes by default) and enforces the threshold inside every neighbourhood.
    """

    def __init__(
        self,
        threshold: int,
        vector_len: int,
        *,
        neighbours: int | None = None,
        graph_seed: bytes | None = None,
    ) -> None:
        if threshold < 1:
            raise ValueError("threshold must be >= 1")
        if neighbours is not None:
            if neighbours < 2:
                raise ValueError("neighbours must be >= 2 (or None for the complete graph)")
            if threshold > neighbours + 1:
                raise ValueError(
                    f"threshold {threshold} exceeds the neighbourhood size {neighbours + 1}"
                )
        if graph_seed is not None and len(graph_seed) != GRAPH_SEED_BYTES:
            raise ValueError(f"graph_seed must be {GRAPH_SEED_BYTES} bytes")
        self.threshold = threshold
        self.vector_len = vector_len
        self.neighbours = neighbours
        self.graph_seed = (
            (graph_seed or os.urandom(GRAPH_SEED_BYTES)) if neighbours is not None else b""
        )
        self._stage = 0
        self._adv: dict[int, AdvertiseKeys] = {}
        self._nbrs: Mapping[int, frozenset[int]] = {}
        self._shares: dict[int, ShareKeysMsg] = {}
        self._masked: dict[int, np.ndarray] = {}
        self._responses: dict[int, UnmaskResponse] = {}
        self._pool: dict[str, dict[int, list[RevealedShare]]] = {"b": {}, "sk": {}}
        self._request: UnmaskRequest | None = None
        self.excluded: dict[int, str] = {}

    def _in(self, stage: int) -> None:
        if self._stage != stage:
            raise ProtocolError(f"server not in stage {STAGES[stage]}")

    def _check_alive(self, stage: int, alive: int) -> None:
        if alive < self.threshold:
            raise SecAggAborted(STAGES[stage], alive, self.threshold)

    def _check_neighbourhoods(self, stage: int, alive: set[int], owners: Sequence[int]) -> None:
        """SecAgg+: every owner's secret needs >= t share holders in ``alive``."""
        if self.neighbours is None:
            return
        for u in owners:
            holders = self._nbrs[u] & alive
            if u in alive:
                holders = holders | {u}
            if len(holders) < self.threshold:
                logger.warning("secagg+: neighbourhood of %d has %d < t alive", u, len(holders))
                raise SecAggAborted(STAGES[stage], len(holders), self.threshold)

    def _check_connected(self, u3: set[int]) -> None:
        """SecAgg+: abort before any b_u is revealed if the graph induced on U3 is split.

        Unmasking strips every mask except those on edges between survivors, so each
        connected component of U3 would reveal its own partial sum; the complete graph is
        always connected.
        """
        if self.neighbours is None or not u3:
            return
        start = min(u3)
        seen, todo = {start}, [start]
        while todo:
            for v in self._nbrs[todo.pop()] & u3:
                if v not in seen:
                    seen.add(v)
                    todo.append(v)
        if len(seen) != len(u3):
            reason = (
                f"survivor graph is disconnected ({len(seen)} of {len(u3)} reachable); "
                "unmasking would reveal partial sums"
            )
            logger.warning("secagg+: %s", reason)
            raise SecAggAborted(STAGES[2], len(seen), self.threshold, reason)

    def neighbours_of(self, client_id: int) -> frozenset[int]:
        """N(u) in this round's graph (valid once stage 0 has closed)."""
        return self._nbrs[client_id]

    def receive_advertise(self, msg: AdvertiseKeys) -> None:
        """Collect one client's keys (first message per id wins)."""
        self._in(0)
        if msg.client_id in self._adv or msg.client_id < 0:
            raise ProtocolError(f"duplicate or invalid advertise from {msg.client_id}")
        self._adv[msg.client_id] = msg

    def close_advertise(self) -> KeyBroadcast:
        """End stage 0: U1 = advertisers; fix the graph over U1.

        The returned broadcast holds every key; with SecAgg+ send ``bcast.for_client(u)``.
        """
        self._in(0)
        self._check_alive(0, len(self._adv))
        self._stage = 1
        ids = tuple(sorted(self._adv))
        keys = tuple(self._adv[i] for i in ids)
        if self.neighbours is None:
            every = frozenset(ids)
            self._nbrs = {u: every - {u} for u in ids}
            return KeyBroadcast(keys)
        self._nbrs = neighbour_graph(ids, self.neighbours, self.graph_seed)
        return KeyBroadcast(keys, ids, self.neighbours, self.graph_seed)

    def receive_share_keys(self, msg: ShareKeysMsg) -> None:
        """Collect one client's encrypted shares (one per neighbour at most)."""
        self._in(1)
        if msg.client_id not in self._adv or msg.client_id in self._shares:
            raise ProtocolError(f"unexpected share_keys from {msg.client_id}")
        nbrs = self._nbrs[msg.client_id]
        seen: set[int] = set()
        for es in msg.shares:
            if es.sender != msg.client_id or es.recipient not in nbrs or es.recipient in seen:
                raise ProtocolError(f"bad encrypted share from {msg.client_id}")
            seen.add(es.recipient)
        self._shares[msg.client_id] = msg

    def close_share_keys(self) -> dict[int, RoutedShares]:
        """End stage 1: U2 = senders; route each member the ciphertexts addressed to it."""
        self._in(1)
        self._check_alive(1, len(self._shares))
        u2 = sorted(self._shares)
        self._check_neighbourhoods(1, set(u2), u2)
        self._stage = 2
        routed: dict[int, list[EncryptedShare]] = {v: [] for v in u2}
        for u in u2:
            for es in self._shares[u].shares:
                if es.recipient in routed:
                    routed[es.recipient].append(es)
        return {v: RoutedShares(v, tuple(lst)) for v, lst in routed.items()}

    def receive_masked_input(self, msg: MaskedInput) -> None:
        """Collect a masked vector; malformed ones are excluded (client treated as dropped)."""
        self._in(2)
        cid = msg.client_id
        if cid not in self._shares or cid in self._masked or cid in self.excluded:
            raise ProtocolError(f"unexpected masked input from {cid}")
        y = msg.y
        reason = None
        if not isinstance(y, np.ndarray):
            reason = f"not an ndarray ({type(y).__name__})"
        elif y.dtype != np.uint32:
            reason = f"dtype {y.dtype} != uint32"
        elif y.shape != (self.vector_len,):
            reason = f"shape {y.shape} != ({self.vector_len},)"
        if reason is not None:
            logger.warning("secagg: excluding client %d: %s", cid, reason)
            self.excluded[cid] = reason
            return
        self._masked[cid] = y

    def close_masked_input(self) -> UnmaskRequest:
        """End stage 2: U3 = valid masked inputs; everyone else in U2 counts as dropped."""
        self._in(2)
        self._check_alive(2, len(self._masked))
        u3 = set(self._masked)
        dropped = sorted(set(self._shares) - u3)
        # Survivors need t holders of b_u; dropped clients with a surviving neighbour need
        # t holders of their mask key (those without one left no mask in the sum).
        self._check_neighbourhoods(2, u3, sorted(u3))
        self._check_neighbourhoods(2, u3, [v for v in dropped if self._nbrs[v] & u3])
        self._check_connected(u3)
        self._stage = 3
        self._request = UnmaskRequest(tuple(sorted(u3)), tuple(dropped))
        return self._request

    def receive_unmask(self, msg: UnmaskResponse) -> None:
        """Collect one survivor's revealed shares, indexed by owner."""
        self._in(3)
        assert self._request is not None
        cid = msg.client_id
        if cid not in self._request.survivors or cid in self._responses:
            raise ProtocolError(f"unexpected unmask response from {cid}")
        closed = self._nbrs[cid] | {cid}
        for rs in (*msg.b_shares, *msg.sk_shares):
            if rs.owner not in closed or rs.x != _xs(cid) or len(rs.ys) != _SHARE_LEN:
                raise ProtocolError(f"unmask response from {cid} has a foreign or bad share")
        self._responses[cid] = msg
        for kind, shares in (("b", msg.b_shares), ("sk", msg.sk_shares)):
            for rs in shares:
                self._pool[kind].setdefault(rs.owner, []).append(rs)

    def _rebuild(self, owner: int, kind: str) -> bytes:
        # Lowest t points: with few dropouts most owners share one point set, so the
        # Lagrange coefficients (cached in shamir) are computed once and reused.
        pool = sorted(self._pool[kind].get(owner, []), key=lambda rs: rs.x)
        if len(pool) < self.threshold:
            raise SecAggAborted("unmasking", len(pool), self.threshold)
        use = pool[: self.threshold]
        ys = np.frombuffer(b"".join(rs.ys for rs in use), dtype=_ELEM).reshape(len(use), -1)
        try:
            return reconstruct_bytes_batch([rs.x for rs in use], ys, [SECRET_BYTES])[0]
        except ValueError as exc:
            raise ProtocolError(f"shares of {owner} do not reconstruct: {exc}") from exc

    def close_unmasking(self) -> np.ndarray:
        """End stage 3: rebuild secrets, strip masks, return the uint32 sum over U3."""
        self._in(3)
        assert self._request is not None
        self._check_alive(3, len(self._responses))
        self._stage = 4
        survivors = self._request.survivors
        total = np.zeros(self.vector_len, dtype=np.uint32)
        for u in survivors:
            np.add(total, self._masked[u], out=total)
            _apply_prg(total, self._rebuild(u, "b"), -1)
        u3 = set(survivors)
        for v in self._request.dropped:
            masked_with = sorted(self._nbrs[v] & u3)
            if not masked_with:
                continue
            sk_v = X25519PrivateKey.from_private_bytes(self._rebuild(v, "sk"))
            if sk_v.public_key().public_bytes_raw() != self._adv[v].s_pk:
                raise ProtocolError(f"reconstructed key of {v} does not match its public key")
            for u in masked_with:
                # u added sign(u, v) * PRG(s_uv); undo it.
                _apply_prg(total, _mask_seed(sk_v, self._adv[u].s_pk), -_pair_sign(u, v))
        return total

    @property
    def survivors(self) -> tuple[int, ...]:
        """U3, valid once stage 2 has closed."""
        return self._request.survivors if self._request else ()


# --------------------------------------------------------------------------- accounting


def message_bytes(msg: object) -> int:
    """Payload bytes of one message as it would go on the wire.

    Counts keys, nonces, ciphertexts, vectors (``y.nbytes``: 4 * P for a valid one),
    4-byte share values, and 4 bytes per client id / share point that the content names.
    The sender's own id is left out (the transport knows it), as is framing.
    """
    if isinstance(msg, AdvertiseKeys):
        return len(msg.c_pk) + len(msg.s_pk)
    if isinstance(msg, KeyBroadcast):
        keys = sum(_ID_BYTES + len(k.c_pk) + len(k.s_pk) for k in msg.keys)
        graph = _ID_BYTES * len(msg.members) + len(msg.graph_seed)
        return keys + graph + (_ID_BYTES if msg.neighbours is not None else 0)
    if isinstance(msg, ShareKeysMsg | RoutedShares):
        return sum(_ID_BYTES + len(es.nonce) + len(es.ciphertext) for es in msg.shares)
    if isinstance(msg, MaskedInput):
        y = msg.y
        if isinstance(y, np.ndarray):
            return int(y.nbytes)
        return len(y) if isinstance(y, bytes | bytearray) else 0
    if isinstance(msg, UnmaskRequest):
        return _ID_BYTES * (len(msg.survivors) + len(msg.dropped))
    if isinstance(msg, UnmaskResponse):
        return sum(2 * _ID_BYTES + len(rs.ys) for rs in (*msg.b_shares, *msg.sk_shares))
    raise TypeError(f"not a secagg message: {type(msg).__name__}")


# --------------------------------------------------------------------------- driver


@dataclass
class SecAggResult:
    """Outcome of one in-process secure-aggregation round.

    ``survivors``, ``dropped`` and ``excluded`` partition the rows: a client that goes
    silent only at unmasking is a survivor (its input is in the sum). Byte counts are per
    stage: up = what clients send in it; down = what the server sends when closing it
    (advertise: key broadcast, share_keys: routed shares, masked_input: unmask request).
    """

    total: np.ndarray
    survivors: tuple[int, ...]
    dropped: tuple[int, ...]
    excluded: dict[int, str]
    bytes_up: dict[str, int] = field(default_factory=dict)
    bytes_down: dict[str, int] = field(default_factory=dict)
    seconds_client: float = 0.0
    seconds_server: float = 0.0


class _Clock:
    """Sums perf_counter time of the calls it wraps (one clock per side of the protocol)."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def __call__(self, fn: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - t0


def secure_sum(
    updates: np.ndarray,
    clip: float,
    threshold: int,
    *,
    dropouts: Mapping[str, set[int]] | None = None,
    bits: int = 16,
    seed: int | None = None,
    neighbours: int | None = None,
    tamper: Mapping[int, Callable[[np.ndarray], object]] | None = None,
) -> SecAggResult:
    """Run every stage in-process; return the decoded sum plus who/what/how-much accounting.

    ``dropouts[stage]`` lists rows that go silent at that stage (they send nothing from
    then on). ``neighbours=k`` selects SecAgg+ over a k-regular-ish graph. ``tamper[row]``
    replaces that row's masked vector before the server sees it (malformed ones are
    excluded with a logged reason). ``seed`` makes all key/mask/graph randomness
    reproducible — for tests and simulation only, it destroys secrecy.
    """
    updates = np.asarray(updates)
    if updates.ndim != 2:
        raise ValueError("updates must have shape (n, P)")
    n, p = updates.shape
    check_secagg_params(n, threshold, neighbours, bits)
    dropouts = dict(dropouts or {})
    unknown = set(dropouts) - set(STAGES)
    if unknown:
        raise ValueError(f"unknown dropout stages {sorted(unknown)}; use {STAGES}")
    tamper = dict(tamper or {})
    if seed is None:
        rand: Callable[[int], bytes] = os.urandom
    else:
        rand = np.random.default_rng(seed).bytes
    graph_seed = rand(GRAPH_SEED_BYTES) if neighbours is not None else None
    cc, sc = _Clock(), _Clock()
    up = dict.fromkeys(STAGES, 0)
    down = dict.fromkeys(STAGES, 0)

    def make(i: int) -> SecAggClient:
        return SecAggClient(i, threshold, p, rand, neighbours=neighbours, graph_seed=graph_seed)

    clients = {i: cc(make, i) for i in range(n)}
    server = sc(lambda: SecAggServer(threshold, p, neighbours=neighbours, graph_seed=graph_seed))
    alive = set(clients)

    def drop(stage: str) -> list[int]:
        alive.difference_update(dropouts.get(stage, set()))
        return sorted(alive)

    for i in drop("advertise"):
        msg = cc(clients[i].advertise)
        up["advertise"] += message_bytes(msg)
        sc(server.receive_advertise, msg)
    bcast = sc(server.close_advertise)
    views = {i: sc(bcast.for_client, i) for i in bcast.members or [k.client_id for k in bcast.keys]}
    down["advertise"] = sum(message_bytes(v) for v in views.values())
    for i in drop("share_keys"):
        msg = cc(clients[i].share_keys, views[i])
        up["share_keys"] += message_bytes(msg)
        sc(server.receive_share_keys, msg)
    routed = sc(server.close_share_keys)
    down["share_keys"] = sum(message_bytes(r) for r in routed.values())
    for i in drop("masked_input"):
        x = cc(secagg_ring.quantise, updates[i], clip, bits)
        msg = cc(clients[i].masked_input, routed[i], x)
        if i in tamper:
            msg = MaskedInput(i, tamper[i](msg.y))
        up["masked_input"] += message_bytes(msg)
        sc(server.receive_masked_input, msg)
    req = sc(server.close_masked_input)
    down["masked_input"] = message_bytes(req) * len(req.survivors)
    for i in drop("unmasking"):
        if i in req.survivors:
            msg = cc(clients[i].unmask, req)
            up["unmasking"] += message_bytes(msg)
            sc(server.receive_unmask, msg)
    total = sc(server.close_unmasking)
    survivors = tuple(req.survivors)
    out = sc(secagg_ring.dequantise_sum, total, len(survivors), clip, bits)
    excluded = dict(server.excluded)
    gone = set(range(n)) - set(survivors) - set(excluded)
    return SecAggResult(
        total=out,
        survivors=survivors,
        dropped=tuple(sorted(gone)),
        excluded=excluded,
        bytes_up=up,
        bytes_down=down,
        seconds_client=cc.seconds,
        seconds_server=sc.seconds,
    )


def run_secagg(
    updates: np.ndarray,
    clip: float,
    threshold: int,
    dropouts: Mapping[str, set[int]] | None = None,
    bits: int = 16,
    seed: int | None = None,
    *,
    neighbours: int | None = None,
) -> np.ndarray:
    """Float sum of the surviving clipped updates: ``secure_sum(...).total``."""
    return secure_sum(
        updates, clip, threshold, dropouts=dropouts, bits=bits, seed=seed, neighbours=neighbours
    ).total
