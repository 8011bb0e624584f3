"""Who may call what on the web port: session cookie, CSRF header, Origin and roles.

One Connect ``MetadataInterceptor`` runs before any request body is read, so an anonymous or
cross-site request is refused before it costs anything (an upload included). Browsers carry
the ``fmm_session`` cookie (HttpOnly, SameSite=Strict) and must echo the session's CSRF token
(also in the readable ``fmm_csrf`` cookie) in the ``x-csrf-token`` header; scripts may send
``authorization: Bearer <operator token>`` instead, which grants what the gRPC port grants.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from urllib.parse import urlsplit

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.request import RequestContext

from fedmetamal.net.auth import hash_secret
from fedmetamal.web.accounts import Accounts, Session

SESSION_COOKIE = "fmm_session"
CSRF_COOKIE = "fmm_csrf"
CSRF_HEADER = "x-csrf-token"
#: Calls that work without a session (and without the CSRF header): they create or report one.
PUBLIC_METHODS = frozenset({"Login", "WhoAmI"})
#: What the "viewer" role may call: everything that only reads.
VIEWER_METHODS = frozenset(
    {
        "GetServerInfo",
        "GetRun",
        "ListRuns",
        "ListRounds",
        "WatchRun",
        "ListEvents",
        "ListParticipants",
        "ListModels",
        "DownloadModel",
        "ExportModel",
        "WhoAmI",
        "Logout",
        "ChangePassword",
        "GetConfigSchema",
        "ValidateConfig",
        "ListTemplates",
        "GetModelReport",
        "ExtractFeatures",
    }
)
UPLOAD_METHOD = "ExtractFeatures"


@dataclass(frozen=True)
class Caller:
    """Who is calling: a browser session, or a script with the operator token."""

    username: str
    role: str
    session: Session | None = None


def parse_cookies(header: str) -> dict[str, str]:
    """The name=value pairs of a Cookie header (the first of each name wins)."""
    out: dict[str, str] = {}
    for part in header.split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name and name not in out:
            out[name] = value.strip()
    return out


class WebAuth:
    """Checks calls against the accounts; shared by the interceptor and the services."""

    def __init__(
        self, accounts: Accounts, operator_hash: str, tls: bool, max_upload_bytes: int
    ) -> None:
        self.accounts = accounts
        self.operator_hash = operator_hash
        self.tls = tls
        self.max_upload_bytes = max_upload_bytes

    def session_token(self, ctx: RequestContext) -> str:
        return parse_cookies(ctx.request_headers.get("cookie", "")).get(SESSION_COOKIE, "")

    def caller(self, ctx: RequestContext) -> Caller | None:
        """The caller's identity, or None when the call carries no valid credential."""
        bearer = ctx.request_headers.get("authorization", "")
        if bearer.lower().startswith("bearer ") and self.operator_hash:
            token = bearer[7:].strip()
            if hmac.compare_digest(hash_secret(token), self.operator_hash):
                return Caller("operator", "admin")
            return None
        session = self.accounts.session(self.session_token(ctx))
        if session is None:
            return None
        return Caller(session.username, session.role, session)

    def check_origin(self, ctx: RequestContext) -> None:
        """A present Origin must be this server's own (scheme, host and port)."""
        origin = ctx.request_headers.get("origin")
        if origin is None:
            return
        host = ctx.request_headers.get("host", "").lower()
        try:
            parts = urlsplit(origin)
        except ValueError:
            parts = None
        scheme = "https" if self.tls else "http"
        if parts is None or parts.scheme != scheme or parts.netloc.lower() != host or not host:
            raise ConnectError(
                Code.PERMISSION_DENIED,
                f"cross-origin request from {origin[:100]!r} refused: the dashboard only "
                "answers pages it served itself",
            )

    def authorize(self, ctx: RequestContext) -> Caller | None:
        """Raise ConnectError unless the call may go ahead; the caller (None: public call)."""
        self.check_origin(ctx)
        name = ctx.method.name
        if name in PUBLIC_METHODS:
            return None
        caller = self.caller(ctx)
        if caller is None:
            raise ConnectError(
                Code.UNAUTHENTICATED, "not logged in (or the session expired): log in again"
            )
        if caller.session is not None:
            sent = ctx.request_headers.get(CSRF_HEADER, "")
            if not sent or not hmac.compare_digest(sent, caller.session.csrf):
                raise ConnectError(
                    Code.PERMISSION_DENIED,
                    f"missing or wrong {CSRF_HEADER} header: send the {CSRF_COOKIE} cookie's "
                    "value in it",
                )
        if caller.role != "admin" and name not in VIEWER_METHODS:
            raise ConnectError(
                Code.PERMISSION_DENIED,
                f"{name} needs the admin role; '{caller.username}' is a {caller.role}",
            )
        if name == UPLOAD_METHOD:
            self.check_upload_size(ctx)
        return caller

    def check_upload_size(self, ctx: RequestContext) -> None:
        """Refuse an upload by its Content-Length before reading it (Connect's read limit
        catches bodies sent without one)."""
        length = ctx.request_headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_upload_bytes + UPLOAD_OVERHEAD:
            raise ConnectError(Code.RESOURCE_EXHAUSTED, upload_limit_message(self.max_upload_bytes))

    def require(self, ctx: RequestContext) -> Caller:
        """The caller of a non-public call (the interceptor has admitted it already)."""
        caller = self.caller(ctx)
        if caller is None:
            raise ConnectError(Code.UNAUTHENTICATED, "not logged in")
        return caller


#: Room for the filename, model id and framing around an upload's content.
UPLOAD_OVERHEAD = 64 * 1024


def upload_limit_message(limit: int) -> str:
    return (
        f"the file is larger than the upload limit of {limit / (1024 * 1024):g} MB "
        "(the server's --max-upload-mb)"
    )


class AuthInterceptor:
    """Connect MetadataInterceptor: :meth:`WebAuth.authorize` before the body is read."""

    def __init__(self, auth: WebAuth) -> None:
        self.auth = auth

    async def on_start(self, ctx: RequestContext) -> Caller | None:
        return self.auth.authorize(ctx)

    async def on_end(self, token: object, ctx: RequestContext, error: Exception | None) -> None:
        return None
