"""Structure-aware fuzzing of what the server accepts from participants, over real gRPC.

Hypothesis builds DatasetSummary, PullTaskRequest, HeartbeatRequest and UploadChunk streams
near the valid ones (random counts, names, inline tensors of random dtype/shape/bytes, NaN and
infinite numbers, broken stream orders) and sends them with valid signatures to one server.
Each message is either taken exactly as sent or refused with a status and a reason; a refused
summary leaves the stored one as it was (never half-written); no call ends in UNKNOWN or
INTERNAL (what an exception escaping a handler produces), nothing is logged as an error, and
the server still answers normal calls afterwards.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from safetensors.numpy import load as safetensors_load
from tests.net.harness import (
    RawParticipant,
    ServerErrors,
    ServerThread,
    post_task,
    signed_upload,
    task_outcome,
    valid_summary,
)

from fedmetamal.net.auth import (
    KEY_NONCE,
    KEY_PARTICIPANT,
    KEY_PROTOCOL,
    KEY_SIGNATURE,
    KEY_TIMESTAMP,
)
from fedmetamal.net.payload import ALLOWED_DTYPES
from fedmetamal.service.run_state import RANGE_KEYS, SUM_KEYS
from fedmetamal.v1 import common_pb2, control_pb2, control_pb2_grpc, federation_pb2

P = 6  # the fuzzed tasks expect delta float32 (6,)
FUZZ = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
#: What an unhandled exception in a servicer (or the gRPC core failing) looks like.
CRASH_CODES = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}
KEYS = SUM_KEYS + RANGE_KEYS  # the feature sums a summary carries
DTYPES = [*sorted(ALLOWED_DTYPES), "float128", "complex64", "object", "<f8", "", "f" * 300]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    srv = ServerThread(tmp_path_factory.mktemp("fuzz"))
    srv.errors = ServerErrors(srv)  # type: ignore[attr-defined]
    srv.codes = []  # type: ignore[attr-defined]  # every status code a fuzzed call got
    try:
        yield srv
    finally:
        srv.errors.close()  # type: ignore[attr-defined]
        srv.stop()


@pytest.fixture(scope="module")
def raw(server: ServerThread) -> Iterator[RawParticipant]:
    r = RawParticipant(server.target)
    r.enroll(server.token(), name="fuzzer")
    r.call("ReportSummary", valid_summary(n_features=3, seed=99))
    try:
        yield r
    finally:
        r.close()


def _pid(raw: RawParticipant) -> str:
    assert raw.identity is not None
    return raw.identity.participant_id


def _call(server: ServerThread, fn: Any) -> tuple[Any, grpc.RpcError | None]:
    """Run a call; returns (reply, None) or (None, error), recording the status code."""
    try:
        reply = fn()
    except grpc.RpcError as err:
        server.codes.append(err.code())  # type: ignore[attr-defined]
        assert err.code() not in CRASH_CODES, err.details()
        return None, err
    server.codes.append(grpc.StatusCode.OK)  # type: ignore[attr-defined]
    return reply, None


# ------------------------------------------------------------------------ DatasetSummary

finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
any_float = st.floats(width=64)
text = st.text(max_size=300)
u64 = st.integers(0, 2**64 - 1)


@st.composite
def inline_tensors(draw: st.DrawFn, n_features: int) -> common_pb2.InlineTensor:
    """A feature sum near the valid one: float64 (d,), with random spec or bytes at times."""
    name = draw(st.sampled_from([*SUM_KEYS, *RANGE_KEYS, "mean", "", "sum" * 80]))
    how = draw(st.sampled_from(["valid", "values", "dtype", "shape", "bytes"]))
    dtype, shape = "float64", [n_features]
    values = draw(st.lists(finite, min_size=n_features, max_size=n_features))
    if how == "values":
        values = draw(st.lists(any_float, min_size=n_features, max_size=n_features))
    if how == "dtype":
        dtype = draw(st.sampled_from(DTYPES))
    if how == "shape":
        shape = draw(
            st.lists(
                st.one_of(st.integers(-3, 12), st.sampled_from([2**31, 2**62, -(2**63)])),
                max_size=10,
            )
        )
    data = np.asarray(values, np.float64).tobytes()
    if how == "bytes" or (how in ("dtype", "shape") and draw(st.booleans())):
        data = draw(st.binary(max_size=128))
    spec = common_pb2.TensorSpec(name=name, dtype=dtype, shape=shape)
    return common_pb2.InlineTensor(spec=spec, data=data)


@st.composite
def summaries(draw: st.DrawFn) -> common_pb2.DatasetSummary:
    d = draw(st.integers(1, 5))
    msg = valid_summary(n_features=d, n_train=draw(st.integers(1, 10**6)), seed=draw(u64))
    for mutation in draw(
        st.lists(
            st.sampled_from(
                ["n_features", "n_train", "names", "counts", "sums", "strings", "times"]
            ),
            max_size=3,
        )
    ):
        if mutation == "n_features":
            msg.n_features = draw(st.sampled_from([0, d + 1, 2**32 - 1, 10**6 + 1]))
        elif mutation == "n_train":
            msg.n_train = draw(st.sampled_from([0, 2**64 - 1]))
        elif mutation == "names":
            del msg.feature_names[:]
            msg.feature_names.extend(draw(st.lists(text, max_size=d + 2)))
        elif mutation == "counts":
            msg.label_counts.clear()
            msg.label_counts.update(draw(st.dictionaries(text, u64, max_size=12)))
            msg.family_counts.clear()
            if draw(st.booleans()):
                msg.family_counts.update({f"fam{i}": 1 for i in range(10_001)})
            else:
                msg.family_counts.update(draw(st.dictionaries(text, u64, max_size=5)))
        elif mutation == "sums":
            sums = list(msg.feature_sums)
            op = draw(st.sampled_from(["replace", "drop", "duplicate", "add"]))
            i = draw(st.integers(0, len(sums) - 1))
            if op == "replace":
                sums[i] = draw(inline_tensors(d))
            elif op == "drop":
                del sums[i]
            elif op == "duplicate":
                sums.append(sums[i])
            else:
                sums.append(draw(inline_tensors(d)))
            del msg.feature_sums[:]
            msg.feature_sums.extend(sums)
        elif mutation == "strings":
            msg.dataset_name = draw(st.text(max_size=5000))
            msg.feature_schema = draw(text)
            msg.schema_digest = draw(text)
        else:
            msg.first_seen_min, msg.first_seen_max = draw(any_float), draw(any_float)
    return msg


def _summary_is_valid(msg: common_pb2.DatasetSummary) -> bool:
    """The rules a summary must meet, written out independently of the server's code."""
    d = msg.n_features
    if not 0 < d <= 10**6 or msg.n_train == 0:
        return False
    if msg.feature_names and len(msg.feature_names) != d:
        return False
    if len(msg.label_counts) > 8 or len(msg.family_counts) > 10_000:
        return False
    names = [t.spec.name for t in msg.feature_sums]
    if sorted(names) != sorted(KEYS):
        return False
    for t in msg.feature_sums:
        if t.spec.dtype != "float64" or list(t.spec.shape) != [d] or len(t.data) != 8 * d:
            return False
        if not np.isfinite(np.frombuffer(t.data, "<f8")).all():
            return False
    arrays = {t.spec.name: np.frombuffer(t.data, "<f8") for t in msg.feature_sums}
    return bool((arrays["log_min"] <= arrays["log_max"]).all())


def _stored(server: ServerThread, pid: str) -> tuple[Any, Any, Any, Any]:
    """The participant's summary and feature sums, as cached and as in the database."""

    def look() -> tuple[Any, Any, Any, Any]:
        cached = server.core.registry.get(pid)
        stored = server.core.store.get_participant(pid)
        return cached.summary, cached.feature_sums, stored.summary, stored.feature_sums

    return server.run_sync(look)


@FUZZ
@given(msg=summaries())
def test_fuzzed_summaries_are_stored_whole_or_not_at_all(
    server: ServerThread, raw: RawParticipant, msg: common_pb2.DatasetSummary
) -> None:
    pid = _pid(raw)
    before = _stored(server, pid)
    assert before[0] == before[2] and before[1] == before[3]  # cache and database agree
    reply, err = _call(server, lambda: raw.call("ReportSummary", msg))
    event("summary " + ("refused" if err else "accepted"))
    after = _stored(server, pid)
    assert after[0] == after[2] and after[1] == after[3]
    if err is not None:
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
        assert err.details().startswith("Dataset summary refused: "), err.details()
        assert not _summary_is_valid(msg), err.details()
        assert after == before  # nothing half-written
        return
    assert reply.accepted and _summary_is_valid(msg)
    summary, blob = after[0], after[1]
    assert summary["n_features"] == msg.n_features and summary["n_train"] == msg.n_train
    assert summary.get("dataset_name", "") == msg.dataset_name
    assert summary["feature_names"] == list(msg.feature_names)
    assert summary["label_counts"] == dict(msg.label_counts)
    stored = safetensors_load(blob)
    assert sorted(stored) == sorted(KEYS)
    for t in msg.feature_sums:
        np.testing.assert_array_equal(stored[t.spec.name], np.frombuffer(t.data, "<f8"))


# ------------------------------------------------------------------------ PullTask, Heartbeat

odd_waits = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, -1e308, -0.0, 0.0, 5e-324, -1.0]),
    st.floats(max_value=0.02),
)


@FUZZ
@given(wait=st.one_of(odd_waits, st.floats()), with_task=st.booleans())
def test_fuzzed_pull_waits(
    server: ServerThread, raw: RawParticipant, wait: float, with_task: bool
) -> None:
    """Any wait_s is clamped: NaN, infinities and negatives do not wait or crash, huge ones
    are capped (the client gives up first here), and an open task comes back at once."""
    spec = post_task(server, _pid(raw), n_params=P) if with_task else None
    if not with_task and not (wait <= 0.02 or not math.isfinite(wait)):
        wait = -wait  # a long finite wait without a task would only test the clock
    req = federation_pb2.PullTaskRequest(wait_s=wait)
    reply, err = _call(server, lambda: raw.call("PullTask", req, timeout=5))
    assert err is None, err.details()
    if spec is not None:
        assert reply.has_task and reply.task.task_id == spec.task_id
        assert reply.task.round == spec.round and reply.state == "approved"
        server.run_sync(lambda: server.core.board.withdraw([spec.task_id]))
    else:
        assert not reply.has_task and reply.state == "approved"


@FUZZ
@given(activity=st.text(max_size=2000), task_id=st.text(max_size=2000), progress=st.floats())
def test_fuzzed_heartbeats(
    server: ServerThread, raw: RawParticipant, activity: str, task_id: str, progress: float
) -> None:
    req = federation_pb2.HeartbeatRequest(activity=activity, task_id=task_id, progress=progress)
    reply, err = _call(server, lambda: raw.call("Heartbeat", req))
    assert err is None, err.details()
    assert reply.state == "approved" and reply.interval_s > 0
    presence = server.run_sync(lambda: server.core.registry._presence[_pid(raw)])
    assert 0.0 <= presence.progress <= 1.0
    assert len(presence.activity) <= 20 and len(presence.task_id) <= 64
    assert presence.online


SIGNED_KEYS = [KEY_PROTOCOL, KEY_PARTICIPANT, KEY_TIMESTAMP, KEY_NONCE, KEY_SIGNATURE]
# gRPC metadata values are printable ASCII
header_text = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=120)


@FUZZ
@given(key=st.sampled_from(SIGNED_KEYS), value=st.one_of(header_text, st.none()))
def test_fuzzed_authentication_metadata(
    server: ServerThread, raw: RawParticipant, key: str, value: str | None
) -> None:
    """One authentication value replaced (or dropped, for None): refused as unauthenticated or
    as the wrong protocol, unless it means the same as the original."""
    req = federation_pb2.HeartbeatRequest()
    md = raw.md("Heartbeat", req)
    original = dict(md)[key]
    md = [(k, v) for k, v in md if k != key] + ([] if value is None else [(key, value)])
    reply, err = _call(server, lambda: raw.stub.Heartbeat(req, metadata=md, timeout=10))
    same = value == original or (
        key == KEY_PROTOCOL and value is not None and value.isdigit() and int(value) == 1
    )
    if err is None:
        assert same and reply.state == "approved", value
        return
    assert not same, err.details()
    want = (
        grpc.StatusCode.FAILED_PRECONDITION
        if key == KEY_PROTOCOL
        else grpc.StatusCode.UNAUTHENTICATED
    )
    assert err.code() == want, err.details()
    assert len(err.details()) < 1000


# ------------------------------------------------------------------------ UploadResult


UPLOAD_FAULTS = (
    "task",
    "run",
    "round",
    "num_samples",
    "steps",
    "train_loss",
    "metrics",
    "values",
    "tensors",
    "total",
    "sha",
    "extra_data",
    "order",
    "sign",
)


@st.composite
def uploads(draw: st.DrawFn) -> dict[str, Any]:
    """A valid upload with none, one or a few of its parts broken: header fields, tensor
    specs, byte count, SHA-256, data cut into chunks, order of the chunks, signature."""
    faults = set(
        draw(
            st.one_of(st.just([]), st.lists(st.sampled_from(UPLOAD_FAULTS), min_size=1, max_size=3))
        )
    )

    def pick(fault: str, valid: Any, broken: st.SearchStrategy[Any]) -> Any:
        return draw(broken) if fault in faults else valid

    values = draw(st.lists(finite, min_size=P, max_size=P))
    values = pick("values", values, st.lists(any_float, min_size=P, max_size=P))
    with np.errstate(over="ignore"):  # doubles beyond float32 become inf: fine here
        data = np.asarray(values, np.float64).astype(np.float32).tobytes()
    plan: dict[str, Any] = {
        "task": pick("task", "own", st.just("other")),
        "run": pick("run", "own", st.just("other")),
        "round": pick("round", 0, st.sampled_from([1, 2**32 - 1])),
        "num_samples": draw(u64.filter(bool)) if "num_samples" not in faults else 0,
        "steps": pick("steps", 3, u64),
        "train_loss": pick("train_loss", 0.5, any_float),
        "metrics": pick(
            "metrics", {}, st.dictionaries(st.text(max_size=80), any_float, max_size=5)
        ),
        "tensors": [("delta", "float32", [P])],
        "data": data,
    }
    if "tensors" in faults:
        plan["tensors"] = draw(
            st.lists(
                st.tuples(
                    st.sampled_from(["delta", "extra.x", "", "d" * 250]),
                    st.sampled_from(DTYPES),
                    st.lists(st.integers(-2, 9), max_size=3),
                ),
                max_size=3,
            )
        )
        if draw(st.booleans()):
            plan["data"] = draw(st.binary(max_size=80))
    plan["total"] = "random" if "total" in faults else "right"
    plan["total_value"] = draw(u64)
    plan["sha"] = pick("sha", "right", st.sampled_from(["random", "short"]))
    plan["cuts"] = sorted(draw(st.lists(st.integers(0, len(plan["data"])), max_size=4)))
    plan["extra_data"] = pick("extra_data", b"", st.sampled_from([b"\0", b"x" * 9]))
    plan["order"] = pick(
        "order", "normal", st.sampled_from(["data first", "two headers", "empty chunk", "none"])
    )
    plan["sign"] = pick("sign", "header", st.just("other header"))
    return plan


def _build_upload(
    plan: dict[str, Any], spec: Any, max_samples: int
) -> tuple[list[Any], Any, Any, bool]:
    """(chunks, header to sign, header sent, whether the plan is a valid upload)."""
    h = federation_pb2.UploadHeader(
        task_id=spec.task_id if plan["task"] == "own" else "t-not-mine",
        run_id=spec.run_id if plan["run"] == "own" else "run-other",
        round=plan["round"],
        num_samples=plan["num_samples"],
        steps=plan["steps"],
        train_loss=plan["train_loss"],
    )
    h.metrics.update(plan["metrics"])
    data = plan["data"]
    specs = [common_pb2.TensorSpec(name=n, dtype=t, shape=s) for n, t, s in plan["tensors"]]
    h.payload.tensors.extend(specs)
    right_total = len(data) if plan["tensors"] == [("delta", "float32", [P])] else None
    h.payload.total_bytes = plan["total_value"] if plan["total"] == "random" else len(data)
    digest = hashlib.sha256(data + plan["extra_data"]).digest()
    if plan["sha"] == "random":
        digest = hashlib.sha256(b"random" + data).digest()
    elif plan["sha"] == "short":
        digest = digest[:12]
    h.payload.sha256 = digest
    bounds = [0, *plan["cuts"], len(data)]
    pieces = [data[a:b] for a, b in itertools.pairwise(bounds)]
    if plan["extra_data"]:
        pieces.append(plan["extra_data"])
    body = [federation_pb2.UploadChunk(data=p) for p in pieces]
    head = federation_pb2.UploadChunk(header=h)
    order = plan["order"]
    chunks = {
        "normal": [head, *body],
        "data first": [*body[:1], head, *body[1:]] if body else [head, head],
        "two headers": [head, *body, head],
        "empty chunk": [head, federation_pb2.UploadChunk(), *body],
        "none": [],
    }[order]
    signed: Any = h if chunks and chunks[0].WhichOneof("part") == "header" else None
    if plan["sign"] == "other header" and signed is not None:
        signed = federation_pb2.UploadHeader(task_id=h.task_id, round=(h.round + 1) % 2**32)
    values = np.frombuffer(data, "<f4") if right_total is not None else None
    valid = (
        plan["task"] == "own"
        and plan["run"] == "own"
        and plan["round"] == spec.round
        and 0 < plan["num_samples"] <= max_samples  # no more rows than it reported
        and math.isfinite(plan["train_loss"])
        and right_total is not None
        and h.payload.total_bytes == right_total
        and plan["sha"] == "right"
        and not plan["extra_data"]
        and order == "normal"
        and plan["sign"] == "header"
        and values is not None
        and bool(np.isfinite(values).all())
    )
    return chunks, signed, h, valid


@FUZZ
@given(plan=uploads())
def test_fuzzed_uploads_are_taken_whole_or_refused(
    server: ServerThread, raw: RawParticipant, plan: dict[str, Any]
) -> None:
    spec = post_task(server, _pid(raw), n_params=P)
    rec = server.core.registry.get(raw.identity.participant_id)
    summary = rec.summary or {}
    limit = int(summary.get("n_train", 0)) + int(summary.get("n_unlabelled", 0))
    chunks, signed, sent, valid = _build_upload(plan, spec, limit)
    try:
        reply, err = _call(server, lambda: signed_upload(raw, chunks, signed))
        event("upload " + ("status" if err else "accepted" if reply.accepted else "refused"))
        state, result = task_outcome(server, spec.task_id)
        if err is not None:
            # only the signature check answers with a status; it leaves the task alone
            assert err.code() == grpc.StatusCode.UNAUTHENTICATED, err.details()
            assert plan["sign"] == "other header" and state == "open"
            return
        assert reply.accepted == valid, (reply.reason, plan)
        if reply.accepted:
            assert state == "done"
            np.testing.assert_array_equal(
                result.tensors["delta"], np.frombuffer(plan["data"], "<f4")
            )
            assert result.num_samples == sent.num_samples
            return
        assert reply.reason and len(reply.reason) < 2000
        if state == "refused":
            assert result == reply.reason  # the run sees the same reason as the participant
        else:
            # refused before the task was looked at: it is still open for a proper upload
            assert state == "open", state
            assert plan["task"] != "own" or plan["order"] in ("data first", "none"), reply.reason
    finally:
        server.run_sync(lambda: server.core.board.withdraw([spec.task_id]))


# ------------------------------------------------------------------------ afterwards


def test_server_is_healthy_after_the_fuzzing(server: ServerThread, raw: RawParticipant) -> None:
    """Runs last: the fuzzed calls really reached the server, none crashed it, and normal
    calls (participant and operator) still work, including listing the stored summary."""
    codes = server.codes  # type: ignore[attr-defined]
    assert len(codes) >= 100 and grpc.StatusCode.OK in codes
    assert grpc.StatusCode.INVALID_ARGUMENT in codes
    assert not CRASH_CODES & set(codes)
    assert raw.call("Heartbeat", federation_pb2.HeartbeatRequest()).state == "approved"
    good = valid_summary(n_features=2, seed=7)
    assert raw.call("ReportSummary", good).accepted
    token = server.server.operator_token_file.read_text().strip()
    channel = grpc.insecure_channel(server.target)
    stub = control_pb2_grpc.ControlServiceStub(channel)
    listed = stub.ListParticipants(
        control_pb2.ListParticipantsRequest(), metadata=[("authorization", f"Bearer {token}")]
    )
    channel.close()
    mine = [p for p in listed.participants if p.participant_id == _pid(raw)]
    assert mine and mine[0].summary.n_features == 2 and mine[0].summary.dataset_name == "raw-7"
    assert server.errors.messages() == []  # type: ignore[attr-defined]
