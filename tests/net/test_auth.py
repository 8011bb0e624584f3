"""Signed participant calls, replay protection, protocol checks and operator tokens."""

from __future__ import annotations

import base64
import threading
from collections import namedtuple

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fedmetamal.errors import FedMetaMalError
from fedmetamal.net import auth
from fedmetamal.net.auth import (
    KEY_AUTHORIZATION,
    KEY_NONCE,
    KEY_PARTICIPANT,
    KEY_PROTOCOL,
    KEY_SIGNATURE,
    KEY_TIMESTAMP,
    MAX_CLOCK_SKEW_S,
    PROTOCOL_VERSION,
    AuthError,
    ReplayCache,
    RequestVerifier,
)
from fedmetamal.v1 import federation_pb2

METHOD = "/fedmetamal.v1.FederationService/PullTask"
NOW = 1_800_000_000.0
PID = "p-0001"


class Clock:
    """A settable clock, so skew tests do not depend on wall time."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def verifier(key: Ed25519PrivateKey, clock: Clock) -> RequestVerifier:
    keys = {PID: auth.public_key_bytes(key)}
    return RequestVerifier(keys.get, ReplayCache(), clock=clock)


def _signed(key: Ed25519PrivateKey, digest: str, now: float = NOW, **changes: str) -> dict:
    md = auth.metadata_dict(auth.sign_metadata(key, PID, METHOD, digest, now=now))
    md.update(changes)
    return md


def _refusal(verifier: RequestVerifier, md: dict, digest: str, method: str = METHOD) -> AuthError:
    with pytest.raises(AuthError) as info:
        verifier.verify(md, method, digest)
    return info.value


def test_body_digest_is_deterministic_and_empty_for_streams() -> None:
    request = federation_pb2.PullTaskRequest()
    assert auth.body_digest(None) == ""
    digest = auth.body_digest(request)
    assert len(digest) == 64
    assert digest == auth.body_digest(federation_pb2.PullTaskRequest())


def test_signed_bytes_follow_the_contract() -> None:
    got = auth.signed_bytes(METHOD, PID, "1.500", "ab" * 16, "d" * 64)
    assert (
        got == b"fmm1\n" + METHOD.encode() + b"\np-0001\n1.500\n" + b"ab" * 16 + b"\n" + b"d" * 64
    )
    with pytest.raises(AuthError):
        auth.signed_bytes(METHOD, PID, "1.5\nx", "ab" * 16, "")


def test_sign_metadata_has_every_key(key: Ed25519PrivateKey) -> None:
    md = dict(auth.sign_metadata(key, PID, METHOD, "", now=NOW))
    assert md[KEY_PROTOCOL] == str(PROTOCOL_VERSION)
    assert md[KEY_PARTICIPANT] == PID
    assert md[KEY_TIMESTAMP] == "1800000000.000"
    assert len(md[KEY_NONCE]) == 32
    assert len(base64.b64decode(md[KEY_SIGNATURE])) == 64
    assert auth.protocol_metadata() == [(KEY_PROTOCOL, "1")]


def test_round_trip(verifier: RequestVerifier, key: Ed25519PrivateKey) -> None:
    digest = auth.body_digest(federation_pb2.PullTaskRequest())
    assert verifier.verify(_signed(key, digest), METHOD, digest) == PID
    # Within the allowed skew on either side.
    assert verifier.verify(_signed(key, digest, now=NOW - 299), METHOD, digest) == PID
    assert verifier.verify(_signed(key, digest, now=NOW + 299), METHOD, digest) == PID
    # Streaming calls sign an empty digest.
    assert verifier.verify(_signed(key, ""), METHOD, "") == PID


def test_tampered_digest_is_refused(verifier: RequestVerifier, key: Ed25519PrivateKey) -> None:
    err = _refusal(verifier, _signed(key, "a" * 64), "b" * 64)
    assert err.code == grpc.StatusCode.UNAUTHENTICATED
    assert "bad request signature" in str(err)


def test_wrong_method_is_refused(verifier: RequestVerifier, key: Ed25519PrivateKey) -> None:
    err = _refusal(verifier, _signed(key, ""), "", "/fedmetamal.v1.FederationService/Heartbeat")
    assert "bad request signature" in str(err)


@pytest.mark.parametrize("offset", [-(MAX_CLOCK_SKEW_S + 1), MAX_CLOCK_SKEW_S + 1, 86_400.0])
def test_stale_or_future_timestamp_is_refused(
    verifier: RequestVerifier, key: Ed25519PrivateKey, offset: float
) -> None:
    err = _refusal(verifier, _signed(key, "", now=NOW + offset), "")
    assert err.code == grpc.StatusCode.UNAUTHENTICATED
    assert "check the participant's clock" in str(err)
    assert ("ahead of" if offset > 0 else "behind") in str(err)


def test_replay_is_refused(verifier: RequestVerifier, key: Ed25519PrivateKey) -> None:
    md = _signed(key, "")
    assert verifier.verify(md, METHOD, "") == PID
    err = _refusal(verifier, md, "")
    assert "replayed request" in str(err)


def test_bad_signature_does_not_burn_the_nonce(
    verifier: RequestVerifier, key: Ed25519PrivateKey
) -> None:
    md = _signed(key, "")
    forged = dict(md, **{KEY_SIGNATURE: base64.b64encode(b"\0" * 64).decode()})
    assert "bad request signature" in str(_refusal(verifier, forged, ""))
    assert verifier.verify(md, METHOD, "") == PID


def test_unknown_participant_is_told_to_enroll(clock: Clock, key: Ed25519PrivateKey) -> None:
    verifier = RequestVerifier(lambda _pid: None, clock=clock)
    err = _refusal(verifier, _signed(key, ""), "")
    assert err.code == grpc.StatusCode.UNAUTHENTICATED
    assert "unknown participant 'p-0001'" in str(err)
    assert "enroll again" in str(err)


def test_lookup_errors_pass_through(clock: Clock, key: Ed25519PrivateKey) -> None:
    def revoked(_pid: str) -> bytes | None:
        raise AuthError("participant revoked", code=grpc.StatusCode.PERMISSION_DENIED)

    err = _refusal(RequestVerifier(revoked, clock=clock), _signed(key, ""), "")
    assert err.code == grpc.StatusCode.PERMISSION_DENIED


def test_wrong_key_is_refused(verifier: RequestVerifier) -> None:
    other = Ed25519PrivateKey.generate()
    assert "bad request signature" in str(_refusal(verifier, _signed(other, ""), ""))


@pytest.mark.parametrize("missing", [KEY_PARTICIPANT, KEY_TIMESTAMP, KEY_NONCE, KEY_SIGNATURE])
def test_missing_keys_are_named(
    verifier: RequestVerifier, key: Ed25519PrivateKey, missing: str
) -> None:
    md = _signed(key, "")
    del md[missing]
    err = _refusal(verifier, md, "")
    assert err.code == grpc.StatusCode.UNAUTHENTICATED
    assert f"missing authentication metadata: {missing}" in str(err)


def test_all_missing_keys_are_named(verifier: RequestVerifier) -> None:
    err = _refusal(verifier, dict(auth.protocol_metadata()), "")
    for name in (KEY_PARTICIPANT, KEY_TIMESTAMP, KEY_NONCE, KEY_SIGNATURE):
        assert name in str(err)


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        (KEY_TIMESTAMP, "yesterday", "malformed x-fmm-timestamp"),
        (KEY_TIMESTAMP, "1800000000.0001", "malformed x-fmm-timestamp"),
        (KEY_TIMESTAMP, "nan", "malformed x-fmm-timestamp"),
        (KEY_NONCE, "abc", "malformed x-fmm-nonce"),
        (KEY_NONCE, "AB" * 16, "malformed x-fmm-nonce"),
        (KEY_SIGNATURE, "not base64!", "malformed x-fmm-signature"),
        (KEY_SIGNATURE, base64.b64encode(b"short").decode(), "malformed x-fmm-signature"),
        (KEY_PARTICIPANT, "p 1", "malformed participant id"),
        (KEY_PARTICIPANT, "p" * 65, "malformed participant id"),
        (KEY_PARTICIPANT, "pé", "malformed participant id"),
    ],
)
def test_malformed_fields_are_refused(
    verifier: RequestVerifier, key: Ed25519PrivateKey, field: str, value: str, words: str
) -> None:
    err = _refusal(verifier, _signed(key, "", **{field: value}), "")
    assert err.code == grpc.StatusCode.UNAUTHENTICATED
    assert words in str(err)


def test_protocol_mismatch_names_both_versions(
    verifier: RequestVerifier, key: Ed25519PrivateKey
) -> None:
    err = _refusal(verifier, _signed(key, "", **{KEY_PROTOCOL: "2"}), "")
    assert err.code == grpc.StatusCode.FAILED_PRECONDITION
    assert "speaks protocol v2 but the server speaks v1" in str(err)
    assert "install a FedMetaMal release that speaks v1" in str(err)


@pytest.mark.parametrize(
    ("md", "words"), [({}, "no x-fmm-protocol"), ({KEY_PROTOCOL: "one"}, "'one'")]
)
def test_protocol_missing_or_not_numeric(md: dict, words: str) -> None:
    with pytest.raises(AuthError) as info:
        auth.check_protocol(md)
    assert info.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert words in str(info.value)
    assert "v1" in str(info.value)


def test_check_protocol_accepts_own_version() -> None:
    auth.check_protocol(dict(auth.protocol_metadata()))
    auth.check_protocol({KEY_PROTOCOL: "3"}, server_version=3)


def test_metadata_dict_accepts_grpc_shapes() -> None:
    Metadatum = namedtuple("Metadatum", ["key", "value"])
    expected = {KEY_PROTOCOL: "1", "x-bin": "\x00\xff"}
    as_objects = (Metadatum(KEY_PROTOCOL, "1"), Metadatum("x-bin", b"\x00\xff"))
    assert auth.metadata_dict(as_objects) == expected
    assert auth.metadata_dict(((KEY_PROTOCOL, "1"), ("X-Bin", b"\x00\xff"))) == expected
    assert auth.metadata_dict({KEY_PROTOCOL: "1"}) == {KEY_PROTOCOL: "1"}
    assert auth.metadata_dict(None) == {}
    # A repeated key keeps its first value, so appending cannot override a signed field.
    assert auth.metadata_dict([(KEY_NONCE, "a"), (KEY_NONCE, "b")]) == {KEY_NONCE: "a"}


def test_replay_cache_window_and_pruning() -> None:
    cache = ReplayCache(window_s=10.0)
    assert cache.check_and_add("a", "n1", 100.0)
    assert not cache.check_and_add("a", "n1", 105.0)
    assert cache.check_and_add("b", "n1", 105.0)  # nonces are per participant
    assert cache.check_and_add("a", "n2", 106.0)
    assert len(cache) == 3
    # After the window n1 of "a" is pruned; "b" is swept even though it sends nothing.
    assert cache.check_and_add("a", "n3", 115.5)
    assert len(cache) == 2  # a/n2 and a/n3
    assert cache.check_and_add("a", "n1", 115.5)


def test_replay_cache_cap_drops_oldest() -> None:
    cache = ReplayCache(window_s=1000.0, max_per_participant=3)
    for i in range(5):
        assert cache.check_and_add("a", f"n{i}", 1.0 + i)
    assert len(cache) == 3
    assert cache.check_and_add("a", "n0", 10.0)  # dropped by the cap, so accepted again
    assert not cache.check_and_add("a", "n4", 10.0)


def test_replay_cache_is_thread_safe() -> None:
    cache = ReplayCache()
    accepted: list[bool] = []
    lock = threading.Lock()

    def worker() -> None:
        results = [cache.check_and_add("a", f"n{i}", 1.0) for i in range(2000)]
        with lock:
            accepted.extend(results)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(accepted) == 2000  # each nonce accepted exactly once across threads


def test_secrets_and_operator_tokens() -> None:
    token = auth.new_secret()
    assert len(token) >= 43 and auth.new_secret() != token
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    expected = auth.hash_secret(token)
    assert len(expected) == 64 and expected != token
    auth.check_operator(auth.metadata_dict(auth.bearer_metadata(token)), expected)
    auth.check_operator({KEY_AUTHORIZATION: f"bearer  {token} "}, expected)
    for header in (None, "", f"Basic {token}", "Bearer ", f"Bearer {token}x", token):
        md = {} if header is None else {KEY_AUTHORIZATION: header}
        with pytest.raises(AuthError) as info:
            auth.check_operator(md, expected)
        assert info.value.code == grpc.StatusCode.UNAUTHENTICATED
        assert "FEDMETAMAL_OPERATOR_TOKEN" in str(info.value)


def test_public_key_round_trip_and_bad_keys(key: Ed25519PrivateKey) -> None:
    raw = auth.public_key_bytes(key)
    assert len(raw) == 32
    assert auth.public_key_bytes(auth.load_public_key(raw)) == raw
    assert auth.public_key_bytes(key.public_key()) == raw
    with pytest.raises(AuthError, match="31 bytes"):
        auth.load_public_key(raw[:31])
    assert issubclass(AuthError, FedMetaMalError)
