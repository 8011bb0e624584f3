"""Secure aggregation (Bonawitz et al., CCS 2017), semi-honest variant, as state machines.

Clients and server never share memory: every step consumes and returns plain dataclass
messages (bytes / ints / numpy arrays), so the same objects run in-process (see
:func:`run_secagg`) or behind a transport. Stages:

0. advertise   - each client sends X25519 public keys c_pk (share encryption), s_pk (masks).
1. share_keys  - each client Shamir-shares its self-mask seed b_u and its s private key
                 t-of-n; each share is AES-GCM encrypted to its recipient and routed by
                 the server.
2. masked_input- y_u = x_u + PRG(b_u) + sum_{v>u} PRG(s_uv) - sum_{v<u} PRG(s_uv) mod 2^32.
3. unmasking   - survivors reveal b-shares of survivors and s-key shares of dropped clients
                 (never both for one client); the server strips all masks.

Not implemented: SecAgg+ (sparse k-regular graphs), the consistency-check round and
signatures needed against an actively malicious server, and share verification.
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from fedmetamal.privacy import secagg_ring
from fedmetamal.privacy.shamir import (
    CHUNK_BYTES,
    Share,
    field_from_bytes,
    field_to_bytes,
    reconstruct_bytes,
    share_bytes,
)

logger = logging.getLogger(__name__)

STAGES = ("advertise", "share_keys", "masked_input", "unmasking")
SECRET_BYTES = 32
_N_CHUNKS = -(-SECRET_BYTES // CHUNK_BYTES)
_HEADER = struct.Struct(">QQQ")  # sender, recipient, share x
_PLAINTEXT_LEN = _HEADER.size + 2 * _N_CHUNKS * 16
_INFO_MASK = b"fedmetamal/secagg/v1/mask"
_INFO_ENC = b"fedmetamal/secagg/v1/share-enc"


class SecAggAborted(RuntimeError):
    """Raised when fewer than ``threshold`` clients remain, so the round cannot finish."""

    def __init__(self, stage: str, alive: int, threshold: int) -> None:
        super().__init__(f"secagg aborted at {stage}: {alive} alive < threshold {threshold}")
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
    """Server -> clients: everyone's advertised keys, sorted by client id."""

    keys: tuple[AdvertiseKeys, ...]


@dataclass(frozen=True)
class EncryptedShare:
    """One AES-GCM ciphertext of (b_u share, s_sk_u share) from sender to recipient."""

    sender: int
    recipient: int
    nonce: bytes
    ciphertext: bytes


@dataclass(frozen=True)
class ShareKeysMsg:
    """Client -> server: encrypted shares for every other advertised client."""

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
    """A decrypted share of ``owner``'s secret; ``ys`` are 16-byte field elements."""

    owner: int
    x: int
    ys: tuple[bytes, ...]


@dataclass(frozen=True)
class UnmaskResponse:
    """Survivor -> server: b-shares of survivors and s-key shares of dropped clients."""

    client_id: int
    b_shares: tuple[RevealedShare, ...]
    sk_shares: tuple[RevealedShare, ...]


# --------------------------------------------------------------------------- crypto


def _hkdf(secret: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(secret)


def prg_words(seed: bytes, length: int) -> np.ndarray:
    """Expand a 32-byte seed into ``length`` uint32 words with ChaCha20 (zero nonce).

    A zero nonce is safe because every seed is fresh per round and used for one stream.
    """
    enc = Cipher(algorithms.ChaCha20(seed, b"\x00" * 16), mode=None).encryptor()
    stream = enc.update(b"\x00" * (4 * length))
    return np.frombuffer(stream, dtype="<u4").astype(np.uint32)


def _mask_seed(sk: X25519PrivateKey, peer_pk: bytes) -> bytes:
    return _hkdf(sk.exchange(X25519PublicKey.from_public_bytes(peer_pk)), _INFO_MASK)


def _xs(client_id: int) -> int:
    return client_id + 1  # Shamir evaluation point; 0 is the secret


def _pair_sign(u: int, v: int) -> int:
    """+1 if u adds PRG(s_uv) (v > u), -1 if it subtracts it."""
    return 1 if v > u else -1


# --------------------------------------------------------------------------- client


class SecAggClient:
    """One participant's state machine; call the stage methods in order."""

    def __init__(
        self,
        client_id: int,
        threshold: int,
        vector_len: int,
        randbytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        if client_id < 0:
            raise ValueError("client ids must be non-negative")
        self.client_id = client_id
        self.threshold = threshold
        self.vector_len = vector_len
        self._rand = randbytes
        self._c_sk = X25519PrivateKey.from_private_bytes(randbytes(32))
        self._s_sk = X25519PrivateKey.from_private_bytes(randbytes(32))
        self._stage = 0
        self._keys: dict[int, AdvertiseKeys] = {}
        self._b = b""
        self._own: tuple[Share, Share] | None = None
        self._inbox: dict[int, EncryptedShare] = {}
        self._u2: frozenset[int] = frozenset()

    def _expect(self, stage: int) -> None:
        if self._stage != stage:
            raise ProtocolError(f"client {self.client_id}: stage {STAGES[stage]} out of order")
        self._stage = stage + 1

    def advertise(self) -> AdvertiseKeys:
        """Stage 0: publish raw public keys."""
        self._expect(0)
        return AdvertiseKeys(
            self.client_id,
            self._c_sk.public_key().public_bytes_raw(),
            self._s_sk.public_key().public_bytes_raw(),
        )

    def _enc_key(self, peer: int) -> bytes:
        peer_pk = X25519PublicKey.from_public_bytes(self._keys[peer].c_pk)
        return _hkdf(self._c_sk.exchange(peer_pk), _INFO_ENC)

    def share_keys(self, bcast: KeyBroadcast) -> ShareKeysMsg:
        """Stage 1: check the broadcast, share b_u and s_sk, encrypt each share to its owner."""
        self._expect(1)
        keys = {k.client_id: k for k in bcast.keys}
        if len(keys) != len(bcast.keys):
            raise ProtocolError("duplicate client ids in broadcast")
        if len(keys) < self.threshold:
            raise SecAggAborted("advertise", len(keys), self.threshold)
        mine = keys.get(self.client_id)
        if mine is None or mine != self.advertise_copy():
            raise ProtocolError("own keys missing or altered in broadcast")
        pks = [k.c_pk for k in keys.values()] + [k.s_pk for k in keys.values()]
        if len(set(pks)) != len(pks) or any(len(p) != 32 for p in pks):
            raise ProtocolError("public keys must be distinct 32-byte values")
        self._keys = keys
        ids = sorted(keys)
        xs = [_xs(i) for i in ids]
        self._b = self._rand(SECRET_BYTES)
        b_sh = share_bytes(self._b, self.threshold, xs, self._rand)
        sk_sh = share_bytes(self._s_sk.private_bytes_raw(), self.threshold, xs, self._rand)
        out = []
        for v, bs, ks in zip(ids, b_sh, sk_sh, strict=True):
            if v == self.client_id:
                self._own = (bs, ks)
                continue
            pt = _HEADER.pack(self.client_id, v, bs.x) + b"".join(
                field_to_bytes(y) for y in bs.ys + ks.ys
            )
            nonce = self._rand(12)
            ct = AESGCM(self._enc_key(v)).encrypt(nonce, pt, _HEADER.pack(self.client_id, v, 0))
            out.append(EncryptedShare(self.client_id, v, nonce, ct))
        return ShareKeysMsg(self.client_id, tuple(out))

    def advertise_copy(self) -> AdvertiseKeys:
        """The keys this client advertised (used to check the broadcast)."""
        return AdvertiseKeys(
            self.client_id,
            self._c_sk.public_key().public_bytes_raw(),
            self._s_sk.public_key().public_bytes_raw(),
        )

    def masked_input(self, routed: RoutedShares, x: np.ndarray) -> MaskedInput:
        """Stage 2: keep the routed ciphertexts and send x masked by self and pair masks."""
        self._expect(2)
        if routed.recipient != self.client_id:
            raise ProtocolError("shares routed to the wrong client")
        inbox: dict[int, EncryptedShare] = {}
        for es in routed.shares:
            if es.recipient != self.client_id or es.sender not in self._keys or es.sender in inbox:
                raise ProtocolError(f"bad routed share from {es.sender}")
            inbox[es.sender] = es
        self._inbox = inbox
        self._u2 = frozenset(inbox) | {self.client_id}
        if len(self._u2) < self.threshold:
            raise SecAggAborted("share_keys", len(self._u2), self.threshold)
        x = np.asarray(x)
        if x.dtype != np.uint32 or x.shape != (self.vector_len,):
            raise ValueError(f"x must be uint32 of shape ({self.vector_len},)")
        y = x + prg_words(self._b, self.vector_len)
        for v in sorted(self._u2 - {self.client_id}):
            m = prg_words(_mask_seed(self._s_sk, self._keys[v].s_pk), self.vector_len)
            y = y + m if _pair_sign(self.client_id, v) > 0 else y - m
        return MaskedInput(self.client_id, y.astype(np.uint32))

    def _open(self, owner: int) -> tuple[RevealedShare, RevealedShare]:
        if owner == self.client_id:
            assert self._own is not None
            bs, ks = self._own
            enc = tuple(field_to_bytes(y) for y in bs.ys), tuple(field_to_bytes(y) for y in ks.ys)
            return RevealedShare(owner, bs.x, enc[0]), RevealedShare(owner, ks.x, enc[1])
        es = self._inbox[owner]
        aad = _HEADER.pack(owner, self.client_id, 0)
        pt = AESGCM(self._enc_key(owner)).decrypt(es.nonce, es.ciphertext, aad)
        if len(pt) != _PLAINTEXT_LEN:
            raise ProtocolError(f"share from {owner} has wrong length")
        u, v, x = _HEADER.unpack_from(pt)
        if (u, v, x) != (owner, self.client_id, _xs(self.client_id)):
            raise ProtocolError(f"share from {owner} has a mismatched header")
        body = pt[_HEADER.size :]
        ys = tuple(body[i : i + 16] for i in range(0, len(body), 16))
        for y in ys:
            field_from_bytes(y)
        return RevealedShare(owner, x, ys[:_N_CHUNKS]), RevealedShare(owner, x, ys[_N_CHUNKS:])

    def unmask(self, req: UnmaskRequest) -> UnmaskResponse:
        """Stage 3: reveal b-shares of survivors, s-key shares of dropped; never both."""
        self._expect(3)
        surv, drop = set(req.survivors), set(req.dropped)
        if surv & drop:
            raise ProtocolError(f"request asks for both secrets of {sorted(surv & drop)}")
        if len(surv) != len(req.survivors) or len(drop) != len(req.dropped):
            raise ProtocolError("duplicate ids in unmask request")
        if self.client_id not in surv:
            raise ProtocolError("unmask request sent to a non-survivor")
        if len(surv) < self.threshold:
            raise SecAggAborted("masked_input", len(surv), self.threshold)
        if not (surv | drop) <= self._u2:
            raise ProtocolError("unmask request names clients outside U2")
        b = tuple(self._open(w)[0] for w in sorted(surv))
        sk = tuple(self._open(w)[1] for w in sorted(drop))
        return UnmaskResponse(self.client_id, b, sk)


# --------------------------------------------------------------------------- server


class SecAggServer:
    """Routes messages, tracks the surviving sets U1 ⊇ U2 ⊇ U3 ⊇ U4, and unmasks the sum."""

    def __init__(self, threshold: int, vector_len: int) -> None:
        if threshold < 1:
            raise ValueError("threshold must be >= 1")
        self.threshold = threshold
        self.vector_len = vector_len
        self._stage = 0
        self._adv: dict[int, AdvertiseKeys] = {}
        self._shares: dict[int, ShareKeysMsg] = {}
        self._masked: dict[int, np.ndarray] = {}
        self._responses: dict[int, UnmaskResponse] = {}
        self._request: UnmaskRequest | None = None
        self.excluded: dict[int, str] = {}

    def _in(self, stage: int) -> None:
        if self._stage != stage:
            raise ProtocolError(f"server not in stage {STAGES[stage]}")

    def _check_alive(self, stage: int, alive: int) -> None:
        if alive < self.threshold:
            raise SecAggAborted(STAGES[stage], alive, self.threshold)

    def receive_advertise(self, msg: AdvertiseKeys) -> None:
        """Collect one client's keys (first message per id wins)."""
        self._in(0)
        if msg.client_id in self._adv or msg.client_id < 0:
            raise ProtocolError(f"duplicate or invalid advertise from {msg.client_id}")
        self._adv[msg.client_id] = msg

    def close_advertise(self) -> KeyBroadcast:
        """End stage 0: U1 = advertisers."""
        self._in(0)
        self._check_alive(0, len(self._adv))
        self._stage = 1
        return KeyBroadcast(tuple(self._adv[i] for i in sorted(self._adv)))

    def receive_share_keys(self, msg: ShareKeysMsg) -> None:
        """Collect one client's encrypted shares."""
        self._in(1)
        if msg.client_id not in self._adv or msg.client_id in self._shares:
            raise ProtocolError(f"unexpected share_keys from {msg.client_id}")
        for es in msg.shares:
            if es.sender != msg.client_id or es.recipient not in self._adv:
                raise ProtocolError(f"bad encrypted share from {msg.client_id}")
        self._shares[msg.client_id] = msg

    def close_share_keys(self) -> dict[int, RoutedShares]:
        """End stage 1: U2 = senders; route each member the ciphertexts addressed to it."""
        self._in(1)
        self._check_alive(1, len(self._shares))
        self._stage = 2
        u2 = sorted(self._shares)
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
        self._stage = 3
        survivors = tuple(sorted(self._masked))
        dropped = tuple(sorted(set(self._shares) - set(self._masked)))
        self._request = UnmaskRequest(survivors, dropped)
        return self._request

    def receive_unmask(self, msg: UnmaskResponse) -> None:
        """Collect one survivor's revealed shares."""
        self._in(3)
        assert self._request is not None
        if msg.client_id not in self._request.survivors or msg.client_id in self._responses:
            raise ProtocolError(f"unexpected unmask response from {msg.client_id}")
        self._responses[msg.client_id] = msg

    def _rebuild(self, owner: int, which: str) -> bytes:
        shares = []
        for resp in self._responses.values():
            for rs in getattr(resp, which):
                if rs.owner == owner:
                    shares.append(Share(rs.x, tuple(field_from_bytes(y) for y in rs.ys)))
        if len(shares) < self.threshold:
            raise SecAggAborted("unmasking", len(shares), self.threshold)
        return reconstruct_bytes(shares[: self.threshold], SECRET_BYTES)

    def close_unmasking(self) -> np.ndarray:
        """End stage 3: rebuild secrets, strip masks, return the uint32 sum over U3."""
        self._in(3)
        assert self._request is not None
        self._check_alive(3, len(self._responses))
        self._stage = 4
        n = self.vector_len
        total = np.zeros(n, dtype=np.uint32)
        for u in self._request.survivors:
            total += self._masked[u]
            total -= prg_words(self._rebuild(u, "b_shares"), n)
        for v in self._request.dropped:
            sk_v = X25519PrivateKey.from_private_bytes(self._rebuild(v, "sk_shares"))
            if sk_v.public_key().public_bytes_raw() != self._adv[v].s_pk:
                raise ProtocolError(f"reconstructed key of {v} does not match its public key")
            for u in self._request.survivors:
                m = prg_words(_mask_seed(sk_v, self._adv[u].s_pk), n)
                # u added sign(u, v) * m; undo it.
                if _pair_sign(u, v) > 0:
                    total -= m
                else:
                    total += m
        return total

    @property
    def survivors(self) -> tuple[int, ...]:
        """U3, valid once stage 2 has closed."""
        return self._request.survivors if self._request else ()


# --------------------------------------------------------------------------- driver


def run_secagg(
    updates: np.ndarray,
    clip: float,
    threshold: int,
    dropouts: Mapping[str, set[int]] | None = None,
    bits: int = 16,
    seed: int | None = None,
) -> np.ndarray:
    """Run every stage in-process and return the float sum of the surviving clipped updates.

    ``dropouts[stage]`` lists client indices that go silent at that stage (they send
    nothing from then on). ``seed`` makes all key/mask randomness reproducible — for
    tests only, it destroys secrecy.
    """
    updates = np.asarray(updates, dtype=np.float32)
    if updates.ndim != 2:
        raise ValueError("updates must have shape (n, P)")
    n, p = updates.shape
    secagg_ring.check_capacity(n, bits)
    dropouts = dict(dropouts or {})
    unknown = set(dropouts) - set(STAGES)
    if unknown:
        raise ValueError(f"unknown dropout stages {sorted(unknown)}; use {STAGES}")
    if seed is None:
        rand: Callable[[int], bytes] = os.urandom
    else:
        rng = np.random.default_rng(seed)
        rand = rng.bytes
    clients = {i: SecAggClient(i, threshold, p, rand) for i in range(n)}
    server = SecAggServer(threshold, p)
    alive = set(clients)

    def drop(stage: str) -> None:
        alive.difference_update(dropouts.get(stage, set()))

    drop("advertise")
    for i in sorted(alive):
        server.receive_advertise(clients[i].advertise())
    bcast = server.close_advertise()
    drop("share_keys")
    for i in sorted(alive):
        server.receive_share_keys(clients[i].share_keys(bcast))
    routed = server.close_share_keys()
    drop("masked_input")
    for i in sorted(alive):
        x = secagg_ring.quantise(updates[i], clip, bits)
        server.receive_masked_input(clients[i].masked_input(routed[i], x))
    req = server.close_masked_input()
    drop("unmasking")
    for i in req.survivors:
        if i in alive:
            server.receive_unmask(clients[i].unmask(req))
    total = server.close_unmasking()
    return secagg_ring.dequantise_sum(total, len(req.survivors), clip, bits)
