"""A blocking ControlService client for the CLI, scripts and tests: one method per call, the
operator token attached, and gRPC errors turned into one clear FedMetaMalError."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc

from fedmetamal.errors import FedMetaMalError
from fedmetamal.net.auth import bearer_metadata
from fedmetamal.net.payload import grpc_options, read_file_chunks
from fedmetamal.net.tls import channel_credentials, is_loopback, read_pem
from fedmetamal.v1 import control_pb2, control_pb2_grpc

TOKEN_ENV = "FEDMETAMAL_OPERATOR_TOKEN"


class ControlError(FedMetaMalError):
    """The server refused or could not answer an operator call."""

    def __init__(self, problem: str, fix: str | None = None, code: str = "") -> None:
        super().__init__(problem, fix)
        self.code = code


def operator_token(token: str | None, token_file: Path | None = None) -> str:
    """The operator token from the option, a file, or FEDMETAMAL_OPERATOR_TOKEN."""
    if token:
        return token
    if token_file is not None:
        if not token_file.is_file():
            raise FedMetaMalError(f"Operator token file '{token_file}' does not exist.")
        return token_file.read_text().strip()
    env = os.environ.get(TOKEN_ENV, "").strip()
    if env:
        return env
    raise FedMetaMalError(
        "No operator token.",
        f"Pass --operator-token, or set {TOKEN_ENV} (the server writes it to "
        "<data-dir>/operator.token).",
    )


class ControlClient:
    def __init__(
        self,
        server: str,
        token: str,
        ca: Path | None = None,
        insecure: bool = False,
        client_cert: Path | None = None,
        client_key: Path | None = None,
    ) -> None:
        host = server.rsplit(":", 1)[0].strip("[]")
        if insecure:
            if not is_loopback(host):
                raise FedMetaMalError(
                    f"Plaintext (--insecure) is only allowed to a loopback server, not '{server}'.",
                    "Pass the server's CA certificate with --ca instead.",
                )
            self.channel = grpc.insecure_channel(server, options=grpc_options())
        else:
            ca_pem = read_pem(ca, "CA certificate") if ca else None
            cert = read_pem(client_cert, "client certificate") if client_cert else None
            key = read_pem(client_key, "client key") if client_key else None
            creds = channel_credentials(ca_pem, cert, key)  # mutual TLS with a client cert
            self.channel = grpc.secure_channel(server, creds, options=grpc_options())
        self.server = server
        self.stub = control_pb2_grpc.ControlServiceStub(self.channel)
        self.md = bearer_metadata(token)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, method: str, request: Any, timeout: float = 60.0) -> Any:
        try:
            return getattr(self.stub, method)(request, metadata=self.md, timeout=timeout)
        except grpc.RpcError as err:
            raise _error(err, self.server) from None

    # -- calls -----------------------------------------------------------------------------
    def server_info(self) -> control_pb2.ServerInfo:
        return self.call("GetServerInfo", control_pb2.GetServerInfoRequest())

    def create_run(
        self,
        name: str,
        config_json: str,
        participant_ids: list[str],
        start: bool = False,
        simulated_participants: int = 0,
    ) -> control_pb2.Run:
        """``simulated_participants`` > 0: a run the server simulates with that many clients."""
        req = control_pb2.CreateRunRequest(
            name=name,
            config_json=config_json,
            participant_ids=participant_ids,
            start=start,
            simulated_participants=simulated_participants,
        )
        return self.call("CreateRun", req)

    def run_action(self, action: str, run_id: str) -> control_pb2.Run:
        """``action``: Start, Pause, Resume, Stop or Get."""
        return self.call(f"{action}Run", control_pb2.RunRef(run_id=run_id))

    def list_runs(self) -> list[control_pb2.Run]:
        return list(self.call("ListRuns", control_pb2.ListRunsRequest()).runs)

    def list_rounds(self, run_id: str) -> list[control_pb2.RoundInfo]:
        return list(self.call("ListRounds", control_pb2.RunRef(run_id=run_id)).rounds)

    def watch(self, run_id: str = "", after_seq: int = 0) -> Iterator[control_pb2.Event]:
        req = control_pb2.WatchRunRequest(run_id=run_id, after_seq=after_seq)
        try:
            yield from self.stub.WatchRun(req, metadata=self.md)
        except grpc.RpcError as err:
            raise _error(err, self.server) from None

    def list_events(
        self, run_id: str = "", before_seq: int = 0, limit: int = 0, kinds: list[str] | None = None
    ) -> control_pb2.ListEventsReply:
        """One page of stored events, newest first (``before_seq`` pages back)."""
        req = control_pb2.ListEventsRequest(
            run_id=run_id, before_seq=before_seq, limit=limit, kinds=kinds or []
        )
        return self.call("ListEvents", req)

    def list_participants(self) -> list[control_pb2.Participant]:
        return list(
            self.call("ListParticipants", control_pb2.ListParticipantsRequest()).participants
        )

    def approve(self, participant_id: str) -> control_pb2.Participant:
        return self.call(
            "ApproveParticipant", control_pb2.ParticipantRef(participant_id=participant_id)
        )

    def revoke(self, participant_id: str) -> control_pb2.Participant:
        return self.call(
            "RevokeParticipant", control_pb2.ParticipantRef(participant_id=participant_id)
        )

    def create_token(
        self, ttl_s: float = 0.0, auto_approve: bool = False, note: str = ""
    ) -> control_pb2.JoinToken:
        req = control_pb2.CreateJoinTokenRequest(ttl_s=ttl_s, auto_approve=auto_approve, note=note)
        return self.call("CreateJoinToken", req)

    def list_models(self, run_id: str = "") -> list[control_pb2.ModelVersion]:
        return list(self.call("ListModels", control_pb2.ListModelsRequest(run_id=run_id)).models)

    def export_model(self, model_id: str, fmt: str) -> tuple[control_pb2.FileHeader, bytes]:
        req = control_pb2.ExportModelRequest(model_id=model_id, format=fmt)
        try:
            return read_file_chunks(self.stub.ExportModel(req, metadata=self.md, timeout=600))
        except grpc.RpcError as err:
            raise _error(err, self.server) from None


def _error(err: grpc.RpcError, server: str) -> ControlError:
    code = err.code() if hasattr(err, "code") else None
    details = err.details() if hasattr(err, "details") else str(err)
    name = code.name if code is not None else "UNKNOWN"
    if code == grpc.StatusCode.UNAVAILABLE:
        return ControlError(
            f"Cannot reach the FedMetaMal server at {server} ({details}).",
            "Check the address and that `fedmetamal serve` is running; with TLS pass the "
            "server's CA certificate (--ca).",
            name,
        )
    return ControlError(details or name, code=name)
