"""Who may call what, against a real server over gRPC on loopback.

ControlService needs the operator token on every call; FederationService calls need a fresh,
valid signature of an enrolled, not revoked participant speaking our protocol version; join
tokens are single-use and expire; pending participants get no tasks; a participant never sees
another's task. Each refusal has the status code and a message that names the problem.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np
import pytest
from google.protobuf import message_factory
from tests.net.harness import (
    RawParticipant,
    ServerThread,
    post_task,
    signed_upload,
    task_outcome,
    upload_chunks,
    valid_summary,
)

from fedmetamal.net.auth import (
    KEY_PROTOCOL,
    body_digest,
    protocol_metadata,
    public_key_bytes,
    sign_metadata,
)
from fedmetamal.net.identity import ParticipantIdentity
from fedmetamal.net.payload import decode_stream, grpc_options
from fedmetamal.v1 import control_pb2, control_pb2_grpc, federation_pb2

SERVICE = "/fedmetamal.v1.FederationService/"
CONTROL = control_pb2.DESCRIPTOR.services_by_name["ControlService"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    srv = ServerThread(tmp_path_factory.mktemp("security"))
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def control_stub(server: ServerThread) -> Iterator[control_pb2_grpc.ControlServiceStub]:
    channel = grpc.insecure_channel(server.target, options=grpc_options())
    try:
        yield control_pb2_grpc.ControlServiceStub(channel)
    finally:
        channel.close()


def _participant(server: ServerThread, approve: bool = True, name: str = "p") -> RawParticipant:
    raw = RawParticipant(server.target)
    reply = raw.enroll(server.token(auto_approve=approve), name=name)
    assert reply.state == ("approved" if approve else "pending")
    return raw


def _code(fn: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as err:
        fn()
    return err.value


def _call_control(stub: Any, method: Any, metadata: list[tuple[str, str]]) -> Any:
    """Call one ControlService method with an empty request (draining streamed replies)."""
    request = message_factory.GetMessageClass(method.input_type)()
    result = getattr(stub, method.name)(request, metadata=metadata, timeout=10)
    if method.server_streaming:
        return list(result)
    return result


# ------------------------------------------------------------------------ operator token


@pytest.mark.parametrize("method", list(CONTROL.methods), ids=lambda m: m.name)
@pytest.mark.parametrize(
    "metadata",
    [
        [],
        [("authorization", "Bearer not-the-operator-token")],
        [("authorization", "Basic b3BlcmF0b3I6cGFzc3dvcmQ=")],
        [("authorization", "Bearer ")],
    ],
    ids=["none", "wrong", "basic", "empty"],
)
def test_every_control_call_needs_the_operator_token(
    server: ServerThread, control_stub: Any, method: Any, metadata: list[tuple[str, str]]
) -> None:
    err = _code(lambda: _call_control(control_stub, method, metadata))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED, (method.name, err.details())
    assert "operator token" in err.details()


def test_the_operator_token_opens_control_calls(server: ServerThread, control_stub: Any) -> None:
    token = server.server.operator_token_file.read_text().strip()
    info = control_stub.GetServerInfo(
        control_pb2.GetServerInfoRequest(), metadata=[("authorization", f"Bearer {token}")]
    )
    assert info.protocol_version == 1


def test_refused_control_calls_change_nothing(server: ServerThread, control_stub: Any) -> None:
    """A wrong token must not create a run or a join token before it is refused."""
    runs_before = len(server.run_sync(server.core.store.list_runs))
    bad = [("authorization", "Bearer wrong")]
    err = _code(
        lambda: control_stub.CreateRun(
            control_pb2.CreateRunRequest(name="x", config_json="{}"), metadata=bad
        )
    )
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    err = _code(
        lambda: control_stub.CreateJoinToken(control_pb2.CreateJoinTokenRequest(), metadata=bad)
    )
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    assert len(server.run_sync(server.core.store.list_runs)) == runs_before


def _bearer(server: ServerThread) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {server.server.operator_token_file.read_text().strip()}")]


@pytest.mark.parametrize("after_seq", [2**63, 2**64 - 1])
def test_watch_with_a_huge_after_seq_is_not_a_crash(
    server: ServerThread, control_stub: Any, after_seq: int
) -> None:
    """after_seq is uint64; the database's integers are signed 64-bit. A value beyond them
    means "no past events": the watch waits for new ones (or is refused), never UNKNOWN."""
    req = control_pb2.WatchRunRequest(run_id="", after_seq=after_seq)
    err = _code(lambda: list(control_stub.WatchRun(req, metadata=_bearer(server), timeout=1.0)))
    assert err.code() in (
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.INVALID_ARGUMENT,
    ), err.details()


@pytest.mark.parametrize("call", ["ApproveParticipant", "RevokeParticipant", "GetRun", "CreateRun"])
def test_refusals_of_huge_ids_stay_readable(
    server: ServerThread, control_stub: Any, call: str
) -> None:
    """A status message travels in a header (gRPC allows 16 KiB): echoing a 100 000-character
    id makes the client see RESOURCE_EXHAUSTED "metadata size exceeds hard limit" instead of
    the reason. Echoed input must be cut."""
    huge = "x" * 100_000
    request: Any = {
        "ApproveParticipant": control_pb2.ParticipantRef(participant_id=huge),
        "RevokeParticipant": control_pb2.ParticipantRef(participant_id=huge),
        "GetRun": control_pb2.RunRef(run_id=huge),
        "CreateRun": control_pb2.CreateRunRequest(
            name="n", config_json="{}", participant_ids=[huge]
        ),
    }[call]
    err = _code(lambda: getattr(control_stub, call)(request, metadata=_bearer(server), timeout=10))
    assert err.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT), (
        err.code(),
        err.details()[:200],
    )
    assert len(err.details()) < 2000


# ------------------------------------------------------------------------ signatures


def test_unsigned_call_is_refused(server: ServerThread) -> None:
    raw = _participant(server)
    req = federation_pb2.HeartbeatRequest()
    err = _code(lambda: raw.stub.Heartbeat(req, metadata=protocol_metadata(), timeout=10))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "missing authentication metadata" in err.details()
    # the same participant with a signature gets through
    assert raw.call("Heartbeat", req).state == "approved"
    raw.close()


def test_call_without_any_metadata_names_the_protocol(server: ServerThread) -> None:
    raw = _participant(server)
    err = _code(lambda: raw.stub.Heartbeat(federation_pb2.HeartbeatRequest(), timeout=10))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert KEY_PROTOCOL in err.details()
    raw.close()


def test_tampered_body_is_refused(server: ServerThread) -> None:
    """A signature over one request does not cover another."""
    raw = _participant(server)
    signed = federation_pb2.HeartbeatRequest(activity="idle")
    sent = federation_pb2.HeartbeatRequest(activity="training", task_id="t-evil")
    md = raw.md("Heartbeat", signed)
    err = _code(lambda: raw.stub.Heartbeat(sent, metadata=md, timeout=10))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "bad request signature" in err.details()
    raw.close()


def test_signature_for_another_method_is_refused(server: ServerThread) -> None:
    """Empty Heartbeat and PullTask requests serialise alike: the method name tells them apart."""
    raw = _participant(server)
    md = raw.md("Heartbeat", federation_pb2.HeartbeatRequest())
    err = _code(
        lambda: raw.stub.PullTask(federation_pb2.PullTaskRequest(), metadata=md, timeout=10)
    )
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "bad request signature" in err.details()
    raw.close()


def test_signature_by_another_key_is_refused(server: ServerThread) -> None:
    victim = _participant(server, name="victim")
    attacker = ParticipantIdentity.generate_key()
    assert victim.identity is not None
    req = federation_pb2.HeartbeatRequest()
    md = sign_metadata(
        attacker, victim.identity.participant_id, SERVICE + "Heartbeat", body_digest(req)
    )
    err = _code(lambda: victim.stub.Heartbeat(req, metadata=md, timeout=10))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "bad request signature" in err.details()
    victim.close()


def test_replayed_nonce_is_refused(server: ServerThread) -> None:
    raw = _participant(server)
    req = federation_pb2.HeartbeatRequest()
    md = raw.md("Heartbeat", req)
    raw.stub.Heartbeat(req, metadata=md, timeout=10)
    err = _code(lambda: raw.stub.Heartbeat(req, metadata=md, timeout=10))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "replayed" in err.details()
    raw.close()


def test_stale_timestamp_is_refused(server: ServerThread) -> None:
    raw = _participant(server)
    assert raw.identity is not None
    req = federation_pb2.HeartbeatRequest()
    md = sign_metadata(
        raw.key,
        raw.identity.participant_id,
        SERVICE + "Heartbeat",
        body_digest(req),
        now=time.time() - 3600,
    )
    err = _code(lambda: raw.stub.Heartbeat(req, metadata=md, timeout=10))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "behind the server clock" in err.details()
    raw.close()


def test_unknown_participant_is_refused(server: ServerThread) -> None:
    key = ParticipantIdentity.generate_key()
    channel = grpc.insecure_channel(server.target, options=grpc_options())
    from fedmetamal.v1 import federation_pb2_grpc

    stub = federation_pb2_grpc.FederationServiceStub(channel)
    req = federation_pb2.HeartbeatRequest()
    md = sign_metadata(key, "p-doesnotexist", SERVICE + "Heartbeat", body_digest(req))
    err = _code(lambda: stub.Heartbeat(req, metadata=md, timeout=10))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "unknown participant" in err.details()
    channel.close()


@pytest.mark.parametrize("version", ["2", "0", "one", ""])
def test_wrong_protocol_version_is_refused(server: ServerThread, version: str) -> None:
    raw = _participant(server)
    req = federation_pb2.HeartbeatRequest()
    md = [(k, version if k == KEY_PROTOCOL else v) for k, v in raw.md("Heartbeat", req)]
    err = _code(lambda: raw.stub.Heartbeat(req, metadata=md, timeout=10))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "protocol" in err.details() and "v1" in err.details()
    raw.close()


def test_revoked_participant_is_refused_everywhere(server: ServerThread, control_stub: Any) -> None:
    raw = _participant(server, name="to-revoke")
    assert raw.identity is not None
    pid = raw.identity.participant_id
    spec = post_task(server, pid)
    token = server.server.operator_token_file.read_text().strip()
    control_stub.RevokeParticipant(
        control_pb2.ParticipantRef(participant_id=pid),
        metadata=[("authorization", f"Bearer {token}")],
    )
    # its open task is withdrawn with the reason
    assert task_outcome(server, spec.task_id) == ("refused", "participant revoked")
    header = federation_pb2.UploadHeader(task_id=spec.task_id, run_id=spec.run_id)
    calls = {
        "Heartbeat": lambda: raw.call("Heartbeat", federation_pb2.HeartbeatRequest()),
        "PullTask": lambda: raw.call("PullTask", federation_pb2.PullTaskRequest()),
        "ReportSummary": lambda: raw.call("ReportSummary", valid_summary()),
        "DownloadTask": lambda: list(
            raw.call("DownloadTask", federation_pb2.DownloadTaskRequest(task_id=spec.task_id))
        ),
        "UploadResult": lambda: signed_upload(
            raw, upload_chunks(header, {"delta": np.zeros(8, np.float32)}), header
        ),
    }
    for name, call in calls.items():
        err = _code(call)
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED, name
        assert "revoked" in err.details(), name
    # revocation is final: approving again is refused with a reason
    err = _code(
        lambda: control_stub.ApproveParticipant(
            control_pb2.ParticipantRef(participant_id=pid),
            metadata=[("authorization", f"Bearer {token}")],
        )
    )
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "revoked" in err.details()
    raw.close()


# ------------------------------------------------------------------------ enrollment


def _enroll(server: ServerThread, token: str, **fields: Any) -> federation_pb2.EnrollReply:
    raw = RawParticipant(server.target)
    req = federation_pb2.EnrollRequest(
        token=token, name="e", public_key=public_key_bytes(raw.key), protocol_version=1
    )
    for k, v in fields.items():
        setattr(req, k, v)
    try:
        return raw.stub.Enroll(req, metadata=protocol_metadata(), timeout=10)
    finally:
        raw.close()


def test_join_token_is_single_use(server: ServerThread) -> None:
    token = server.token()
    assert _enroll(server, token).participant_id
    err = _code(lambda: _enroll(server, token))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "already used" in err.details()


def test_expired_join_token_is_refused(server: ServerThread) -> None:
    token = server.token(ttl_s=0.05)
    time.sleep(0.2)
    err = _code(lambda: _enroll(server, token))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "expired" in err.details()


def test_unknown_or_missing_join_token_is_refused(server: ServerThread) -> None:
    err = _code(lambda: _enroll(server, "made-up-token"))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "not a token this server issued" in err.details()
    err = _code(lambda: _enroll(server, ""))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "join token" in err.details()


def test_refused_enrollment_does_not_burn_the_token(server: ServerThread) -> None:
    """Checks on the request come before the token is spent: the user can retry."""
    token = server.token()
    err = _code(lambda: _enroll(server, token, public_key=b"\x01" * 31))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "Ed25519 public key" in err.details()
    err = _code(lambda: _enroll(server, token, name="bad\x00name"))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "name" in err.details()
    err = _code(lambda: _enroll(server, token, protocol_version=2))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "v2" in err.details() and "v1" in err.details()
    assert _enroll(server, token).participant_id


def test_enroll_with_wrong_protocol_metadata_is_refused(server: ServerThread) -> None:
    token = server.token()
    raw = RawParticipant(server.target)
    req = federation_pb2.EnrollRequest(
        token=token, name="e", public_key=public_key_bytes(raw.key), protocol_version=1
    )
    err = _code(lambda: raw.stub.Enroll(req, metadata=[(KEY_PROTOCOL, "7")], timeout=10))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "v7" in err.details()
    raw.close()


def _postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database when FEDMETAMAL_TEST_POSTGRES_URL is set (else skip)."""
    import uuid

    import psycopg
    from sqlalchemy.engine import make_url
    from tests.service.conftest import _admin_conninfo, postgres_base_url

    admin = _admin_conninfo(postgres_base_url())
    name = f"fmm_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(admin).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_control_characters_in_enrollment_are_not_a_crash(
    backend: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The platform string goes into the database: a NUL byte (PostgreSQL text cannot hold
    one) must be cleaned or refused with a reason, never end in UNKNOWN with the SQL statement
    in the message, and never burn the join token."""
    urls = _postgres_url() if backend == "postgresql" else iter([None])
    url = next(urls)
    srv = ServerThread(tmp_path_factory.mktemp("nul"), database_url=url)
    try:
        token = srv.token()
        try:
            reply = _enroll(srv, token, platform="Linux\x00\x1b[31m")
        except grpc.RpcError as err:
            assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()[:300]
            assert "platform" in err.details() and "INSERT" not in err.details()
            reply = _enroll(srv, token, platform="Linux")  # the token is still good
        assert reply.participant_id
        raw = RawParticipant(srv.target)
        raw.enroll(srv.token())
        summary = valid_summary()
        summary.dataset_name = "a\x00b"
        summary.label_counts["\x00"] = 1
        try:
            raw.call("ReportSummary", summary)
        except grpc.RpcError as err:
            assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()[:300]
        raw.close()
    finally:
        srv.stop()
        next(urls, None)


# ------------------------------------------------------------------------ tasks


def test_pending_participant_gets_no_task(server: ServerThread, control_stub: Any) -> None:
    raw = _participant(server, approve=False, name="pending")
    assert raw.identity is not None
    pid = raw.identity.participant_id
    spec = post_task(server, pid)
    reply = raw.call("PullTask", federation_pb2.PullTaskRequest(wait_s=0.0))
    assert not reply.has_task and reply.state == "pending" and reply.retry_after_s > 0
    token = server.server.operator_token_file.read_text().strip()
    control_stub.ApproveParticipant(
        control_pb2.ParticipantRef(participant_id=pid),
        metadata=[("authorization", f"Bearer {token}")],
    )
    reply = raw.call("PullTask", federation_pb2.PullTaskRequest(wait_s=0.0))
    assert reply.has_task and reply.task.task_id == spec.task_id and reply.state == "approved"
    raw.close()


def test_download_of_another_participants_task_is_not_found(server: ServerThread) -> None:
    owner = _participant(server, name="owner")
    other = _participant(server, name="other")
    assert owner.identity is not None
    spec = post_task(server, owner.identity.participant_id)
    for task_id in (spec.task_id, "t-0000000000000000", "x" * 5000):
        req = federation_pb2.DownloadTaskRequest(task_id=task_id)
        err = _code(lambda req=req: list(other.call("DownloadTask", req)))
        assert err.code() == grpc.StatusCode.NOT_FOUND
        assert "not open for this participant" in err.details()
        assert len(err.details()) < 400  # a long made-up id is cut in the message
    # the owner can, and the other's attempts left the task open
    req = federation_pb2.DownloadTaskRequest(task_id=spec.task_id)
    tensors = decode_stream(owner.call("DownloadTask", req))
    np.testing.assert_array_equal(tensors["params"], spec.tensors["params"])
    assert task_outcome(server, spec.task_id) == ("open", None)
    owner.close()
    other.close()


def test_summary_of_one_participant_does_not_touch_another(server: ServerThread) -> None:
    a = _participant(server, name="a")
    b = _participant(server, name="b")
    assert a.identity is not None and b.identity is not None
    a.call("ReportSummary", valid_summary(n_features=3, seed=1))
    b.call("ReportSummary", valid_summary(n_features=5, seed=2))
    rec_a = server.run_sync(lambda: server.core.registry.get(a.identity.participant_id))
    rec_b = server.run_sync(lambda: server.core.registry.get(b.identity.participant_id))
    assert rec_a.summary["n_features"] == 3 and rec_b.summary["n_features"] == 5
    a.close()
    b.close()


def test_server_still_answers_after_the_refusals(server: ServerThread, control_stub: Any) -> None:
    raw = _participant(server, name="after")
    assert raw.call("Heartbeat", federation_pb2.HeartbeatRequest()).state == "approved"
    token = server.server.operator_token_file.read_text().strip()
    reply = control_stub.ListParticipants(
        control_pb2.ListParticipantsRequest(), metadata=[("authorization", f"Bearer {token}")]
    )
    assert any(p.name == "after" and p.online for p in reply.participants)
    raw.close()
