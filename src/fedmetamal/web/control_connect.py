"""``ControlService`` over the Connect protocol, for the dashboard in the browser.

It does what the gRPC servicer (:mod:`fedmetamal.net.control_service`) does, on the same
:class:`ServerCore` and with the same record -> message converters; only the transport, the
credential (a browser session, checked by :mod:`fedmetamal.web.auth`) and the error type
differ. ``WatchRun`` streams end when the web server stops, so shutdown never waits on them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.request import RequestContext

from fedmetamal.errors import ConfigError, FedMetaMalError
from fedmetamal.net.control_service import (
    event_message,
    events_reply,
    model_message,
    participant_message,
    participant_reply,
    round_message,
    run_message,
    server_info_message,
)
from fedmetamal.net.payload import encode, file_chunks
from fedmetamal.service.events import WatcherTooSlow
from fedmetamal.service.events import list_events as stored_events
from fedmetamal.service.model_files import export_model, model_tensors
from fedmetamal.service.run_heterogeneity import stored_report
from fedmetamal.service.server_core import RunNotAllowed, ServerCore
from fedmetamal.service.store import NotFound
from fedmetamal.v1 import common_pb2, control_pb2

T = TypeVar("T")


def code_of(err: FedMetaMalError) -> Code:
    """The Connect code for a user error (as the gRPC servicer maps them)."""
    if isinstance(err, NotFound):
        return Code.NOT_FOUND
    if isinstance(err, RunNotAllowed):
        return Code.FAILED_PRECONDITION
    if isinstance(err, ConfigError):
        return Code.INVALID_ARGUMENT
    return Code.FAILED_PRECONDITION


def user_errors(fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """Turn FedMetaMalError into a ConnectError carrying its message (problem + fix)."""

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return await fn(*args, **kwargs)
        except FedMetaMalError as err:
            raise ConnectError(code_of(err), str(err)) from None

    return wrapper


class Closing:
    """Ends long-lived streams when the web server stops: each stream races its next item
    against this, so uvicorn's graceful shutdown is not held up by a watcher that never ends."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    def close(self) -> None:
        self.event.set()

    async def race(self, source: AsyncIterator[T]) -> AsyncIterator[T]:
        """The items of ``source`` until it ends or :meth:`close` is called."""
        if self.event.is_set():
            return
        closing = asyncio.ensure_future(self.event.wait())
        nxt: asyncio.Future[T] | None = None
        try:
            while True:
                nxt = asyncio.ensure_future(anext(source))
                await asyncio.wait({nxt, closing}, return_when=asyncio.FIRST_COMPLETED)
                if not nxt.done():
                    return
                try:
                    item = nxt.result()
                except StopAsyncIteration:
                    return
                nxt = None
                yield item
        finally:
            closing.cancel()
            if nxt is not None and not nxt.done():  # stopped, or the client went away
                nxt.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                    await nxt
            aclose = getattr(source, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(RuntimeError, asyncio.CancelledError):
                    await aclose()


class ConnectControl:
    """Implements the generated ``ControlService`` protocol on the server core."""

    def __init__(self, core: ServerCore, address: str, tls: bool, closing: Closing) -> None:
        self.core = core
        self.address = address
        self.tls = tls
        self.closing = closing

    # -- server ----------------------------------------------------------------------------
    @user_errors
    async def get_server_info(
        self, request: control_pb2.GetServerInfoRequest, ctx: RequestContext
    ) -> control_pb2.ServerInfo:
        return server_info_message(self.core, self.address, self.tls)

    # -- runs ------------------------------------------------------------------------------
    @user_errors
    async def create_run(
        self, request: control_pb2.CreateRunRequest, ctx: RequestContext
    ) -> control_pb2.Run:
        rec = self.core.create_run(
            request.name,
            request.config_json,
            list(request.participant_ids),
            request.start,
            simulated=request.simulated_participants,
        )
        return run_message(rec)

    @user_errors
    async def start_run(self, request: control_pb2.RunRef, ctx: RequestContext) -> control_pb2.Run:
        return run_message(self.core.start_run(request.run_id))

    @user_errors
    async def pause_run(self, request: control_pb2.RunRef, ctx: RequestContext) -> control_pb2.Run:
        return run_message(self.core.pause_run(request.run_id))

    @user_errors
    async def resume_run(self, request: control_pb2.RunRef, ctx: RequestContext) -> control_pb2.Run:
        return run_message(self.core.resume_run(request.run_id))

    @user_errors
    async def stop_run(self, request: control_pb2.RunRef, ctx: RequestContext) -> control_pb2.Run:
        return run_message(self.core.stop_run(request.run_id))

    @user_errors
    async def get_run(self, request: control_pb2.RunRef, ctx: RequestContext) -> control_pb2.Run:
        run = run_message(self.core.store.get_run(request.run_id))
        run.heterogeneity_json = stored_report(self.core.data_dir, request.run_id)
        return run

    @user_errors
    async def list_runs(
        self, request: control_pb2.ListRunsRequest, ctx: RequestContext
    ) -> control_pb2.ListRunsReply:
        return control_pb2.ListRunsReply(runs=[run_message(r) for r in self.core.store.list_runs()])

    @user_errors
    async def list_rounds(
        self, request: control_pb2.RunRef, ctx: RequestContext
    ) -> control_pb2.ListRoundsReply:
        self.core.store.get_run(request.run_id)
        rows = self.core.store.list_rounds(request.run_id)
        return control_pb2.ListRoundsReply(rounds=[round_message(r) for r in rows])

    async def watch_run(
        self, request: control_pb2.WatchRunRequest, ctx: RequestContext
    ) -> AsyncIterator[control_pb2.Event]:
        if request.run_id:
            try:
                self.core.store.get_run(request.run_id)
            except NotFound as err:
                raise ConnectError(Code.NOT_FOUND, str(err)) from None
        after = min(request.after_seq, 2**63 - 1)  # the databases' integer range
        try:
            async for ev in self.closing.race(self.core.bus.watch(request.run_id or None, after)):
                yield event_message(ev)
        except WatcherTooSlow as err:
            raise ConnectError(Code.RESOURCE_EXHAUSTED, str(err)) from None

    @user_errors
    async def list_events(
        self, request: control_pb2.ListEventsRequest, ctx: RequestContext
    ) -> control_pb2.ListEventsReply:
        page = await asyncio.to_thread(
            stored_events,
            self.core.store,
            request.run_id,
            request.before_seq,
            request.limit,
            list(request.kinds),
        )
        return events_reply(page)

    # -- participants ----------------------------------------------------------------------
    @user_errors
    async def list_participants(
        self, request: control_pb2.ListParticipantsRequest, ctx: RequestContext
    ) -> control_pb2.ListParticipantsReply:
        return control_pb2.ListParticipantsReply(
            participants=[participant_message(v) for v in self.core.registry.views()]
        )

    @user_errors
    async def approve_participant(
        self, request: control_pb2.ParticipantRef, ctx: RequestContext
    ) -> control_pb2.Participant:
        self.core.approve(request.participant_id)
        return participant_reply(self.core, request.participant_id)

    @user_errors
    async def revoke_participant(
        self, request: control_pb2.ParticipantRef, ctx: RequestContext
    ) -> control_pb2.Participant:
        self.core.revoke(request.participant_id)
        return participant_reply(self.core, request.participant_id)

    @user_errors
    async def create_join_token(
        self, request: control_pb2.CreateJoinTokenRequest, ctx: RequestContext
    ) -> control_pb2.JoinToken:
        token, expires, command = self.core.create_join_token(
            request.ttl_s, request.auto_approve, request.note[:200]
        )
        return control_pb2.JoinToken(token=token, expires_unix=expires, command=command)

    # -- models ----------------------------------------------------------------------------
    @user_errors
    async def list_models(
        self, request: control_pb2.ListModelsRequest, ctx: RequestContext
    ) -> control_pb2.ListModelsReply:
        models = self.core.store.list_models(request.run_id or None)
        return control_pb2.ListModelsReply(models=[model_message(m) for m in models])

    async def download_model(
        self, request: control_pb2.ModelRef, ctx: RequestContext
    ) -> AsyncIterator[common_pb2.PayloadChunk]:
        try:
            tensors = await asyncio.to_thread(
                model_tensors, self.core.store, self.core.data_dir, request.model_id
            )
        except FedMetaMalError as err:
            raise ConnectError(code_of(err), str(err)) from None
        for chunk in encode(tensors):
            yield chunk

    async def export_model(
        self, request: control_pb2.ExportModelRequest, ctx: RequestContext
    ) -> AsyncIterator[control_pb2.FileChunk]:
        try:
            exported = await asyncio.to_thread(
                export_model, self.core.store, self.core.data_dir, request.model_id, request.format
            )
        except FedMetaMalError as err:
            raise ConnectError(code_of(err), str(err)) from None
        for chunk in file_chunks(exported.data, exported.name, exported.media_type):
            yield chunk
