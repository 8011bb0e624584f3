"""``fedmetamal join``: a participant that enrolls once, then trains whenever the server asks.

The participant starts every call (it may sit behind NAT or a firewall): it reports its dataset
summary, heartbeats in the background, and long-polls for tasks. When the server is unreachable
it retries with exponential backoff (capped, with jitter) and carries on where it was; its
identity (participant id and Ed25519 key) is stored in its state directory, so a restart does
not enroll again. Pure Python and torch: runs on Linux, macOS and Windows.
"""

from __future__ import annotations

import asyncio
import contextlib
import platform
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np

from fedmetamal import __version__
from fedmetamal.errors import FedMetaMalError
from fedmetamal.net.auth import (
    PROTOCOL_VERSION,
    body_digest,
    protocol_metadata,
    public_key_bytes,
)
from fedmetamal.net.identity import IDENTITY_FILE, ParticipantIdentity
from fedmetamal.net.local_work import LocalWork
from fedmetamal.net.participant_data import LocalData, dataset_summary
from fedmetamal.net.participant_secagg import ParticipantSecAgg, SecAggSessionLost
from fedmetamal.net.payload import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    data_chunks,
    decode_stream,
    decode_stream_async,
    grpc_options,
    payload_header,
)
from fedmetamal.net.tls import channel_credentials, is_loopback, read_pem
from fedmetamal.privacy.secagg import ProtocolError, SecAggAborted
from fedmetamal.v1 import common_pb2, federation_pb2, federation_pb2_grpc

_SERVICE = "/fedmetamal.v1.FederationService/"
#: Errors after which the participant reconnects (the server restarts, the network drops).
RETRYABLE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)


class ParticipantStopped(FedMetaMalError):
    """The server refused this participant for good (revoked, unknown, wrong protocol)."""


@dataclass
class JoinOptions:
    server: str
    data: Path
    state_dir: Path
    token: str | None = None
    name: str = ""
    ca: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    insecure: bool = False
    pull_wait_s: float = 20.0
    max_backoff_s: float = 30.0
    #: Stop after this many tasks (tests and benchmarks); None: run until stopped.
    max_tasks: int | None = None


def _host(server: str) -> str:
    host = server.rsplit(":", 1)[0]
    return host.strip("[]")


class Participant:
    def __init__(
        self, opts: JoinOptions, data: LocalData, log: Callable[[str], None] = print
    ) -> None:
        self.opts = opts
        self.data = data
        self.log = log
        self.work = LocalWork(data, opts.state_dir)
        self.identity: ParticipantIdentity | None = None
        self.secagg = ParticipantSecAgg()
        self.activity = ("idle", "", 0.0)
        self.tasks_done = 0
        self.heartbeat_interval = 5.0
        if opts.insecure and not is_loopback(_host(opts.server)):
            raise FedMetaMalError(
                f"Plaintext (--insecure) is only allowed to a loopback server, not "
                f"'{opts.server}'.",
                "Drop --insecure and pass the server's CA certificate with --ca.",
            )

    # -- connection ------------------------------------------------------------------------
    def _channel(self) -> grpc.aio.Channel:
        if self.opts.insecure:
            return grpc.aio.insecure_channel(self.opts.server, options=grpc_options())
        ca = read_pem(self.opts.ca, "CA certificate") if self.opts.ca else None
        cert = (
            read_pem(self.opts.client_cert, "client certificate") if self.opts.client_cert else None
        )
        key = read_pem(self.opts.client_key, "client key") if self.opts.client_key else None
        creds = channel_credentials(ca, cert, key)
        return grpc.aio.secure_channel(self.opts.server, creds, options=grpc_options())

    def _md(self, method: str, request: object = None) -> list[tuple[str, str]]:
        assert self.identity is not None
        return self.identity.metadata(_SERVICE + method, body_digest(request))  # type: ignore[arg-type]

    # -- enrollment ------------------------------------------------------------------------
    async def _ensure_identity(self, stub: federation_pb2_grpc.FederationServiceStub) -> None:
        path = self.opts.state_dir / IDENTITY_FILE
        if path.is_file():
            self.identity = ParticipantIdentity.load(path)
            if self.identity.server != self.opts.server:
                self.log(
                    f"note: identity {self.identity.participant_id} was enrolled with "
                    f"{self.identity.server}; connecting to {self.opts.server}"
                )
            return
        if not self.opts.token:
            raise ParticipantStopped(
                f"No participant identity in {self.opts.state_dir} and no join token.",
                "Pass --token (or --token-file) from the operator to enroll.",
            )
        key = ParticipantIdentity.generate_key()
        request = federation_pb2.EnrollRequest(
            token=self.opts.token,
            name=self.opts.name or platform.node() or "participant",
            public_key=public_key_bytes(key),
            protocol_version=PROTOCOL_VERSION,
            platform=f"{platform.platform()} / Python {sys.version.split()[0]} / "
            f"FedMetaMal {__version__}",
        )
        reply = await stub.Enroll(request, metadata=protocol_metadata(), timeout=30)
        self.identity = ParticipantIdentity(
            reply.participant_id, self.opts.server, request.name, key
        )
        self.opts.state_dir.mkdir(parents=True, exist_ok=True)
        self.identity.save(path)
        self.log(f"enrolled as {reply.participant_id} ({reply.state}); identity in {path}")

    # -- the loop --------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Work until ``stop`` is set, ``max_tasks`` are done, or the server refuses us."""
        stop = stop or asyncio.Event()
        backoff = 1.0
        while not stop.is_set():
            channel = self._channel()
            try:
                stub = federation_pb2_grpc.FederationServiceStub(channel)
                await self._ensure_identity(stub)
                if await self._session(stub, stop):
                    return
            except grpc.aio.AioRpcError as err:
                code = err.code()
                if code not in RETRYABLE:
                    raise ParticipantStopped(
                        f"The server refused this participant: {err.details()} ({code.name})."
                    ) from None
                wait = min(self.opts.max_backoff_s, backoff) * (0.5 + random.random() / 2)
                self.log(
                    f"server {self.opts.server} unreachable ({code.name}); retrying in {wait:.1f} s"
                )
                backoff = min(self.opts.max_backoff_s, backoff * 2)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), wait)
                continue
            finally:
                await channel.close(grace=None)
            backoff = 1.0

    async def _session(
        self, stub: federation_pb2_grpc.FederationServiceStub, stop: asyncio.Event
    ) -> bool:
        """One connected stretch; True when the participant is done (max_tasks reached)."""
        summary = dataset_summary(self.data)
        await stub.ReportSummary(summary, metadata=self._md("ReportSummary", summary), timeout=60)
        beat = asyncio.create_task(self._heartbeats(stub))
        waiting_note = False
        try:
            while not stop.is_set():
                req = federation_pb2.PullTaskRequest(wait_s=self.opts.pull_wait_s)
                pull = asyncio.ensure_future(
                    stub.PullTask(
                        req, metadata=self._md("PullTask", req), timeout=self.opts.pull_wait_s + 15
                    )
                )
                stopper = asyncio.ensure_future(stop.wait())
                done, _pending = await asyncio.wait(
                    {pull, stopper}, return_when=asyncio.FIRST_COMPLETED
                )
                stopper.cancel()
                if pull not in done:
                    pull.cancel()
                    return True
                reply = pull.result()
                if not reply.has_task:
                    if reply.state == "pending" and not waiting_note:
                        self.log("waiting for the operator to approve this participant")
                        waiting_note = True
                    if reply.retry_after_s > 0:
                        with contextlib.suppress(asyncio.TimeoutError):
                            await asyncio.wait_for(stop.wait(), reply.retry_after_s)
                    continue
                await self._do_task(stub, reply.task, list(reply.payload))
                self.tasks_done += 1
                if self.opts.max_tasks is not None and self.tasks_done >= self.opts.max_tasks:
                    return True
            return True
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
                await beat

    async def _heartbeats(self, stub: federation_pb2_grpc.FederationServiceStub) -> None:
        while True:
            activity, task_id, progress = self.activity
            req = federation_pb2.HeartbeatRequest(
                activity=activity, task_id=task_id, progress=progress
            )
            with contextlib.suppress(grpc.aio.AioRpcError):
                reply = await stub.Heartbeat(req, metadata=self._md("Heartbeat", req), timeout=10)
                if reply.interval_s > 0:
                    self.heartbeat_interval = reply.interval_s
            await asyncio.sleep(self.heartbeat_interval)

    async def _do_task(
        self,
        stub: federation_pb2_grpc.FederationServiceStub,
        task: federation_pb2.Task,
        inline: list[common_pb2.PayloadChunk] | None = None,
    ) -> None:
        K = federation_pb2.Task
        kind = {
            K.SUMMARISE: "summarising",
            K.EVALUATE: "evaluating",
            K.SECAGG_ADVERTISE: "securing",
            K.SECAGG_SHARE_KEYS: "securing",
            K.SECAGG_UNMASK: "securing",
        }.get(task.kind, "training")
        self.activity = (kind, task.task_id, 0.0)
        try:
            if inline:  # small tensors came with the task
                tensors = decode_stream(inline, DEFAULT_MAX_PAYLOAD_BYTES)
            else:
                req = federation_pb2.DownloadTaskRequest(task_id=task.task_id)
                stream = stub.DownloadTask(req, metadata=self._md("DownloadTask", req), timeout=600)
                tensors = await decode_stream_async(stream, DEFAULT_MAX_PAYLOAD_BYTES)
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.NOT_FOUND:  # withdrawn meanwhile: pull the next
                self.log(f"round {task.round + 1}: task withdrawn ({err.details()})")
                self.activity = ("idle", "", 0.0)
                return
            raise
        started = time.perf_counter()
        header = federation_pb2.UploadHeader(
            task_id=task.task_id, run_id=task.run_id, round=task.round
        )
        out: dict[str, np.ndarray] = {}
        try:
            out = await asyncio.to_thread(self._compute, task, tensors, header)
        except (
            FedMetaMalError,
            ValueError,
            ProtocolError,
            SecAggAborted,
            SecAggSessionLost,
        ) as err:
            header.error = str(err) or type(err).__name__  # the server drops us from the round
        # local compute time: lets the server separate its own overhead from the slowest client
        header.metrics["compute_seconds"] = time.perf_counter() - started
        header.payload.CopyFrom(payload_header(out))
        self.activity = ("uploading", task.task_id, 1.0)

        async def chunks():
            yield federation_pb2.UploadChunk(header=header)
            for b in data_chunks(out):
                yield federation_pb2.UploadChunk(data=b)

        reply = await stub.UploadResult(
            chunks(), metadata=self._md("UploadResult", header), timeout=600
        )
        what = {
            "training": "update",
            "evaluating": "evaluation",
            "summarising": "heterogeneity summary",
        }.get(kind, "secure-aggregation step")
        where = f"run {task.run_id} round {task.round + 1}"
        if header.error:
            self.log(f"{where}: could not do the task: {header.error}")
        elif reply.accepted:
            done = f" ({header.steps} steps, loss {header.train_loss:.4f})" if header.steps else ""
            self.log(f"{where}: {what} sent{done}")
        else:
            self.log(f"{where}: {what} refused: {reply.reason}")
        self.activity = ("idle", "", 0.0)

    def _compute(
        self,
        task: federation_pb2.Task,
        tensors: dict[str, np.ndarray],
        header: federation_pb2.UploadHeader,
    ) -> dict[str, np.ndarray]:
        """The task's work (in a worker thread); fills ``header`` and returns the tensors."""
        K = federation_pb2.Task
        if task.kind == K.EVALUATE:
            out, loss_sum = self.work.evaluate(task.run_id, task.config_json, tensors)
            header.num_samples = len(self.data.y_test)
            header.metrics["loss_sum"] = loss_sum
            return out
        if task.kind == K.SUMMARISE:
            from fedmetamal.service.run_heterogeneity import summarise_for

            return summarise_for(self.data.train, tensors["edges"])
        if task.kind == K.SECAGG_ADVERTISE:
            header.secagg.CopyFrom(self.secagg.advertise(task.slot, task.secagg))
            return {}
        if task.kind == K.SECAGG_SHARE_KEYS:
            header.secagg.CopyFrom(self.secagg.share_keys(task.secagg))
            return {}
        if task.kind == K.SECAGG_UNMASK:
            header.secagg.CopyFrom(self.secagg.unmask(task.secagg))
            return {}
        if task.kind not in (K.TRAIN, K.SECAGG_MASKED_TRAIN):
            raise ValueError(f"unknown task kind {task.kind}; upgrade this participant")
        res = self.work.train(
            task.run_id, task.round, task.slot, task.lr, task.config_json, tensors
        )
        header.num_samples, header.steps, header.train_loss = (
            res.num_samples,
            res.steps,
            res.train_loss,
        )
        if task.kind == K.TRAIN:
            return res.tensors
        assert self.work.cfg is not None
        y = self.secagg.masked_input(
            task.secagg, self.work.cfg, res.tensors["delta"], res.num_samples
        )
        return {"masked": y}
