"""Request authentication for the gRPC federation.

Participants sign every FederationService call with their Ed25519 key (enrolled once with a
join token); operators present a bearer token on ControlService calls. The server calls
:class:`RequestVerifier` and :func:`check_operator` from its handlers, so no gRPC interceptor is
involved. The canonical signed bytes are::

    b"fmm1\\n" + method + b"\\n" + participant_id + b"\\n" + timestamp + b"\\n" + nonce + b"\\n"
    + body_digest_hex
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import grpc
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from google.protobuf.message import Message

from fedmetamal.errors import FedMetaMalError

PROTOCOL_VERSION = 1
MAX_CLOCK_SKEW_S = 300.0

KEY_PROTOCOL = "x-fmm-protocol"
KEY_PARTICIPANT = "x-fmm-participant"
KEY_TIMESTAMP = "x-fmm-timestamp"
KEY_NONCE = "x-fmm-nonce"
KEY_SIGNATURE = "x-fmm-signature"
KEY_AUTHORIZATION = "authorization"

SIGNATURE_DOMAIN = b"fmm1"
NONCE_BYTES = 16
MAX_PARTICIPANT_ID_LEN = 64

_PARTICIPANT_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_NONCE_RE = re.compile(r"[0-9a-f]{32}")
_TIMESTAMP_RE = re.compile(r"[0-9]{1,12}(\.[0-9]{1,3})?")
_VERSION_RE = re.compile(r"[0-9]{1,9}")
_SIGNED_KEYS = (KEY_PARTICIPANT, KEY_TIMESTAMP, KEY_NONCE, KEY_SIGNATURE)


class AuthError(FedMetaMalError):
    """A call is refused; ``code`` is the gRPC status the handler should abort with."""

    def __init__(
        self,
        problem: str,
        fix: str | None = None,
        code: grpc.StatusCode = grpc.StatusCode.UNAUTHENTICATED,
    ) -> None:
        super().__init__(problem, fix)
        self.code = code


# --------------------------------------------------------------------------- signing


def body_digest(message: Message | None) -> str:
    """Hex SHA-256 of the deterministic encoding, binding a signature to the request body.

    Client-streaming calls pass ``None`` (their payload carries its own SHA-256) and get "".
    """
    if message is None:
        return ""
    return hashlib.sha256(message.SerializeToString(deterministic=True)).hexdigest()


def signed_bytes(
    method: str, participant_id: str, timestamp: str, nonce: str, digest: str
) -> bytes:
    """The canonical bytes an Ed25519 signature covers (see the module docstring)."""
    parts = (method, participant_id, timestamp, nonce, digest)
    for part in parts:
        if "\n" in part:
            # A newline would let one field's text be read as the next field's.
            raise AuthError(f"a signed field contains a newline: {part!r}")
    return SIGNATURE_DOMAIN + b"\n" + "\n".join(parts).encode("utf-8")


def format_timestamp(now: float) -> str:
    """Unix seconds with 3 decimals: the form the contract fixes for ``x-fmm-timestamp``."""
    return f"{now:.3f}"


def sign_metadata(
    private_key: Ed25519PrivateKey,
    participant_id: str,
    method: str,
    digest: str,
    now: float | None = None,
) -> list[tuple[str, str]]:
    """Metadata for one signed participant call (protocol, id, timestamp, nonce, signature)."""
    check_participant_id(participant_id)
    timestamp = format_timestamp(time.time() if now is None else now)
    nonce = secrets.token_hex(NONCE_BYTES)
    signature = private_key.sign(signed_bytes(method, participant_id, timestamp, nonce, digest))
    return [
        *protocol_metadata(),
        (KEY_PARTICIPANT, participant_id),
        (KEY_TIMESTAMP, timestamp),
        (KEY_NONCE, nonce),
        (KEY_SIGNATURE, base64.b64encode(signature).decode("ascii")),
    ]


def protocol_metadata() -> list[tuple[str, str]]:
    """Just the protocol version: what unsigned calls (Enroll) send."""
    return [(KEY_PROTOCOL, str(PROTOCOL_VERSION))]


# --------------------------------------------------------------------------- metadata


def metadata_dict(md: Any) -> dict[str, str]:
    """Normalise gRPC metadata into a dict with lower-case keys.

    Accepts ``context.invocation_metadata()`` (tuples or ``_Metadatum`` objects), a list of
    pairs, a dict, or ``None``. When a key repeats, the first value wins; binary values
    (``-bin`` keys) are decoded as latin-1 so that nothing raises here.
    """
    if md is None:
        return {}
    items: Iterable[Any] = md.items() if isinstance(md, Mapping) else md
    out: dict[str, str] = {}
    for item in items:
        if hasattr(item, "key") and hasattr(item, "value"):
            key, value = item.key, item.value
        else:
            key, value = item
        if isinstance(key, bytes):
            key = key.decode("latin-1")
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        out.setdefault(str(key).lower(), str(value))
    return out


def check_protocol(md: Mapping[str, str], server_version: int = PROTOCOL_VERSION) -> None:
    """Refuse calls from a participant speaking another protocol version, naming both."""
    fix = f"install a FedMetaMal release that speaks v{server_version}"
    raw = md.get(KEY_PROTOCOL)
    if raw is None:
        raise AuthError(
            f"the call carries no {KEY_PROTOCOL} metadata (protocol version) but the server "
            f"speaks v{server_version};",
            fix,
            code=grpc.StatusCode.FAILED_PRECONDITION,
        )
    raw = raw.strip()
    if not _VERSION_RE.fullmatch(raw):
        raise AuthError(
            f"the call's {KEY_PROTOCOL} metadata {raw[:20]!r} is not a protocol version number "
            f"(the server speaks v{server_version});",
            fix,
            code=grpc.StatusCode.FAILED_PRECONDITION,
        )
    version = int(raw)
    if version != server_version:
        raise AuthError(
            f"this participant speaks protocol v{version} but the server speaks v{server_version};",
            fix,
            code=grpc.StatusCode.FAILED_PRECONDITION,
        )


# --------------------------------------------------------------------------- replay


class ReplayCache:
    """Remembers (participant, nonce) pairs so a captured request cannot be sent again.

    A request is accepted only within ``MAX_CLOCK_SKEW_S`` of its timestamp, so remembering a
    nonce for ``2 * MAX_CLOCK_SKEW_S`` covers its whole acceptance window. Memory is bounded:
    expired entries are pruned as calls arrive and at most ``max_per_participant`` nonces are
    kept per participant (the oldest are dropped beyond that).
    """

    def __init__(
        self, window_s: float = 2 * MAX_CLOCK_SKEW_S, max_per_participant: int = 100_000
    ) -> None:
        if window_s <= 0 or max_per_participant <= 0:
            raise ValueError("window_s and max_per_participant must be positive")
        self.window_s = window_s
        self.max_per_participant = max_per_participant
        self._seen: dict[str, OrderedDict[str, float]] = {}
        self._lock = threading.Lock()
        self._last_sweep = -math.inf

    def check_and_add(self, participant_id: str, nonce: str, now: float) -> bool:
        """True (and remember it) when the nonce is fresh; False when seen within the window."""
        with self._lock:
            if now - self._last_sweep >= self.window_s:
                self._sweep(now)
            seen = self._seen.setdefault(participant_id, OrderedDict())
            self._prune(seen, now)
            first_seen = seen.get(nonce)
            if first_seen is not None and now - first_seen < self.window_s:
                return False
            seen[nonce] = now
            seen.move_to_end(nonce)
            while len(seen) > self.max_per_participant:
                seen.popitem(last=False)
            return True

    def __len__(self) -> int:
        with self._lock:
            return sum(len(seen) for seen in self._seen.values())

    def _prune(self, seen: OrderedDict[str, float], now: float) -> None:
        # Entries are in insertion order, which is time order unless the clock stepped back;
        # then an old entry can outlive its window until the cap drops it (still bounded).
        while seen:
            oldest = next(iter(seen.values()))
            if now - oldest < self.window_s:
                break
            seen.popitem(last=False)

    def _sweep(self, now: float) -> None:
        """Prune every participant, so ones that went quiet do not hold memory forever."""
        for pid in list(self._seen):
            self._prune(self._seen[pid], now)
            if not self._seen[pid]:
                del self._seen[pid]
        self._last_sweep = now


# --------------------------------------------------------------------------- verification


class RequestVerifier:
    """Checks a signed participant call; returns the participant id or raises AuthError.

    ``lookup_public_key`` returns the raw 32-byte Ed25519 public key of an enrolled
    participant, or ``None`` when the id is unknown. It may itself raise :class:`AuthError`
    (for example PERMISSION_DENIED for a revoked participant); that error passes through.
    """

    def __init__(
        self,
        lookup_public_key: Callable[[str], bytes | None],
        replay: ReplayCache | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._lookup = lookup_public_key
        self._replay = replay if replay is not None else ReplayCache()
        self._clock = clock

    def verify(self, md: Mapping[str, str], method: str, digest: str) -> str:
        """Verify protocol, freshness, nonce and signature of one call; returns its sender."""
        check_protocol(md)
        missing = [key for key in _SIGNED_KEYS if not md.get(key)]
        if missing:
            raise AuthError(
                f"the call is missing authentication metadata: {', '.join(missing)};",
                "this participant is not enrolled or its client is broken: join again with "
                "a join token",
            )
        participant_id = md[KEY_PARTICIPANT]
        timestamp = md[KEY_TIMESTAMP]
        nonce = md[KEY_NONCE]
        check_participant_id(participant_id)
        if not _TIMESTAMP_RE.fullmatch(timestamp):
            raise AuthError(
                f"malformed {KEY_TIMESTAMP} {timestamp[:40]!r}: expected unix seconds with at "
                "most 3 decimals"
            )
        if not _NONCE_RE.fullmatch(nonce):
            raise AuthError(
                f"malformed {KEY_NONCE} {nonce[:40]!r}: expected 32 lower-case hex characters"
            )
        signature = _decode_signature(md[KEY_SIGNATURE])

        raw_key = self._lookup(participant_id)
        if raw_key is None:
            raise AuthError(
                f"unknown participant {participant_id!r};",
                "its enrollment is not on this server: delete the participant state and "
                "enroll again with a new join token",
            )
        public_key = load_public_key(raw_key)

        now = self._clock()
        skew = float(timestamp) - now
        if abs(skew) > MAX_CLOCK_SKEW_S:
            raise AuthError(
                f"request timestamp of participant {participant_id!r} is {abs(skew):.0f} s "
                f"{'ahead of' if skew > 0 else 'behind'} the server clock (allowed "
                f"±{MAX_CLOCK_SKEW_S:.0f} s);",
                "check the participant's clock (enable NTP time sync) and retry",
            )
        try:
            public_key.verify(
                signature, signed_bytes(method, participant_id, timestamp, nonce, digest)
            )
        except InvalidSignature:
            raise AuthError(
                f"bad request signature from participant {participant_id!r};",
                "the request was altered in transit or signed with another key: if this "
                "participant's identity file was replaced, enroll again with a new join token",
            ) from None
        # Only signed requests reach the cache, so nobody can flood it with made-up nonces.
        if not self._replay.check_and_add(participant_id, nonce, now):
            raise AuthError(
                f"replayed request from participant {participant_id!r} (nonce {nonce} was "
                "already used);",
                "each call needs a fresh nonce: if this was not a retry by a proxy, someone "
                "is resending captured traffic",
            )
        return participant_id


def check_participant_id(participant_id: str) -> None:
    """Participant ids are short ASCII tokens: they go into metadata and signed bytes."""
    if not _PARTICIPANT_ID_RE.fullmatch(participant_id):
        raise AuthError(
            f"malformed participant id {participant_id[:80]!r}: expected 1-"
            f"{MAX_PARTICIPANT_ID_LEN} characters of A-Z, a-z, 0-9, '_' or '-'"
        )


def _decode_signature(text: str) -> bytes:
    try:
        signature = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise AuthError(f"malformed {KEY_SIGNATURE}: not base64") from None
    if len(signature) != 64:
        raise AuthError(
            f"malformed {KEY_SIGNATURE}: {len(signature)} bytes, an Ed25519 signature has 64"
        )
    return signature


# --------------------------------------------------------------------------- operator tokens


def new_secret(nbytes: int = 32) -> str:
    """A URL-safe random secret (operator or join token); 32 bytes = 256 bits by default."""
    return secrets.token_urlsafe(nbytes)


def hash_secret(secret: str) -> str:
    """Hex SHA-256 of a secret, what the server stores instead of the secret itself.

    The secrets are 256-bit random values from :func:`new_secret`, not passwords a person
    chose, so brute force is hopeless and a slow password hash (bcrypt, scrypt) adds nothing.
    """
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def bearer_metadata(token: str) -> list[tuple[str, str]]:
    """Metadata carrying an operator token on ControlService calls."""
    return [(KEY_AUTHORIZATION, f"Bearer {token.strip()}")]


def check_operator(md: Mapping[str, str], expected_hash: str) -> None:
    """Refuse a ControlService call unless it carries the operator token (constant time)."""
    header = md.get(KEY_AUTHORIZATION, "")
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    ok = scheme.lower() == "bearer" and bool(token)
    # Compare even when the header is malformed so timing says nothing about the reason.
    digest = hash_secret(token)
    if not hmac.compare_digest(digest.encode("ascii"), expected_hash.lower().encode("ascii")):
        ok = False
    if not ok:
        raise AuthError(
            "missing or wrong operator token;",
            "pass --operator-token or set FEDMETAMAL_OPERATOR_TOKEN to the token in the "
            "server's <data-dir>/operator.token",
        )


# --------------------------------------------------------------------------- keys


def public_key_bytes(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    """The raw 32-byte public key: what Enroll sends and the server stores."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def load_public_key(raw: bytes) -> Ed25519PublicKey:
    """Parse a raw Ed25519 public key, refusing anything that is not 32 valid bytes."""
    if len(raw) != 32:
        raise AuthError(
            f"invalid Ed25519 public key: {len(raw)} bytes, expected 32;",
            "enroll again with a new join token",
        )
    try:
        return Ed25519PublicKey.from_public_bytes(bytes(raw))
    except ValueError as exc:
        raise AuthError(
            f"invalid Ed25519 public key: {exc};", "enroll again with a new join token"
        ) from None
