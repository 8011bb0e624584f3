"""The web port: uvicorn serving :class:`WebApp` inside the server's own event loop.

It runs next to the gRPC server (one process, one loop), so both share the
:class:`ServerCore`. uvicorn's signal handling is switched off (``fedmetamal serve`` handles
SIGINT/SIGTERM itself), the socket is bound here so a port in use is a clear error rather
than uvicorn's ``sys.exit``, and on stop the WatchRun streams end first so the graceful
shutdown does not wait on browsers that keep them open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from fedmetamal.errors import ConfigError
from fedmetamal.service.server_core import ServerCore
from fedmetamal.v1.control_connect import ControlServiceASGIApplication
from fedmetamal.v1.dashboard_connect import (
    DashboardServiceASGIApplication,
    DetectServiceASGIApplication,
)
from fedmetamal.web.accounts import Accounts
from fedmetamal.web.app import WebApp
from fedmetamal.web.auth import UPLOAD_OVERHEAD, AuthInterceptor, WebAuth
from fedmetamal.web.control_connect import Closing, ConnectControl
from fedmetamal.web.dashboard_service import DashboardService
from fedmetamal.web.detect_service import DetectService

DEFAULT_WEB_PORT = 8080
DEFAULT_MAX_UPLOAD_MB = 32.0
#: Messages other than uploads stay small (configurations, ids); Connect's default is 4 MiB.
_READ_MAX_BYTES = 4 * 1024 * 1024


@dataclass
class WebOptions:
    host: str = "127.0.0.1"
    port: int = DEFAULT_WEB_PORT
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB
    admin_password_file: Path | None = None
    #: The built front end; default: the package's ``fedmetamal/web/static``.
    static_dir: Path | None = None
    #: Certificate and key (PEM files) for HTTPS; both None: plain HTTP.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: Host name shown in the dashboard URL (default: the host, or localhost for wildcards).
    public_host: str | None = None
    #: When ``port`` is taken, listen on any free port instead of failing (for the default
    #: port, which the operator did not choose); :attr:`WebServer.notice` says so.
    port_fallback: bool = False


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to the process that embeds it."""

    def capture_signals(self) -> contextlib.AbstractContextManager[None]:  # type: ignore[override]
        return contextlib.nullcontext()


class WebServer:
    """The dashboard's HTTP server over ``core``; :meth:`start` / :meth:`stop` in the loop."""

    def __init__(
        self, core: ServerCore, opts: WebOptions, grpc_address: str, grpc_tls: bool
    ) -> None:
        if opts.max_upload_mb <= 0:
            raise ConfigError("--max-upload-mb must be positive.")
        if (opts.tls_cert is None) != (opts.tls_key is None):
            raise ConfigError("The web port needs both a TLS certificate and its key, or neither.")
        self.core = core
        self.opts = opts
        self.tls = opts.tls_cert is not None
        self.max_upload_bytes = int(opts.max_upload_mb * 1024 * 1024)
        self.accounts = Accounts(core.store.engine)
        self.admin_password_file = self.accounts.ensure_admin(
            core.data_dir, opts.admin_password_file
        )
        self.auth = WebAuth(self.accounts, core.operator_hash, self.tls, self.max_upload_bytes)
        self.closing = Closing()
        interceptors = [AuthInterceptor(self.auth)]
        self.control = ConnectControl(core, grpc_address, grpc_tls, self.closing)
        self.dashboard = DashboardService(core, self.accounts, self.auth)
        self.detect = DetectService(core, self.max_upload_bytes)
        self.app = WebApp(
            [
                ControlServiceASGIApplication(
                    self.control, interceptors=interceptors, read_max_bytes=_READ_MAX_BYTES
                ),
                DashboardServiceASGIApplication(
                    self.dashboard, interceptors=interceptors, read_max_bytes=_READ_MAX_BYTES
                ),
                DetectServiceASGIApplication(
                    self.detect,
                    interceptors=interceptors,
                    read_max_bytes=self.max_upload_bytes + UPLOAD_OVERHEAD,
                ),
            ],
            opts.static_dir,
        )
        self.port = 0
        #: Something the operator should be told about the start (e.g. a fallback port).
        self.notice = ""
        self._server: _EmbeddedServer | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        host = self.opts.public_host or (
            "localhost" if self.opts.host in ("0.0.0.0", "::", "127.0.0.1") else self.opts.host
        )
        if ":" in host:
            host = f"[{host}]"
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}/"

    def _bind(self) -> socket.socket:
        host = self.opts.host
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            sock = socket.create_server((host, self.opts.port), family=family, backlog=128)
        except OSError as err:
            if self.opts.port_fallback and self.opts.port != 0:
                sock = socket.create_server((host, 0), family=family, backlog=128)
                self.notice = (
                    f"port {self.opts.port} is in use ({err.strerror or err}); the dashboard "
                    f"listens on port {sock.getsockname()[1]} instead (choose with --web-port)"
                )
                return _ready(sock)
            raise ConfigError(
                f"Cannot listen for the dashboard on {host}:{self.opts.port}: "
                f"{err.strerror or err}.",
                "Is the port in use? Pick another with --web-port (0: any free port), or --no-web.",
            ) from None
        return _ready(sock)

    async def start(self) -> None:
        sock = self._bind()
        self.port = int(sock.getsockname()[1])
        config = uvicorn.Config(
            self.app,
            lifespan="off",
            log_level="warning",
            access_log=False,
            server_header=False,
            timeout_graceful_shutdown=3,
            ssl_certfile=str(self.opts.tls_cert) if self.opts.tls_cert else None,
            ssl_keyfile=str(self.opts.tls_key) if self.opts.tls_key else None,
        )
        try:
            config.load()  # certificate problems surface here, before anything is served
        except (OSError, ValueError) as err:
            sock.close()
            raise ConfigError(
                f"The dashboard cannot use its TLS certificate or key: {err}.",
                "Check --tls-cert/--tls-key.",
            ) from None
        logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
        self._server = _EmbeddedServer(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._task.done():
                sock.close()
                err = self._task.exception()
                raise ConfigError(f"The dashboard's web server did not start: {err}.")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        """End the watch streams, then let uvicorn finish the calls in flight."""
        self.closing.close()
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(self._task, timeout=10)
        self._server = None
        self._task = None


def _ready(sock: socket.socket) -> socket.socket:
    """Non-blocking, and without Nagle's algorithm: accepted connections inherit TCP_NODELAY
    (asyncio sets it only on sockets it creates itself), else a response body sent after its
    headers waits for the browser's delayed ACK, about 40 ms on every reused connection."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setblocking(False)
    return sock
