"""Bad and hostile uploads against a real server over gRPC on loopback.

Every malformed result (wrong task, run or round, broken stream, wrong dtype or shape, NaN,
no samples, oversized) is refused with a reason that names the problem, and nothing else is
disturbed: another participant's task stays open, and a run with one hostile participant
among well-behaved ones completes every round with the good updates and a finite model.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from tests.net.harness import (
    RawParticipant,
    ServerErrors,
    ServerThread,
    post_task,
    signed_upload,
    task_outcome,
    upload_chunks,
    valid_summary,
)

from fedmetamal.fl.histogram_metrics import BINS
from fedmetamal.net.payload import MAX_MESSAGE_BYTES
from fedmetamal.v1 import common_pb2, federation_pb2, federation_pb2_grpc

P = 8  # parameters of the tasks posted here: uploads must carry delta float32 (8,)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    srv = ServerThread(tmp_path_factory.mktemp("hostile"))
    errors = ServerErrors(srv)
    srv.errors = errors  # type: ignore[attr-defined]
    try:
        yield srv
    finally:
        errors.close()
        srv.stop()


@pytest.fixture(scope="module")
def raw(server: ServerThread) -> Iterator[RawParticipant]:
    r = RawParticipant(server.target)
    r.enroll(server.token(), name="hostile")
    try:
        yield r
    finally:
        r.close()


def _pid(raw: RawParticipant) -> str:
    assert raw.identity is not None
    return raw.identity.participant_id


def _header(spec: Any, **fields: Any) -> federation_pb2.UploadHeader:
    h = federation_pb2.UploadHeader(
        task_id=spec.task_id, run_id=spec.run_id, round=spec.round, num_samples=10, steps=3
    )
    h.train_loss = 0.5
    for k, v in fields.items():
        if k == "metrics":
            h.metrics.update(v)
        else:
            setattr(h, k, v)
    return h


def _delta(n: int = P, dtype: Any = np.float32) -> np.ndarray:
    return np.linspace(-0.1, 0.1, n).astype(dtype)


@dataclass
class Case:
    """One hostile upload: build(spec) -> (chunks, header the signature covers)."""

    build: Callable[[Any], tuple[list[Any], Any]]
    reason: str  # a piece of the refusal's reason
    consumes: bool = True  # the participant's own task is failed (else it stays open)
    kind: str = "train"


def _plain(tensors: dict[str, np.ndarray], **fields: Any) -> Callable[[Any], tuple]:
    def build(spec: Any) -> tuple[list[Any], Any]:
        h = _header(spec, **fields)
        return upload_chunks(h, tensors), h

    return build


def _edit(edit: Callable[[list[Any], Any], list[Any]], **fields: Any) -> Callable[[Any], tuple]:
    """A well-formed upload of _delta(), then ``edit(chunks, header)``."""

    def build(spec: Any) -> tuple[list[Any], Any]:
        h = _header(spec, **fields)
        chunks = upload_chunks(h, {"delta": _delta()})
        chunks[0].header.CopyFrom(h)
        return edit(chunks, h), h

    return build


def _set_payload(**fields: Any) -> Callable[[list[Any], Any], list[Any]]:
    def edit(chunks: list[Any], h: Any) -> list[Any]:
        for k, v in fields.items():
            if k == "tensors":
                del h.payload.tensors[:]
                h.payload.tensors.extend(v)
            else:
                setattr(h.payload, k, v)
        chunks[0].header.CopyFrom(h)
        return chunks

    return edit


def _spec(name: str, dtype: str, shape: tuple[int, ...]) -> common_pb2.TensorSpec:
    return common_pb2.TensorSpec(name=name, dtype=dtype, shape=shape)


def _data(b: bytes) -> federation_pb2.UploadChunk:
    return federation_pb2.UploadChunk(data=b)


def _nan_delta() -> np.ndarray:
    d = _delta()
    d[[1, 4]] = np.nan
    d[6] = np.inf
    return d


def _hist(benign: np.ndarray | None = None) -> dict[str, np.ndarray]:
    b = np.zeros(BINS, np.int64) if benign is None else benign
    return {"hist.benign": b, "hist.malware": np.zeros(BINS, np.int64)}


CASES: dict[str, Case] = {
    "data before header": Case(
        lambda spec: ([_data(b"\0" * 32)], None), "must start with its header", consumes=False
    ),
    "empty stream": Case(lambda spec: ([], None), "must start with its header", consumes=False),
    "unknown task": Case(
        _plain({"delta": _delta()}, task_id="t-ffffffffffffffff"),
        "is not open for this participant",
        consumes=False,
    ),
    "wrong run": Case(_plain({"delta": _delta()}, run_id="run-other"), "names run 'run-other'"),
    "wrong round": Case(_plain({"delta": _delta()}, round=7), "round 7 but the task is for"),
    "second header": Case(
        _edit(lambda c, h: [c[0], c[1], federation_pb2.UploadChunk(header=h)]), "second header"
    ),
    "more bytes than announced": Case(
        _edit(lambda c, h: [*c, _data(b"\0" * 4)]), "more than the 32 bytes"
    ),
    "fewer bytes than announced": Case(
        _edit(lambda c, h: [c[0], _data(c[1].data[:20])]), "after 20 of the 32 bytes"
    ),
    "no data at all": Case(_edit(lambda c, h: [c[0]]), "after 0 of the 32 bytes"),
    "sha mismatch": Case(_edit(lambda c, h: [c[0], _data(bytes(32))]), "SHA-256 does not match"),
    "sha of wrong length": Case(_edit(_set_payload(sha256=b"\1" * 5)), "sha256 is 5 bytes"),
    "total_bytes wrong": Case(_edit(_set_payload(total_bytes=31)), "announces 31 bytes"),
    "float64 delta": Case(
        _plain({"delta": _delta(dtype=np.float64)}), "expected float32 (8,), got float64 (8,)"
    ),
    "wrong shape": Case(
        _plain({"delta": _delta(P + 1)}), "expected float32 (8,), got float32 (9,)"
    ),
    "2-d delta": Case(
        _plain({"delta": _delta().reshape(2, 4)}), "expected float32 (8,), got float32 (2, 4)"
    ),
    "wrong tensor name": Case(_plain({"update": _delta()}), "missing ['delta']"),
    "extra tensor": Case(
        _plain({"delta": _delta(), "extra.x": _delta(2)}), "unexpected ['extra.x']"
    ),
    "no tensors": Case(_edit(_set_payload(tensors=[], total_bytes=0)), "missing ['delta']"),
    "dtype not allowed": Case(
        _edit(_set_payload(tensors=[_spec("delta", "complex64", (4,))])), "'complex64'"
    ),
    "negative dimension": Case(
        _edit(_set_payload(tensors=[_spec("delta", "float32", (-8,))])), "negative dimension"
    ),
    "oversized payload": Case(
        _edit(_set_payload(tensors=[_spec("delta", "float32", (1 << 40,))])),
        "the limit is 1073741824 bytes",
    ),
    "shape overflows": Case(
        _edit(_set_payload(tensors=[_spec("delta", "float32", (1 << 62, 1 << 62))])),
        "overflows the byte count",
    ),
    "too many dimensions": Case(
        _edit(_set_payload(tensors=[_spec("delta", "float32", (1,) * 9)])), "9 dimensions"
    ),
    "empty tensor name": Case(_edit(_set_payload(tensors=[_spec("", "float32", (8,))])), "name"),
    "NaN and inf delta": Case(
        _plain({"delta": _nan_delta()}), "non-finite values in 'delta' (2 NaN, 1 inf)"
    ),
    "zero samples": Case(_plain({"delta": _delta()}, num_samples=0), "0 training samples"),
    "NaN train loss": Case(
        _plain({"delta": _delta()}, train_loss=float("nan")), "non-finite training loss"
    ),
    "negative histogram": Case(
        _plain(_hist(np.full(BINS, -1, np.int64)), metrics={"loss_sum": 1.0}),
        "negative counts",
        kind="evaluate",
    ),
    "evaluation without loss": Case(_plain(_hist()), "finite loss_sum", kind="evaluate"),
    "evaluation with a train payload": Case(
        _plain({"delta": _delta()}, metrics={"loss_sum": 1.0}),
        "missing ['hist.benign', 'hist.malware']",
        kind="evaluate",
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_upload_is_refused_with_its_reason(
    server: ServerThread, raw: RawParticipant, name: str
) -> None:
    case = CASES[name]
    spec = post_task(server, _pid(raw), kind=case.kind, n_params=P)
    chunks, header = case.build(spec)
    reply = signed_upload(raw, chunks, header)
    assert not reply.accepted, name
    assert case.reason in reply.reason, (name, reply.reason)
    state, why = task_outcome(server, spec.task_id)
    if case.consumes:
        # the run learns why this participant's result was dropped
        assert (state, why) == ("refused", reply.reason)
    else:
        assert state == "open"
        server.run_sync(lambda: server.core.board.withdraw([spec.task_id]))


def test_empty_chunk_is_named_as_such(server: ServerThread, raw: RawParticipant) -> None:
    """An UploadChunk with neither header nor data after the header is malformed, and the
    reason should say so rather than call it "a second header"."""
    spec = post_task(server, _pid(raw), n_params=P)
    h = _header(spec)
    chunks = upload_chunks(h, {"delta": _delta()})
    reply = signed_upload(raw, [chunks[0], federation_pb2.UploadChunk(), *chunks[1:]], h)
    assert not reply.accepted
    assert "second header" not in reply.reason, reply.reason
    assert "neither" in reply.reason or "empty" in reply.reason, reply.reason


def test_a_valid_upload_is_accepted(server: ServerThread, raw: RawParticipant) -> None:
    """The control case: what the hostile ones break is all that is wrong with them."""
    spec = post_task(server, _pid(raw), n_params=P)
    h = _header(spec, metrics={"compute_seconds": 0.25})
    reply = signed_upload(raw, upload_chunks(h, {"delta": _delta()}), h)
    assert reply.accepted, reply.reason
    state, result = task_outcome(server, spec.task_id)
    assert state == "done"
    np.testing.assert_array_equal(result.tensors["delta"], _delta())
    assert (result.num_samples, result.steps, result.train_loss) == (10, 3, 0.5)
    # a finished task takes no second upload
    reply = signed_upload(raw, upload_chunks(h, {"delta": _delta()}), h)
    assert not reply.accepted and "not open" in reply.reason


def test_signature_covers_the_upload_header(server: ServerThread, raw: RawParticipant) -> None:
    """A header signed for one result cannot carry another (e.g. a swapped payload hash)."""
    spec = post_task(server, _pid(raw), n_params=P)
    signed = _header(spec)
    upload_chunks(signed, {"delta": _delta()})
    sent = _header(spec)
    chunks = upload_chunks(sent, {"delta": -_delta()})
    with pytest.raises(grpc.RpcError) as err:
        signed_upload(raw, chunks, signed)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "bad request signature" in err.value.details()
    assert task_outcome(server, spec.task_id)[0] == "open"
    server.run_sync(lambda: server.core.board.withdraw([spec.task_id]))


def test_upload_to_another_participants_task_leaves_it_open(
    server: ServerThread, raw: RawParticipant
) -> None:
    victim = RawParticipant(server.target)
    victim.enroll(server.token(), name="victim")
    spec = post_task(server, _pid(victim), n_params=P)
    for build in (
        _plain({"delta": _nan_delta()}),  # would fail the task if it were the sender's
        _plain({"delta": _delta()}, run_id="x"),
        _plain({"delta": _delta()}),
    ):
        chunks, h = build(spec)
        reply = signed_upload(raw, chunks, h)
        assert not reply.accepted and "not open for this participant" in reply.reason
    assert task_outcome(server, spec.task_id) == ("open", None)
    # the owner's upload still counts
    h = _header(spec)
    assert signed_upload(victim, upload_chunks(h, {"delta": _delta()}), h).accepted
    assert task_outcome(server, spec.task_id)[0] == "done"
    victim.close()


def test_hostile_metrics_are_bounded(server: ServerThread, raw: RawParticipant) -> None:
    """Many or long metric names are cut to what the server keeps (64 of 64 characters)."""
    spec = post_task(server, _pid(raw), n_params=P)
    h = _header(spec, metrics={f"m{i:04d}" + "x" * 500: float(i) for i in range(1000)})
    reply = signed_upload(raw, upload_chunks(h, {"delta": _delta()}), h)
    assert reply.accepted, reply.reason
    _, result = task_outcome(server, spec.task_id)
    assert len(result.metrics) <= 64 and all(len(k) <= 64 for k in result.metrics)


def test_oversized_chunk_is_refused_by_the_transport(
    server: ServerThread, raw: RawParticipant
) -> None:
    """A chunk beyond the message limit never reaches the handler whole: the call fails with
    RESOURCE_EXHAUSTED (not UNKNOWN) and the server goes on."""
    n = MAX_MESSAGE_BYTES // 4 + 1024
    spec = post_task(server, _pid(raw), n_params=n)
    delta = np.zeros(n, np.float32)
    h = _header(spec)
    chunks = upload_chunks(h, {"delta": delta})
    big = [chunks[0], _data(delta.tobytes())]  # one message above the limit
    assert len(big[1].data) > MAX_MESSAGE_BYTES
    unlimited = [("grpc.max_send_message_length", -1)]
    channel = grpc.insecure_channel(server.target, options=unlimited)
    stub = federation_pb2_grpc.FederationServiceStub(channel)
    with pytest.raises(grpc.RpcError) as err:
        signed_upload(raw, big, h, stub=stub)
    channel.close()
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err.value.details()
    assert "larger than max" in err.value.details() or "limit" in err.value.details()
    state, why = task_outcome(server, spec.task_id)
    assert state in ("open", "refused"), (state, why)
    server.run_sync(lambda: server.core.board.withdraw([spec.task_id]))
    assert raw.call("Heartbeat", federation_pb2.HeartbeatRequest()).state == "approved"


def test_more_samples_than_reported_are_refused(server: ServerThread, raw: RawParticipant) -> None:
    """An update's weight is its num_samples: a participant that reported 20 training rows
    and claims 2**63 would outweigh everyone in the mean, so the claim must be refused."""
    raw.call("ReportSummary", valid_summary(n_features=3, n_train=20, seed=5))
    spec = post_task(server, _pid(raw), n_params=P)
    h = _header(spec, num_samples=20)
    assert signed_upload(raw, upload_chunks(h, {"delta": _delta()}), h).accepted
    for claim in (21, 2**63):
        spec = post_task(server, _pid(raw), n_params=P)
        h = _header(spec, num_samples=claim)
        reply = signed_upload(raw, upload_chunks(h, {"delta": _delta()}), h)
        assert not reply.accepted, claim
        assert str(claim) in reply.reason and "20" in reply.reason, reply.reason


def test_evaluation_counts_beyond_the_test_split_are_refused(
    server: ServerThread, raw: RawParticipant
) -> None:
    """Histogram counts are files of the local test split (n_test = 5 here); more cannot be
    real, and huge ones overflow the server's int64 sum of everyone's histograms."""
    raw.call("ReportSummary", valid_summary(n_features=3, n_train=20, seed=6))
    ok = np.zeros(BINS, np.int64)
    ok[[10, 9000]] = [2, 3]
    spec = post_task(server, _pid(raw), kind="evaluate")
    h = _header(spec, metrics={"loss_sum": 1.0})
    reply = signed_upload(raw, upload_chunks(h, _hist(ok)), h)
    assert reply.accepted, reply.reason
    for benign in (ok * 2, np.full(BINS, 2**62, np.int64)):
        spec = post_task(server, _pid(raw), kind="evaluate")
        h = _header(spec, metrics={"loss_sum": 1.0})
        reply = signed_upload(raw, upload_chunks(h, _hist(benign)), h)
        assert not reply.accepted and "5" in reply.reason, reply.reason


def test_nothing_escaped_into_the_server(server: ServerThread, raw: RawParticipant) -> None:
    """Runs last in this module: no handler raised, and a normal call still works."""
    assert raw.call("Heartbeat", federation_pb2.HeartbeatRequest()).state == "approved"
    assert server.errors.messages() == []  # type: ignore[attr-defined]


# ------------------------------------------------------------------------ a whole run


class ParticipantsThread:
    """Well-behaved in-process participants on their own event loop in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.stop_event: asyncio.Event = self._call(self._make_event())
        self.tasks: list[Any] = []
        self.logs: list[str] = []

    async def _make_event(self) -> asyncio.Event:
        return asyncio.Event()

    def _call(self, coro: Any, timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(
        self, target: str, token: str, train: Path, test: Path, state: Path, name: str
    ) -> Any:
        from fedmetamal.net.participant import JoinOptions, Participant
        from fedmetamal.net.participant_data import load_local_data

        opts = JoinOptions(
            server=target,
            data=train,
            state_dir=state,
            token=token,
            insecure=True,
            name=name,
            pull_wait_s=2.0,
        )
        part = Participant(opts, load_local_data(train, test), log=self.logs.append)
        self.tasks.append(asyncio.run_coroutine_threadsafe(part.run(self.stop_event), self.loop))
        return part

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.stop_event.set)
        for t in self.tasks:
            t.result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


class HostileWorker(threading.Thread):
    """A participant that pulls its tasks and answers each with the next garbage on its list,
    after trying to download and upload to the good participants' open tasks."""

    def __init__(self, server: ServerThread, raw: RawParticipant, script: list[str]) -> None:
        super().__init__(daemon=True)
        self.server, self.raw, self.script = server, raw, list(script)
        self.sent: list[tuple[str, str, int, str]] = []  # (task kind, case, round, reason)
        self.foreign: list[str] = []  # refusals of attacks on other participants' tasks
        self.halt = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.halt.is_set():
                reply = self.raw.call(
                    "PullTask", federation_pb2.PullTaskRequest(wait_s=0.5), timeout=10
                )
                if reply.has_task:
                    self._answer(reply.task)
        except BaseException as err:
            self.error = err

    def _answer(self, task: federation_pb2.Task) -> None:
        self._attack_others(task)
        kind = "train" if task.kind == federation_pb2.Task.TRAIN else "evaluate"
        spec = _TaskView(task.task_id, task.run_id, task.round)
        if kind == "train":
            name = self.script.pop(0) if self.script else "NaN and inf delta"
            chunks, h = _run_case(name, spec, self.server)
        else:
            name = "negative histogram"
            chunks, h = CASES[name].build(spec)
        reply = signed_upload(self.raw, chunks, h)
        self.sent.append((kind, name, task.round, reply.reason if not reply.accepted else ""))

    def _attack_others(self, task: federation_pb2.Task) -> None:
        """Download and upload to the other participants' tasks of this round (open or
        already finished): each must be refused without touching them."""
        mine = _pid(self.raw)

        def others() -> list[Any]:
            return [
                t
                for t in self.server.core.board._tasks.values()
                if t.participant_id != mine and t.run_id == task.run_id and t.round == task.round
            ]

        for t in self.server.run_sync(others)[:1]:
            req = federation_pb2.DownloadTaskRequest(task_id=t.task_id)
            try:
                list(self.raw.call("DownloadTask", req))
                self.foreign.append("downloaded another participant's task")
            except grpc.RpcError as err:
                self.foreign.append(f"{err.code().name}: {err.details()}")
            chunks, h = _plain({"delta": _nan_delta()})(_TaskView(t.task_id, t.run_id, t.round))
            reply = signed_upload(self.raw, chunks, h)
            self.foreign.append("accepted" if reply.accepted else reply.reason)


@dataclass
class _TaskView:
    task_id: str
    run_id: str
    round: int


def _run_case(name: str, spec: _TaskView, server: ServerThread) -> tuple[list[Any], Any]:
    """The named hostile upload, sized for the run's model (its delta has P parameters)."""
    board_spec = server.run_sync(lambda: server.core.board.get(spec.task_id))
    n = int(board_spec.expected["delta"][1][0])
    delta = np.zeros(n, np.float32)
    if name == "wrong shape":
        return _plain({"delta": np.zeros(n + 1, np.float32)})(spec)
    if name == "float64 delta":
        return _plain({"delta": delta.astype(np.float64)})(spec)
    if name == "NaN and inf delta":
        bad = delta.copy()
        bad[::7] = np.nan
        return _plain({"delta": bad})(spec)
    if name == "zero samples":
        return _plain({"delta": delta}, num_samples=0)(spec)
    if name == "sha mismatch":
        chunks, h = _plain({"delta": delta})(spec)
        h.payload.sha256 = hashlib.sha256(b"other").digest()
        chunks[0].header.CopyFrom(h)
        return chunks, h
    if name == "valid":
        return _plain({"delta": delta})(spec)
    if name == "huge finite delta":
        return _plain({"delta": np.full(n, 3e38, np.float32)}, num_samples=2**63)(spec)
    if name == "wrong round":
        return _plain({"delta": delta}, round=spec.round + 5)(spec)
    raise AssertionError(f"no run case {name!r}")


@dataclass
class RunOutcome:
    final: Any  # RunRecord
    rows: list[Any]  # RoundRow
    ids: dict[str, str]  # name -> participant id
    worker: HostileWorker
    events: list[Any]
    server_errors: list[str]
    good_logs: list[str]
    params_finite: bool
    n_models: int


def _hostile_run(
    tmp_path: Path, rounds: int, min_participants: int, script: list[str]
) -> RunOutcome:
    """A run over two good in-process participants and one HostileWorker, to its end."""
    from tests.net.harness import federation_files, small_config, track_posts, wait_until

    from fedmetamal.models.checkpoint import load_checkpoint
    from fedmetamal.net.participant_data import dataset_summary, load_local_data

    cfg = small_config(
        **{
            "training.rounds": rounds,
            "network.min_participants": min_participants,
            "network.round_timeout_s": 120,
        }
    )
    files = federation_files(cfg, tmp_path / "data")
    server = ServerThread(tmp_path / "server")
    track_posts(server)
    errors = ServerErrors(server)
    parts = ParticipantsThread()
    hostile = RawParticipant(server.target)
    worker = HostileWorker(server, hostile, script)
    try:
        for i in (0, 1):
            parts.start(
                server.target, server.token(), *files[i], tmp_path / f"p{i}", name=f"good{i}"
            )
        hostile.enroll(server.token(), name="hostile")
        hostile.call("ReportSummary", dataset_summary(load_local_data(*files[2])))
        wait_until(
            lambda: server.run_sync(server.core.registry.online_count) == 3, 60, "3 participants"
        )
        views = server.run_sync(server.core.registry.views)
        ids = {v.record.name: v.record.participant_id for v in views}
        worker.start()
        slots = [ids["good0"], ids["good1"], ids["hostile"]]
        run = server.run_sync(
            lambda: server.core.create_run("hostile", cfg.model_dump_json(), slots, True)
        )

        def ended() -> Any:
            r = server.run_sync(lambda: server.core.store.get_run(run.run_id))
            return r if r.state in ("completed", "failed", "stopped") else None

        final = wait_until(ended, 180, "the run to end")
        worker.halt.set()
        worker.join(15)
        store = server.core.store
        ckpt = (
            load_checkpoint(server.core.data_dir / final.checkpoint_path)
            if final.checkpoint_path
            else None
        )
        return RunOutcome(
            final=final,
            rows=server.run_sync(lambda: store.list_rounds(run.run_id)),
            ids=ids,
            worker=worker,
            events=server.run_sync(lambda: store.events_after(0, run.run_id, 10_000)),
            server_errors=errors.messages(),
            good_logs=list(parts.logs),
            params_finite=ckpt is not None and bool(ckpt.params.isfinite().all()),
            n_models=len(server.run_sync(lambda: store.list_models(run.run_id))),
        )
    finally:
        worker.halt.set()
        if worker.is_alive():
            worker.join(15)
        parts.stop()
        hostile.close()
        errors.close()
        server.stop()


def test_run_completes_despite_a_hostile_participant(tmp_path: Path) -> None:
    """Every round drops the hostile update with its reason and aggregates the two good ones."""
    rounds = 4
    script = ["NaN and inf delta", "wrong shape", "sha mismatch", "zero samples"]
    out = _hostile_run(tmp_path, rounds, 2, script)
    assert out.final.state == "completed", out.final.error
    assert out.worker.error is None, repr(out.worker.error)
    assert [r.round for r in out.rows] == list(range(1, rounds + 1))  # no extra rows
    bad, good = out.ids["hostile"], sorted([out.ids["good0"], out.ids["good1"]])
    sent = {(k, rnd): why for k, _, rnd, why in out.worker.sent}
    for row in out.rows:
        assert sorted(row.reported) == good and row.attempts == 1, row
        why = sent[("train", row.round - 1)]
        assert why and row.rejected[bad] == why, (why, row.rejected)
    assert [c for k, c, _, _ in out.worker.sent if k == "train"] == script
    assert any(k == "evaluate" for k, _, _, _ in out.worker.sent)
    assert all(why for _, _, _, why in out.worker.sent)  # every garbage upload was refused
    # its uploads and downloads aimed at the good participants' tasks were refused as well,
    # and cost them nothing: they never saw a refusal
    assert out.worker.foreign and all(
        "not open for this participant" in f for f in out.worker.foreign
    ), out.worker.foreign
    assert not [m for m in out.good_logs if "refused" in m], out.good_logs
    assert out.n_models == rounds and out.params_finite
    assert all(np.isfinite(v) for v in out.final.latest_metrics.values())
    rejected = [e for e in out.events if e.kind == "update_rejected"]
    assert {e.participant_id for e in rejected} == {bad} and len(rejected) >= rounds
    assert out.server_errors == []


def test_round_retries_until_enough_good_updates(tmp_path: Path) -> None:
    """With min_participants = 3, a refused update means a retry, not a short round: the round
    is written once, with the attempt count, after the hostile participant behaves."""
    out = _hostile_run(tmp_path, 2, 3, ["NaN and inf delta", "valid", "wrong round", "valid"])
    assert out.final.state == "completed", out.final.error
    assert out.worker.error is None, repr(out.worker.error)
    assert [(r.round, r.attempts) for r in out.rows] == [(1, 2), (2, 2)]
    assert all(len(r.reported) == 3 for r in out.rows)
    retried = [e for e in out.events if e.kind == "round_retried"]
    assert [e.round for e in retried] == [1, 2]
    assert out.n_models == 2 and out.params_finite
    assert out.server_errors == []


def test_one_huge_finite_update_does_not_fail_the_run(tmp_path: Path) -> None:
    """Finite but absurd values (3e38 in every coordinate, claiming 2**63 samples) pass the
    NaN check; one such participant must not turn the global model into inf and fail the whole
    run: the update is refused (or the round aggregates without it) and the run completes."""
    out = _hostile_run(tmp_path, 2, 2, ["huge finite delta", "huge finite delta"])
    assert out.final.state == "completed", out.final.error
    assert [r.round for r in out.rows] == [1, 2]
    assert out.params_finite
    for row in out.rows:
        assert out.ids["hostile"] in row.rejected, row
