"""Shared pieces of the network tests: a server on its own event loop in a background thread,
small federations written to files, a signing raw client, and process helpers."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

from fedmetamal.api import build_federation
from fedmetamal.config import RunConfig, build_config
from fedmetamal.net.auth import body_digest, protocol_metadata, public_key_bytes
from fedmetamal.net.control_client import ControlClient
from fedmetamal.net.identity import ParticipantIdentity
from fedmetamal.net.local_federation import write_partitions
from fedmetamal.net.payload import grpc_options
from fedmetamal.net.server import FederationServer, ServeOptions
from fedmetamal.v1 import federation_pb2, federation_pb2_grpc

REPO = Path(__file__).resolve().parents[2]


def small_config(**overrides: Any) -> RunConfig:
    """A federation that trains in about a second a round on this machine."""
    data: dict[str, Any] = {
        "dataset": {"synthetic": {"n_samples": 1500, "n_features": 64}},
        "partition": {"clients": 3},
        "model": {"hidden": [32]},
        "training": {"rounds": 3, "local_epochs": 1, "batch_size": 64},
        "network": {"round_timeout_s": 60, "retry_delay_s": 0.2},
    }
    for key, value in overrides.items():
        cur = data
        parts = key.split(".")
        for p in parts[:-1]:
            cur = cur.setdefault(p, {})
        cur[parts[-1]] = value
    return build_config(data)


def federation_files(cfg: RunConfig, folder: Path) -> list[tuple[Path, Path]]:
    return write_partitions(build_federation(cfg), folder)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerThread:
    """A FederationServer (plaintext, loopback) on an event loop in a daemon thread."""

    def __init__(self, data_dir: Path, **opts: Any) -> None:
        defaults: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": 0,
            "data_dir": data_dir,
            "insecure": True,
            "heartbeat_interval_s": 0.5,
            "heartbeat_timeout_s": 3.0,
        }
        defaults.update(opts)
        self.loop = asyncio.new_event_loop()
        self.server = FederationServer(ServeOptions(**defaults))
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.call(self.server.start())

    def call(self, coro: Any, timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def run_sync(self, fn: Callable[[], Any], timeout: float = 60) -> Any:
        """Run ``fn`` on the server's loop (the core is not thread-safe)."""

        async def wrapped() -> Any:
            return fn()

        return self.call(wrapped(), timeout)

    @property
    def core(self) -> Any:
        return self.server.core

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    def control(self) -> ControlClient:
        token = self.server.operator_token_file.read_text().strip()
        return ControlClient(self.target, token, insecure=True)

    def token(self, auto_approve: bool = True, ttl_s: float = 0.0) -> str:
        return self.run_sync(lambda: self.core.create_join_token(ttl_s, auto_approve)[0])

    def stop(self) -> None:
        try:
            self.call(self.server.stop(0.5))
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)


class RawParticipant:
    """Makes FederationService calls by hand (signed), for tests that send odd messages."""

    def __init__(self, target: str) -> None:
        self.channel = grpc.insecure_channel(target, options=grpc_options())
        self.stub = federation_pb2_grpc.FederationServiceStub(self.channel)
        self.key = ParticipantIdentity.generate_key()
        self.identity: ParticipantIdentity | None = None

    def enroll(self, token: str, name: str = "raw") -> federation_pb2.EnrollReply:
        req = federation_pb2.EnrollRequest(
            token=token, name=name, public_key=public_key_bytes(self.key), protocol_version=1
        )
        reply = self.stub.Enroll(req, metadata=protocol_metadata(), timeout=10)
        self.identity = ParticipantIdentity(reply.participant_id, "test", name, self.key)
        return reply

    def md(self, method: str, request: Any = None) -> list[tuple[str, str]]:
        assert self.identity is not None
        return self.identity.metadata(
            "/fedmetamal.v1.FederationService/" + method, body_digest(request)
        )

    def call(self, method: str, request: Any, timeout: float = 10) -> Any:
        return getattr(self.stub, method)(
            request, metadata=self.md(method, request), timeout=timeout
        )

    def close(self) -> None:
        self.channel.close()


def start_process(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    """``python -m fedmetamal ARGS`` with its output in ``log``."""
    env_cmd = [sys.executable, "-m", "fedmetamal", *args]
    fh = log.open("ab")
    import os

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(env_cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=REPO)


def wait_until(check: Callable[[], Any], timeout: float, what: str, every: float = 0.2) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what``."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


# -- hostile-input helpers (tests/net/test_hostile_input.py, test_fuzz_messages.py,
# test_security_calls.py) ------------------------------------------------------------------


def valid_summary(n_features: int = 4, n_train: int = 20, seed: int = 0) -> Any:
    """A DatasetSummary the server accepts: counts plus finite float64 feature sums."""
    import numpy as np

    from fedmetamal.net.payload import inline_tensor
    from fedmetamal.service.run_state import RANGE_KEYS, SUM_KEYS
    from fedmetamal.v1 import common_pb2

    rng = np.random.default_rng(seed)
    msg = common_pb2.DatasetSummary(
        dataset_name=f"raw-{seed}",
        n_train=n_train,
        n_test=5,
        n_features=n_features,
        feature_names=[f"f{i}" for i in range(n_features)],
    )
    msg.label_counts.update({"benign": n_train // 2, "malware": n_train - n_train // 2})
    msg.feature_sums.extend(
        inline_tensor(k, np.abs(rng.normal(size=n_features)).astype(np.float64)) for k in SUM_KEYS
    )
    lo = -np.abs(rng.normal(size=n_features))
    msg.feature_sums.extend(inline_tensor(k, v) for k, v in zip(RANGE_KEYS, (lo, -lo), strict=True))
    return msg


def post_task(
    server: ServerThread,
    participant_id: str,
    kind: str = "train",
    n_params: int = 8,
    run_id: str = "run-hostile",
    round: int = 0,
) -> Any:
    """Put one open task for ``participant_id`` on the server's board (no run needed) and
    return its TaskSpec; train tasks expect ``delta`` float32 (n_params,) back."""
    import numpy as np

    from fedmetamal.fl.histogram_metrics import BINS
    from fedmetamal.service.tasks import TaskSpec

    if kind == "train":
        expected = {"delta": ("float32", (n_params,))}
    else:
        expected = {"hist.benign": ("int64", (BINS,)), "hist.malware": ("int64", (BINS,))}
    spec = TaskSpec(
        run_id=run_id,
        round=round,
        kind=kind,
        participant_id=participant_id,
        slot=0,
        n_slots=1,
        config_json="{}",
        deadline=time.time() + 600,
        lr=0.1,
        tensors={"params": np.zeros(n_params, np.float32)},
        expected=expected,
    )
    registry = server.core.registry
    rec = registry.get(participant_id)
    if rec is not None and not rec.summary:  # a participant in a run has reported its data
        summary = {"n_train": 1000, "n_unlabelled": 0, "n_test": 1000, "n_features": n_params}
        server.run_sync(lambda: registry.set_summary(participant_id, summary, None))
    fut = server.run_sync(lambda: server.core.board.post(spec))
    server.__dict__.setdefault("_posted", {})[spec.task_id] = fut
    return spec


def task_outcome(server: ServerThread, task_id: str) -> tuple[str, Any]:
    """Where a posted task stands: ("open", None), ("refused", reason), ("done", TaskResult),
    ("cancelled", None) or ("gone", None) when the board forgot it without an outcome."""

    def look() -> tuple[str, Any]:
        board = server.core.board
        fut = board._futures.get(task_id)
        if fut is not None and not fut.done():
            return ("open", None)
        fut = getattr(server, "_posted", {}).get(task_id)
        if fut is None:
            return ("gone", None)
        if fut.cancelled():
            return ("cancelled", None)
        if fut.exception() is not None:
            return ("refused", str(fut.exception()))
        return ("done", fut.result())

    return server.run_sync(look)


def track_posts(server: ServerThread) -> None:
    """Remember every future the board hands out, so task_outcome can report finished tasks."""
    board = server.core.board
    posted: dict[str, Any] = server.__dict__.setdefault("_posted", {})
    original = board.post

    def post(spec: Any) -> Any:
        fut = original(spec)
        posted[spec.task_id] = fut
        return fut

    board.post = post  # type: ignore[method-assign]


def signed_upload(
    raw: RawParticipant,
    chunks: list[Any],
    header: Any = None,
    timeout: float = 10,
    stub: Any = None,
) -> Any:
    """Stream ``chunks`` (UploadChunk messages) to UploadResult, signed over ``header`` (the
    UploadHeader the server verifies; None for a stream that does not start with one)."""
    md = raw.md("UploadResult", header)
    return (stub or raw.stub).UploadResult(iter(chunks), metadata=md, timeout=timeout)


def upload_chunks(header: Any, tensors: dict[str, Any]) -> list[Any]:
    """A well-formed upload: ``header`` (its payload filled in from ``tensors``), then data."""
    from fedmetamal.net.payload import data_chunks, payload_header

    header.payload.CopyFrom(payload_header(tensors))
    return [
        federation_pb2.UploadChunk(header=header),
        *(federation_pb2.UploadChunk(data=b) for b in data_chunks(tensors)),
    ]


class ServerErrors:
    """Collects what escaped into a ServerThread: exceptions its event loop saw and ERROR
    log records of grpc (an unhandled servicer exception is logged there, then sent as
    UNKNOWN)."""

    def __init__(self, server: ServerThread) -> None:
        import logging

        self.loop_errors: list[dict[str, Any]] = []
        self.log_records: list[Any] = []
        outer = self

        class _Handler(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                outer.log_records.append(record)

        self._handler = _Handler(level=logging.ERROR)
        self._loggers = [logging.getLogger("grpc"), logging.getLogger("fedmetamal")]
        for lg in self._loggers:
            lg.addHandler(self._handler)
        server.run_sync(
            lambda: server.loop.set_exception_handler(lambda _l, ctx: self.loop_errors.append(ctx))
        )

    def messages(self) -> list[str]:
        return [str(c.get("message", c)) for c in self.loop_errors] + [
            r.getMessage() for r in self.log_records
        ]

    def close(self) -> None:
        for lg in self._loggers:
            lg.removeHandler(self._handler)


def start_participants(
    server: ServerThread,
    files: list[tuple[Path, Path]],
    tmp_path: Path,
    stop: asyncio.Event,
    tokens: list[str] | None = None,
    first_class: type | None = None,
) -> list[asyncio.Task[None]]:
    """In-process participants on the running event loop, one per (train, test) file pair,
    named participant-1.. in file order (``first_class``: another class for the first)."""
    from fedmetamal.net.participant import JoinOptions, Participant
    from fedmetamal.net.participant_data import load_local_data

    tokens = tokens or [server.token() for _ in files]
    tasks = []
    for i, ((train, test), token) in enumerate(zip(files, tokens, strict=True)):
        opts = JoinOptions(
            server=server.target,
            data=train,
            state_dir=tmp_path / f"p{i}",
            token=token,
            name=f"participant-{i + 1}",
            insecure=True,
        )
        cls = first_class if (i == 0 and first_class is not None) else Participant
        part = cls(opts, load_local_data(train, test), log=lambda _m: None)
        tasks.append(asyncio.create_task(part.run(stop)))
    return tasks


async def participant_ids(server: ServerThread, n: int) -> list[str]:
    """The ids of ``n`` participants once all are online with a summary, in name order."""
    with server.control() as c:

        def ready() -> list[str] | None:
            ps = sorted(c.list_participants(), key=lambda p: p.name)
            ok = [p.participant_id for p in ps if p.online and p.summary.n_train > 0]
            return ok if len(ok) == n else None

        return await asyncio.to_thread(wait_until, ready, 60, "participants")
