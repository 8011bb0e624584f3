"""``DashboardService``: browser login, accounts, the New-run form's schema and checks,
templates and model reports.

Login sets the session cookie (HttpOnly, SameSite=Strict, Secure under TLS) and the CSRF
cookie the page echoes in ``x-csrf-token``; :mod:`fedmetamal.web.auth` checks both on every
other call. Password hashing (scrypt) runs off the event loop.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

from connectrpc.code import Code
from connectrpc.errors import ConnectError, ErrorDetail
from connectrpc.request import RequestContext
from protobuf.wkt import Any as AnyMessage
from pydantic import ValidationError

from fedmetamal.config import RunConfig
from fedmetamal.errors import FedMetaMalError
from fedmetamal.service.server_core import ServerCore
from fedmetamal.v1 import dashboard_pb2 as pb
from fedmetamal.web.accounts import (
    AccountError,
    Accounts,
    NoSuchUser,
    ProtectedAccount,
    User,
    UserExists,
)
from fedmetamal.web.auth import CSRF_COOKIE, SESSION_COOKIE, Caller, WebAuth
from fedmetamal.web.control_connect import code_of

#: Dataset sources the dashboard offers for simulated runs (built in, no path on the server).
DATASETS = ("synthetic", "pe-headers")
#: Failed logins for one user name within the window after which further tries are refused
#: until the window passes (online guessing stays slow even with a weak password).
MAX_FAILED_LOGINS = 10
FAILED_LOGIN_WINDOW_S = 600.0


class LoginThrottle:
    """Counts recent failed logins per user name (in memory: a restart forgets them)."""

    def __init__(self, limit: int = MAX_FAILED_LOGINS, window_s: float = FAILED_LOGIN_WINDOW_S):
        self.limit = limit
        self.window_s = window_s
        self._lock = threading.Lock()
        self._failures: dict[str, list[float]] = {}

    def wait_s(self, username: str, now: float) -> float:
        """Seconds until ``username`` may try again (0: now)."""
        with self._lock:
            recent = [t for t in self._failures.get(username, []) if t > now - self.window_s]
            if recent:
                self._failures[username] = recent
            else:
                self._failures.pop(username, None)
            if len(recent) < self.limit:
                return 0.0
            return recent[0] + self.window_s - now

    def failed(self, username: str, now: float) -> None:
        with self._lock:
            if len(self._failures) > 10_000:  # bounded memory under a spray of names
                self._failures.clear()
            self._failures.setdefault(username, []).append(now)

    def succeeded(self, username: str) -> None:
        with self._lock:
            self._failures.pop(username, None)


class DashboardService:
    """Implements the generated ``DashboardService`` protocol."""

    def __init__(self, core: ServerCore, accounts: Accounts, auth: WebAuth) -> None:
        self.core = core
        self.accounts = accounts
        self.auth = auth
        self.throttle = LoginThrottle()

    # -- sessions --------------------------------------------------------------------------
    async def login(self, request: pb.LoginRequest, ctx: RequestContext) -> pb.LoginReply:
        username = request.username.strip()[:64]
        now = time.time()
        wait = self.throttle.wait_s(username, now)
        if wait > 0:
            raise ConnectError(
                Code.RESOURCE_EXHAUSTED,
                f"too many failed logins for '{username}': try again in {wait / 60:.0f} min",
            )
        user = await asyncio.to_thread(self.accounts.verify, username, request.password)
        if user is None:
            self.throttle.failed(username, now)
            raise ConnectError(Code.UNAUTHENTICATED, "wrong user name or password")
        self.throttle.succeeded(username)
        old = self.auth.session_token(ctx)
        if old:
            self.accounts.end_session(old)
        token, session = self.accounts.open_session(user)
        max_age = int(session.expires_at - time.time())
        secure = "; Secure" if self.auth.tls else ""
        ctx.response_headers.add(
            "set-cookie",
            f"{SESSION_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; "
            f"Max-Age={max_age}{secure}",
        )
        ctx.response_headers.add(
            "set-cookie",
            f"{CSRF_COOKIE}={session.csrf}; SameSite=Strict; Path=/; Max-Age={max_age}{secure}",
        )
        return pb.LoginReply(
            username=user.username, role=user.role, expires_unix=session.expires_at
        )

    async def logout(self, request: pb.LogoutRequest, ctx: RequestContext) -> pb.LogoutReply:
        token = self.auth.session_token(ctx)
        if token:
            self.accounts.end_session(token)
        secure = "; Secure" if self.auth.tls else ""
        for name, flags in ((SESSION_COOKIE, "; HttpOnly"), (CSRF_COOKIE, "")):
            ctx.response_headers.add(
                "set-cookie", f"{name}={flags}; SameSite=Strict; Path=/; Max-Age=0{secure}"
            )
        return pb.LogoutReply()

    async def who_am_i(self, request: pb.WhoAmIRequest, ctx: RequestContext) -> pb.WhoAmIReply:
        caller = self.auth.caller(ctx)
        if caller is None:
            return pb.WhoAmIReply(logged_in=False)
        expires = caller.session.expires_at if caller.session is not None else 0.0
        return pb.WhoAmIReply(
            logged_in=True, username=caller.username, role=caller.role, expires_unix=expires
        )

    # -- accounts --------------------------------------------------------------------------
    async def create_user(self, request: pb.CreateUserRequest, ctx: RequestContext) -> pb.User:
        try:
            user = await asyncio.to_thread(
                self.accounts.create_user,
                request.username.strip(),
                request.password,
                request.role or "viewer",
            )
        except AccountError as err:
            raise account_error(err) from None
        return _user(user)

    async def list_users(
        self, request: pb.ListUsersRequest, ctx: RequestContext
    ) -> pb.ListUsersReply:
        return pb.ListUsersReply(users=[_user(u) for u in self.accounts.list_users()])

    async def update_user(self, request: pb.UpdateUserRequest, ctx: RequestContext) -> pb.User:
        actor = _account_of(self.auth.require(ctx))
        try:
            user = await asyncio.to_thread(
                self.accounts.update_user,
                request.username.strip(),
                request.role or None,
                request.new_password or None,
                actor,
            )
        except AccountError as err:
            raise account_error(err) from None
        return _user(user)

    async def delete_user(
        self, request: pb.DeleteUserRequest, ctx: RequestContext
    ) -> pb.DeleteUserReply:
        actor = _account_of(self.auth.require(ctx))
        try:
            self.accounts.delete_user(request.username.strip(), actor)
        except AccountError as err:
            raise account_error(err) from None
        return pb.DeleteUserReply()

    async def change_password(
        self, request: pb.ChangePasswordRequest, ctx: RequestContext
    ) -> pb.ChangePasswordReply:
        caller = self.auth.require(ctx)
        if caller.session is None:
            raise ConnectError(
                Code.FAILED_PRECONDITION,
                "the operator token belongs to no account: change a user's password with "
                "UpdateUser, or `fedmetamal users passwd NAME` on the server",
            )
        # A stolen session must not be a way to guess the password: wrong current passwords
        # count like failed logins.
        now = time.time()
        wait = self.throttle.wait_s(caller.username, now)
        if wait > 0:
            raise ConnectError(
                Code.RESOURCE_EXHAUSTED,
                f"too many wrong passwords for '{caller.username}': try again in "
                f"{wait / 60:.0f} min",
            )
        try:
            await asyncio.to_thread(
                self.accounts.change_password,
                caller.username,
                request.current_password,
                request.new_password,
                self.auth.session_token(ctx),
            )
        except AccountError as err:
            if err.field == "current_password" and request.current_password:
                self.throttle.failed(caller.username, now)
            raise account_error(err) from None
        self.throttle.succeeded(caller.username)
        return pb.ChangePasswordReply()

    # -- run configuration -----------------------------------------------------------------
    async def get_config_schema(
        self, request: pb.GetConfigSchemaRequest, ctx: RequestContext
    ) -> pb.ConfigSchema:
        from fedmetamal.fl.registry import ALGORITHMS

        return pb.ConfigSchema(
            json_schema=json.dumps(RunConfig.model_json_schema()),
            defaults_json=RunConfig().model_dump_json(),
            algorithms=[
                pb.AlgorithmInfo(
                    name=name,
                    summary=cls.summary,
                    reference=cls.reference,
                    params_schema_json=json.dumps(cls.Params.model_json_schema()),
                )
                for name, cls in ALGORITHMS.items()
            ],
            datasets=list(DATASETS),
        )

    async def validate_config(
        self, request: pb.ValidateConfigRequest, ctx: RequestContext
    ) -> pb.ValidateConfigReply:
        cfg, errors = validate_config_json(request.config_json, request.simulated)
        if errors:
            return pb.ValidateConfigReply(valid=False, errors=errors)
        assert cfg is not None
        return pb.ValidateConfigReply(valid=True, normalized_json=cfg.model_dump_json())

    # -- templates -------------------------------------------------------------------------
    async def save_template(
        self, request: pb.SaveTemplateRequest, ctx: RequestContext
    ) -> pb.Template:
        _, errors = validate_config_json(request.config_json, simulated=True)
        if errors:
            detail = "; ".join(f"{e.path or '(config)'}: {e.message}" for e in errors[:5])
            raise ConnectError(Code.INVALID_ARGUMENT, f"the configuration is not valid: {detail}")
        caller = self.auth.require(ctx)
        try:
            tpl = self.accounts.save_template(request.name, request.config_json, caller.username)
        except AccountError as err:
            raise ConnectError(Code.INVALID_ARGUMENT, str(err)) from None
        return _template(tpl)

    async def list_templates(
        self, request: pb.ListTemplatesRequest, ctx: RequestContext
    ) -> pb.ListTemplatesReply:
        return pb.ListTemplatesReply(
            templates=[_template(t) for t in self.accounts.list_templates()]
        )

    # -- models ----------------------------------------------------------------------------
    async def get_model_report(
        self, request: pb.ModelReportRequest, ctx: RequestContext
    ) -> pb.ModelReport:
        if not 0.0 <= request.target_fpr < 1.0:
            raise ConnectError(
                Code.INVALID_ARGUMENT, "target_fpr must be in [0, 1) (0: the stored threshold)"
            )
        from fedmetamal.service.model_report import model_report

        try:
            return await asyncio.to_thread(
                model_report, self.core, request.model_id, request.target_fpr
            )
        except FedMetaMalError as err:
            raise ConnectError(code_of(err), str(err)) from None


def account_error(err: AccountError) -> ConnectError:
    """The Connect error for a refused account change; a FieldError detail names the input at
    fault, so the page can show the message next to it."""
    if isinstance(err, UserExists):
        code = Code.ALREADY_EXISTS
    elif isinstance(err, NoSuchUser):
        code = Code.NOT_FOUND
    elif isinstance(err, ProtectedAccount):
        code = Code.FAILED_PRECONDITION
    else:
        code = Code.INVALID_ARGUMENT
    details = []
    if err.field:
        # connectrpc packs details from its own protobuf runtime's messages; ours are
        # google.protobuf ones, so they go in as an Any built from their bytes.
        detail = pb.FieldError(path=err.field, message=str(err))
        details.append(
            ErrorDetail(
                AnyMessage(
                    type_url=f"type.googleapis.com/{detail.DESCRIPTOR.full_name}",
                    value=detail.SerializeToString(),
                )
            )
        )
    return ConnectError(code, str(err), details)


def _account_of(caller: Caller) -> str | None:
    """The account acting (None for the operator token, which is nobody's own account)."""
    return caller.username if caller.session is not None else None


def _user(u: User) -> pb.User:
    return pb.User(
        username=u.username,
        role=u.role,
        created_unix=u.created_at,
        last_login_unix=u.last_login_at or 0.0,
        active_sessions=u.active_sessions,
    )


def _template(t: Any) -> pb.Template:
    return pb.Template(
        name=t.name, config_json=t.config_json, created_unix=t.created_at, created_by=t.created_by
    )


def validate_config_json(
    config_json: str, simulated: bool
) -> tuple[RunConfig | None, list[pb.FieldError]]:
    """The configuration, or its problems field by field (dotted paths, pydantic's words)."""
    try:
        cfg = RunConfig.model_validate_json(config_json or "{}")
    except ValidationError as err:
        errors = []
        for e in err.errors():
            path = ".".join(str(p) for p in e["loc"])
            message = e["msg"]
            if e["type"] == "extra_forbidden":
                message = "unknown field (remove it or check its spelling)"
            elif e["type"] == "json_invalid":
                message = f"not valid JSON: {e.get('ctx', {}).get('error', message)}"
            errors.append(pb.FieldError(path=path, message=message))
        return None, errors
    if not simulated:
        from fedmetamal.service.network_runs import check_network_run

        try:
            check_network_run(cfg)
        except FedMetaMalError as err:
            return None, [pb.FieldError(path="", message=str(err))]
    return cfg, []
