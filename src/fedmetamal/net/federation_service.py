"""``FederationService``: what participants call. A thin layer over :class:`ServerCore`.

Every call after enrollment is authenticated (Ed25519 signature over method, time, nonce and
request digest; see ``net/auth.py``) and counts as a sign of life. Whatever a participant sends
is checked before it touches the server's state: a refused call gets one status with a reason
and changes nothing.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import grpc
import numpy as np
from google.protobuf.json_format import MessageToDict

from fedmetamal.net.auth import (
    PROTOCOL_VERSION,
    AuthError,
    ReplayCache,
    RequestVerifier,
    body_digest,
    check_protocol,
    hash_secret,
    load_public_key,
    metadata_dict,
)
from fedmetamal.net.payload import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    PayloadError,
    PayloadReader,
    encode,
    from_inline,
)
from fedmetamal.service.participants import APPROVED, REVOKED, EnrollmentRefused
from fedmetamal.service.run_state import RANGE_KEYS, SUM_KEYS, feature_sums_blob
from fedmetamal.service.server_core import ServerCore
from fedmetamal.service.tasks import TaskResult
from fedmetamal.v1 import common_pb2, federation_pb2, federation_pb2_grpc

_SERVICE = "/fedmetamal.v1.FederationService/"
#: Longest a PullTask is held open (participants pull again right away).
MAX_PULL_WAIT_S = 30.0
MAX_FEATURES = 1_000_000
MAX_NAME_CHARS = 100
#: Task payloads up to this size travel inside the PullTask reply (one call less per round).
INLINE_PAYLOAD_BYTES = 1 << 20
#: Encoded task payloads kept (a round's training and evaluation tensors, a few rounds back).
_CACHED_PAYLOADS = 4
_FLOAT32_MAX = float(np.finfo(np.float32).max) ** 0.5
_KINDS = {
    "train": federation_pb2.Task.TRAIN,
    "evaluate": federation_pb2.Task.EVALUATE,
    "secagg_advertise": federation_pb2.Task.SECAGG_ADVERTISE,
    "secagg_share_keys": federation_pb2.Task.SECAGG_SHARE_KEYS,
    "secagg_masked_train": federation_pb2.Task.SECAGG_MASKED_TRAIN,
    "secagg_unmask": federation_pb2.Task.SECAGG_UNMASK,
    "summarise": federation_pb2.Task.SUMMARISE,
}


class FederationService(federation_pb2_grpc.FederationServiceServicer):
    def __init__(
        self, core: ServerCore, max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    ) -> None:
        self.core = core
        self.max_payload = max_payload_bytes
        self.verifier = RequestVerifier(core.registry.public_key, ReplayCache())
        #: id(tensors) -> (tensors, encoding job): the last few rounds' download payloads.
        self._payloads: dict[int, tuple[dict[str, np.ndarray], asyncio.Future[Any]]] = {}

    async def _auth(
        self, context: grpc.aio.ServicerContext, method: str, request: Any = None
    ) -> str:
        """The calling participant's id; aborts the call when it may not make it."""
        md = metadata_dict(context.invocation_metadata())
        try:
            pid = self.verifier.verify(md, _SERVICE + method, body_digest(request))
        except AuthError as err:
            await context.abort(err.code, str(err))
        rec = self.core.registry.get(pid)
        if rec is None or rec.state == REVOKED:
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"Participant {pid} was revoked by the operator. Ask for a new join token to "
                "take part again.",
            )
        self.core.registry.seen(pid, time.time())
        return pid

    # -- enrollment and presence -----------------------------------------------------------
    async def Enroll(self, request, context):
        md = metadata_dict(context.invocation_metadata())
        try:
            check_protocol(md)
            if request.protocol_version != PROTOCOL_VERSION:
                check_protocol({"x-fmm-protocol": str(request.protocol_version)})
            load_public_key(request.public_key)
        except AuthError as err:
            await context.abort(err.code, str(err))
        name = request.name.strip()
        if len(name) > MAX_NAME_CHARS or not name.isprintable():
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"Participant name must be printable and at most {MAX_NAME_CHARS} characters.",
            )
        if not request.token:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "No join token given.")
        try:
            rec = self.core.registry.enroll(
                hash_secret(request.token),
                name,
                bytes(request.public_key),
                "".join(ch for ch in request.platform[:200] if ch.isprintable()),
                time.time(),
            )
        except EnrollmentRefused as err:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(err))
        return federation_pb2.EnrollReply(
            participant_id=rec.participant_id,
            state=rec.state,
            heartbeat_interval_s=self.core.settings.heartbeat_interval_s,
            protocol_version=PROTOCOL_VERSION,
        )

    async def Heartbeat(self, request, context):
        pid = await self._auth(context, "Heartbeat", request)
        progress = request.progress if math.isfinite(request.progress) else 0.0
        self.core.registry.seen(
            pid,
            time.time(),
            request.activity[:20] or "idle",
            request.task_id[:64],
            min(max(progress, 0.0), 1.0),
        )
        rec = self.core.registry.get(pid)
        return federation_pb2.HeartbeatReply(
            interval_s=self.core.settings.heartbeat_interval_s,
            state=rec.state if rec else "",
            server_time=time.time(),
        )

    async def ReportSummary(self, request, context):
        pid = await self._auth(context, "ReportSummary", request)
        try:
            summary, blob = _check_summary(request)
        except ValueError as err:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"Dataset summary refused: {err}")
        self.core.registry.set_summary(pid, summary, blob)
        return federation_pb2.ReportSummaryReply(accepted=True, message="summary stored")

    # -- tasks -----------------------------------------------------------------------------
    def _check_counts(
        self, pid: str, kind: str, h: federation_pb2.UploadHeader, tensors: dict[str, np.ndarray]
    ) -> str:
        rec = self.core.registry.get(pid)
        return _check_counts_against((rec.summary if rec else None) or {}, kind, h, tensors)

    async def PullTask(self, request, context):
        pid = await self._auth(context, "PullTask", request)
        rec = self.core.registry.get(pid)
        state = rec.state if rec else ""
        if state != APPROVED:
            return federation_pb2.PullTaskReply(has_task=False, retry_after_s=5.0, state=state)
        wait = request.wait_s if math.isfinite(request.wait_s) else 0.0
        spec = await self.core.board.pull(pid, min(max(wait, 0.0), MAX_PULL_WAIT_S))
        if spec is None:
            return federation_pb2.PullTaskReply(has_task=False, retry_after_s=0.0, state=state)
        task = federation_pb2.Task(
            task_id=spec.task_id,
            run_id=spec.run_id,
            round=spec.round,
            kind=_KINDS[spec.kind],
            config_json=spec.config_json,
            slot=spec.slot,
            n_slots=spec.n_slots,
            deadline_unix=spec.deadline,
            lr=spec.lr,
        )
        if spec.secagg is not None:
            task.secagg.CopyFrom(spec.secagg)
        reply = federation_pb2.PullTaskReply(has_task=True, task=task, state=state)
        chunks = await self._encoded(spec.tensors)
        if chunks and chunks[0].header.total_bytes <= INLINE_PAYLOAD_BYTES:
            reply.payload.extend(chunks)  # small: no DownloadTask call needed
        return reply

    async def DownloadTask(self, request, context):
        pid = await self._auth(context, "DownloadTask", request)
        spec = self.core.board.get(request.task_id)
        if spec is None or spec.participant_id != pid:
            await context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"Task '{request.task_id[:64]}' is not open for this participant (finished, "
                "withdrawn or never issued); pull the next task.",
            )
        for chunk in await self._encoded(spec.tensors):
            yield chunk

    async def _encoded(self, tensors: dict[str, np.ndarray]) -> list[common_pb2.PayloadChunk]:
        """The chunks of a task's tensors, encoded (hashed and cut) once per round: every
        participant of a round downloads the same tensors object."""
        key = id(tensors)
        entry = self._payloads.get(key)
        if entry is None or entry[0] is not tensors:
            job = asyncio.ensure_future(asyncio.to_thread(lambda: list(encode(tensors))))
            entry = self._payloads[key] = (tensors, job)
            while len(self._payloads) > _CACHED_PAYLOADS:
                self._payloads.pop(next(iter(self._payloads)))
        return await entry[1]

    async def UploadResult(self, request_iterator, context):
        try:
            first = await anext(request_iterator)
        except StopAsyncIteration:
            first = None
        if first is None or first.WhichOneof("part") != "header":
            await self._auth(context, "UploadResult")
            return federation_pb2.UploadReply(
                accepted=False, reason="an upload must start with its header"
            )
        h = first.header
        # the signature covers the header, and through its SHA-256 the payload's bytes
        pid = await self._auth(context, "UploadResult", h)
        spec = self.core.board.get(h.task_id)
        if spec is None or spec.participant_id != pid:
            return federation_pb2.UploadReply(
                accepted=False,
                reason=f"task '{h.task_id[:64]}' is not open for this participant (finished, "
                "withdrawn after the deadline, or never issued)",
            )
        if h.run_id != spec.run_id or h.round != spec.round:
            reason = (
                f"upload names run '{h.run_id[:64]}' round {h.round} but the task is for run "
                f"'{spec.run_id}' round {spec.round}"
            )
            self.core.board.fail(spec.task_id, reason)
            return federation_pb2.UploadReply(accepted=False, reason=reason)
        if h.error:
            reason = f"the participant could not do the task: {h.error[:500]}"
            self.core.board.fail(spec.task_id, reason)
            return federation_pb2.UploadReply(accepted=True, reason=reason)
        reader = PayloadReader(self.max_payload, spec.expected)
        try:
            reader.header(h.payload)
            async for chunk in request_iterator:
                part = chunk.WhichOneof("part")
                if part == "header":
                    raise PayloadError("a second header in one upload")
                if part is None:
                    raise PayloadError("an upload chunk carried neither a header nor data")
                reader.data(chunk.data)
            tensors = reader.finish()
            problem = _check_result(spec.kind, h, tensors) or self._check_counts(
                pid, spec.kind, h, tensors
            )
        except PayloadError as err:
            problem = str(err)
        if problem:
            self.core.board.fail(spec.task_id, problem)
            return federation_pb2.UploadReply(accepted=False, reason=problem)
        self.core.board.complete(
            TaskResult(
                task_id=spec.task_id,
                participant_id=pid,
                num_samples=int(h.num_samples),
                steps=int(h.steps),
                train_loss=float(h.train_loss),
                metrics={str(k)[:64]: float(v) for k, v in list(h.metrics.items())[:64]},
                tensors=tensors,
                secagg=h.secagg if h.HasField("secagg") else None,
            )
        )
        return federation_pb2.UploadReply(accepted=True)


def _check_counts_against(
    summary: dict[str, Any],
    kind: str,
    h: federation_pb2.UploadHeader,
    tensors: dict[str, np.ndarray],
) -> str:
    """Counts a participant claims may not exceed what its dataset summary reported: one
    participant must not outweigh the rest by claiming more rows than it has."""
    n_train = int(summary.get("n_train", 0)) + int(summary.get("n_unlabelled", 0))
    if kind in ("train", "secagg_masked_train") and h.num_samples > n_train:
        return f"an update claiming {h.num_samples} samples; this participant reported {n_train}"
    if kind == "evaluate":
        n_test = int(summary.get("n_test", 0))
        total = sum(int(t.sum(dtype=np.float64)) for t in tensors.values())
        if total > n_test:
            return (
                f"evaluation histograms counting {total} files; this participant reported {n_test}"
            )
    return ""


def _check_result(kind: str, h: federation_pb2.UploadHeader, tensors: dict[str, np.ndarray]) -> str:
    """Why a result is unusable ("" when it is fine): the server never aggregates NaN."""
    if kind.startswith("secagg"):
        if not h.HasField("secagg") and kind != "secagg_masked_train":
            return "a secure-aggregation result without its protocol message"
        if kind == "secagg_masked_train" and h.num_samples == 0:
            return "an update from 0 training samples"
        return ""
    if kind == "train":
        for name, t in tensors.items():
            if not np.isfinite(t).all():
                nan, inf = int(np.isnan(t).sum()), int(np.isinf(t).sum())
                return f"non-finite values in '{name}' ({nan} NaN, {inf} inf)"
            norm = float(np.linalg.norm(t.astype(np.float64)))
            if not norm < _FLOAT32_MAX:  # its square or any weighted sum would overflow
                return f"'{name}' has norm {norm:.3g}, beyond float32 arithmetic"
        if h.num_samples == 0:
            return "an update from 0 training samples"
        if not math.isfinite(h.train_loss):
            return "non-finite training loss"
    elif kind == "summarise":
        if (tensors["histogram"] < 0).any() or (tensors["label_counts"] < 0).any():
            return "negative counts in a heterogeneity summary"
        if not all(np.isfinite(tensors[k]).all() for k in ("feature_sum", "feature_sumsq")):
            return "non-finite feature sums in a heterogeneity summary"
    else:
        if any((t < 0).any() for t in tensors.values()):
            return "negative counts in an evaluation histogram"
        if not math.isfinite(h.metrics.get("loss_sum", math.nan)):
            return "evaluation without a finite loss_sum"
    return ""


def _check_summary(msg: common_pb2.DatasetSummary) -> tuple[dict[str, Any], bytes]:
    """The summary as JSON-ready data and the feature sums as a blob; ValueError when off."""
    d = msg.n_features
    if not 0 < d <= MAX_FEATURES:
        raise ValueError(f"n_features {d} is outside 1..{MAX_FEATURES}")
    if msg.n_train == 0:
        raise ValueError("no labelled training rows (n_train = 0)")
    if msg.feature_names and len(msg.feature_names) != d:
        raise ValueError(f"{len(msg.feature_names)} feature names for {d} features")
    if len(msg.label_counts) > 8 or len(msg.family_counts) > 10_000:
        raise ValueError("too many label or family counts")
    sums: dict[str, np.ndarray] = {}
    for t in msg.feature_sums:
        if t.spec.name in sums:
            raise ValueError(f"feature sum '{t.spec.name}' given twice")
        try:
            arr = from_inline(t)
        except PayloadError as err:
            raise ValueError(str(err)) from None
        if arr.dtype != np.float64 or arr.shape != (d,):
            raise ValueError(f"feature sum '{t.spec.name}' must be float64 of shape ({d},)")
        if not np.isfinite(arr).all():
            raise ValueError(f"feature sum '{t.spec.name}' holds NaN or inf")
        if t.spec.name not in SUM_KEYS + RANGE_KEYS:
            raise ValueError(f"unknown feature sum '{t.spec.name[:40]}'")
        sums[t.spec.name] = arr
    if sorted(sums) != sorted(SUM_KEYS + RANGE_KEYS):
        raise ValueError(f"feature sums must be exactly {', '.join(SUM_KEYS + RANGE_KEYS)}")
    if (sums["log_min"] > sums["log_max"]).any():
        raise ValueError("log_min exceeds log_max")
    summary = MessageToDict(msg, preserving_proto_field_name=True)
    summary.pop("feature_sums", None)
    for key in ("n_train", "n_unlabelled", "n_test"):
        summary[key] = int(getattr(msg, key))
    summary["n_features"] = d
    summary["label_counts"] = {k: int(v) for k, v in msg.label_counts.items()}
    summary["family_counts"] = {k: int(v) for k, v in msg.family_counts.items()}
    summary["feature_names"] = list(msg.feature_names)
    return summary, feature_sums_blob(sums)
