"""``ControlService``: what operators (the CLI, scripts, the dashboard) call.

Every call needs the operator token. Errors a user can cause come back as one status with the
message that says what to fix.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable
from typing import Any

import grpc

from fedmetamal import __version__
from fedmetamal.errors import ConfigError, FedMetaMalError
from fedmetamal.net.auth import PROTOCOL_VERSION, AuthError, check_operator, metadata_dict
from fedmetamal.net.payload import encode, file_chunks
from fedmetamal.service.events import EventPage, WatcherTooSlow, list_events
from fedmetamal.service.model_files import export_model, model_tensors
from fedmetamal.service.participants import ParticipantView
from fedmetamal.service.records import EventRecord, ModelRecord, RoundRow, RunRecord
from fedmetamal.service.run_heterogeneity import stored_report
from fedmetamal.service.server_core import RunNotAllowed, ServerCore
from fedmetamal.service.store import NotFound
from fedmetamal.v1 import common_pb2, control_pb2, control_pb2_grpc


def _status_of(err: FedMetaMalError) -> grpc.StatusCode:
    if isinstance(err, NotFound):
        return grpc.StatusCode.NOT_FOUND
    if isinstance(err, RunNotAllowed):
        return grpc.StatusCode.FAILED_PRECONDITION
    if isinstance(err, ConfigError):
        return grpc.StatusCode.INVALID_ARGUMENT
    return grpc.StatusCode.FAILED_PRECONDITION


def operator_call(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Check the operator token, and turn user errors into a status with their message."""

    @functools.wraps(fn)
    async def wrapper(self: ControlService, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            self.check(context)
            return await fn(self, request, context)
        except AuthError as err:
            await context.abort(err.code, str(err))
        except FedMetaMalError as err:
            await context.abort(_status_of(err), str(err))

    return wrapper


class ControlService(control_pb2_grpc.ControlServiceServicer):
    def __init__(self, core: ServerCore, address: str, tls: bool) -> None:
        self.core = core
        self.address = address
        self.tls = tls

    def check(self, context: grpc.aio.ServicerContext) -> None:
        """Raise AuthError unless the call carries the operator token."""
        check_operator(metadata_dict(context.invocation_metadata()), self.core.operator_hash)

    # -- server ----------------------------------------------------------------------------
    @operator_call
    async def GetServerInfo(self, request, context):
        return server_info_message(self.core, self.address, self.tls)

    # -- runs ------------------------------------------------------------------------------
    @operator_call
    async def CreateRun(self, request, context):
        rec = self.core.create_run(
            request.name,
            request.config_json,
            list(request.participant_ids),
            request.start,
            simulated=request.simulated_participants,
        )
        return run_message(rec)

    @operator_call
    async def StartRun(self, request, context):
        return run_message(self.core.start_run(request.run_id))

    @operator_call
    async def PauseRun(self, request, context):
        return run_message(self.core.pause_run(request.run_id))

    @operator_call
    async def ResumeRun(self, request, context):
        return run_message(self.core.resume_run(request.run_id))

    @operator_call
    async def StopRun(self, request, context):
        return run_message(self.core.stop_run(request.run_id))

    @operator_call
    async def GetRun(self, request, context):
        run = run_message(self.core.store.get_run(request.run_id))
        run.heterogeneity_json = stored_report(self.core.data_dir, request.run_id)
        return run

    @operator_call
    async def ListRuns(self, request, context):
        return control_pb2.ListRunsReply(runs=[run_message(r) for r in self.core.store.list_runs()])

    @operator_call
    async def ListRounds(self, request, context):
        self.core.store.get_run(request.run_id)
        rows = self.core.store.list_rounds(request.run_id)
        return control_pb2.ListRoundsReply(rounds=[round_message(r) for r in rows])

    async def WatchRun(self, request, context):
        try:
            self.check(context)
        except AuthError as err:
            await context.abort(err.code, str(err))
        if request.run_id:
            try:
                self.core.store.get_run(request.run_id)
            except NotFound as err:
                await context.abort(grpc.StatusCode.NOT_FOUND, str(err))
        try:
            after = min(request.after_seq, 2**63 - 1)  # the databases' integer range
            async for ev in self.core.bus.watch(request.run_id or None, after):
                yield event_message(ev)
        except WatcherTooSlow as err:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(err))

    @operator_call
    async def ListEvents(self, request, context):
        page = await asyncio.to_thread(
            list_events,
            self.core.store,
            request.run_id,
            request.before_seq,
            request.limit,
            list(request.kinds),
        )
        return events_reply(page)

    # -- participants ----------------------------------------------------------------------
    @operator_call
    async def ListParticipants(self, request, context):
        return control_pb2.ListParticipantsReply(
            participants=[participant_message(v) for v in self.core.registry.views()]
        )

    @operator_call
    async def ApproveParticipant(self, request, context):
        self.core.approve(request.participant_id)
        return participant_reply(self.core, request.participant_id)

    @operator_call
    async def RevokeParticipant(self, request, context):
        self.core.revoke(request.participant_id)
        return participant_reply(self.core, request.participant_id)

    @operator_call
    async def CreateJoinToken(self, request, context):
        token, expires, command = self.core.create_join_token(
            request.ttl_s, request.auto_approve, request.note[:200]
        )
        return control_pb2.JoinToken(token=token, expires_unix=expires, command=command)

    # -- models ----------------------------------------------------------------------------
    @operator_call
    async def ListModels(self, request, context):
        models = self.core.store.list_models(request.run_id or None)
        return control_pb2.ListModelsReply(models=[model_message(m) for m in models])

    async def DownloadModel(self, request, context):
        try:
            self.check(context)
            tensors = await asyncio.to_thread(
                model_tensors, self.core.store, self.core.data_dir, request.model_id
            )
        except FedMetaMalError as err:  # AuthError included: its own status
            code = err.code if isinstance(err, AuthError) else _status_of(err)
            await context.abort(code, str(err))
        for chunk in encode(tensors):
            yield chunk

    async def ExportModel(self, request, context):
        try:
            self.check(context)
            exported = await asyncio.to_thread(
                export_model, self.core.store, self.core.data_dir, request.model_id, request.format
            )
        except FedMetaMalError as err:  # AuthError included: its own status
            code = err.code if isinstance(err, AuthError) else _status_of(err)
            await context.abort(code, str(err))
        for chunk in file_chunks(exported.data, exported.name, exported.media_type):
            yield chunk


# -- record -> message ---------------------------------------------------------------------
def participant_reply(core: ServerCore, participant_id: str) -> control_pb2.Participant:
    """One participant as the approve/revoke calls answer it (NotFound when unknown)."""
    for v in core.registry.views():
        if v.record.participant_id == participant_id:
            return participant_message(v)
    raise NotFound(f"No participant '{participant_id}'.")


def run_message(r: RunRecord) -> control_pb2.Run:
    import json

    rounds = 0
    with contextlib.suppress(ValueError, AttributeError):
        rounds = int(json.loads(r.config_json).get("training", {}).get("rounds", 0))
    return control_pb2.Run(
        run_id=r.run_id,
        name=r.name,
        state=r.state,
        round=r.round,
        rounds=rounds,
        config_json=r.config_json,
        participant_ids=r.participant_ids,
        created_unix=r.created_at,
        updated_unix=r.updated_at,
        error=r.error or "",
        latest_metrics=r.latest_metrics,
        mode=r.mode,
    )


def server_info_message(core: ServerCore, address: str, tls: bool) -> control_pb2.ServerInfo:
    return control_pb2.ServerInfo(
        version=__version__,
        protocol_version=PROTOCOL_VERSION,
        address=address,
        tls=tls,
        participants_online=core.registry.online_count(),
        runs_active=core.active_runs(),
        database=core.store.dialect,
        last_event_seq=core.store.last_event_seq(),
    )


def round_message(r: RoundRow) -> control_pb2.RoundInfo:
    msg = control_pb2.RoundInfo(
        round=r.round,
        started_unix=r.started_at,
        finished_unix=r.finished_at,
        sampled=r.sampled,
        reported=r.reported,
        rejected=r.rejected,
        metrics={k: v for k, v in r.metrics.items() if v == v},
        model_id=r.model_id or "",
        attempts=r.attempts,
    )
    for pid, values in r.client_metrics.items():
        msg.client_metrics[pid].values.update({k: v for k, v in values.items() if v == v})
    return msg


def event_message(e: EventRecord) -> control_pb2.Event:
    return control_pb2.Event(
        seq=e.seq,
        run_id=e.run_id or "",
        time_unix=e.time,
        kind=e.kind,
        round=e.round or 0,
        participant_id=e.participant_id or "",
        state=e.state or "",
        level=e.level,
        message=e.message,
        metrics={k: v for k, v in e.metrics.items() if v == v},
    )


def events_reply(page: EventPage) -> control_pb2.ListEventsReply:
    return control_pb2.ListEventsReply(
        events=[event_message(e) for e in page.events], has_more=page.has_more
    )


def participant_message(v: ParticipantView) -> control_pb2.Participant:
    rec = v.record
    summary = common_pb2.DatasetSummary()
    s = rec.summary or {}
    for key in ("dataset_name", "feature_schema", "schema_digest"):
        setattr(summary, key, str(s.get(key, "")))
    for key in ("n_train", "n_unlabelled", "n_test", "n_features"):
        setattr(summary, key, int(s.get(key, 0)))
    summary.label_counts.update({k: int(c) for k, c in (s.get("label_counts") or {}).items()})
    summary.family_counts.update({k: int(c) for k, c in (s.get("family_counts") or {}).items()})
    return control_pb2.Participant(
        participant_id=rec.participant_id,
        name=rec.name,
        state=rec.state,
        online=v.online,
        activity=v.activity,
        last_seen_unix=v.last_seen or 0.0,
        enrolled_unix=rec.enrolled_at,
        platform=rec.platform,
        summary=summary,
    )


def model_message(m: ModelRecord) -> control_pb2.ModelVersion:
    return control_pb2.ModelVersion(
        model_id=m.model_id,
        run_id=m.run_id,
        round=m.round,
        created_unix=m.created_at,
        num_params=m.num_params,
        feature_schema=m.feature_schema or "",
        metrics=m.metrics,
    )
