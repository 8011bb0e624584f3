"""The gRPC server process: both services on one port, TLS unless on loopback.

``fedmetamal serve`` calls :func:`run_server`; tests and the demo start :class:`FederationServer`
inside their own event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import grpc

from fedmetamal.data.dataset import Dataset
from fedmetamal.errors import ConfigError
from fedmetamal.net.control_service import ControlService
from fedmetamal.net.federation_service import FederationService
from fedmetamal.net.payload import grpc_options
from fedmetamal.net.tls import ensure_server_tls, is_loopback, read_pem, server_credentials
from fedmetamal.service.server_core import ServerCore, ServerSettings
from fedmetamal.v1 import control_pb2_grpc, federation_pb2_grpc

if TYPE_CHECKING:
    from fedmetamal.web.server import WebServer


@dataclass
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 50051
    data_dir: Path = Path("fedmetamal-server")
    database_url: str | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_hosts: list[str] = field(default_factory=list)
    client_ca: Path | None = None
    insecure: bool = False
    auto_approve: bool = False
    heartbeat_interval_s: float = 5.0
    heartbeat_timeout_s: float = 20.0
    #: The dashboard's web port (0: any free port). None, or ``no_web``: no web server; the
    #: CLI passes 8080 by default (library users and tests opt in, so they never clash on it).
    web_port: int | None = None
    #: Address the web port listens on (default: ``host``).
    web_host: str | None = None
    no_web: bool = False
    #: Use any free port when ``web_port`` is taken (the CLI's default port only).
    web_port_fallback: bool = False
    max_upload_mb: float = 32.0
    #: Sets the dashboard's "admin" password from this file (default: a random one, written to
    #: <data_dir>/admin.password at first start).
    admin_password_file: Path | None = None
    #: The built front end (default: the package's fedmetamal/web/static).
    static_dir: Path | None = None

    @property
    def web_enabled(self) -> bool:
        return self.web_port is not None and not self.no_web


def check_options(opts: ServeOptions) -> None:
    """Refuse settings that would expose the federation (before anything is started)."""
    if opts.insecure and not is_loopback(opts.host):
        raise ConfigError(
            f"Plaintext (--insecure) is only allowed on a loopback address, not on "
            f"'{opts.host}': updates and tokens would cross the network unencrypted.",
            "Drop --insecure (a certificate is generated), or pass --tls-cert/--tls-key.",
        )
    if (opts.tls_cert is None) != (opts.tls_key is None):
        raise ConfigError("--tls-cert and --tls-key go together.", "Give both, or neither.")
    if opts.insecure and (opts.tls_cert or opts.client_ca):
        raise ConfigError("--insecure cannot be combined with TLS options.")
    web_host = opts.web_host or opts.host
    if opts.web_enabled and opts.insecure and not is_loopback(web_host):
        raise ConfigError(
            f"Plaintext (--insecure) is only allowed on a loopback address, not on the web "
            f"port's '{web_host}': dashboard passwords and sessions would cross the network "
            "unencrypted.",
            "Drop --insecure (a certificate is generated), or set --web-host 127.0.0.1.",
        )
    if opts.web_enabled and opts.max_upload_mb <= 0:
        raise ConfigError("--max-upload-mb must be positive.")
    if opts.heartbeat_timeout_s <= opts.heartbeat_interval_s:
        raise ConfigError(
            f"--heartbeat-timeout ({opts.heartbeat_timeout_s:g} s) must exceed "
            f"--heartbeat-interval ({opts.heartbeat_interval_s:g} s).",
        )


class FederationServer:
    """The services, the server core and the listening port, started and stopped together."""

    def __init__(self, opts: ServeOptions, test_data: Dataset | None = None) -> None:
        check_options(opts)
        self.opts = opts
        self.ca_path: Path | None = None
        credentials = None
        self._cert_files: tuple[Path, Path] | None = None
        if not opts.insecure:
            if opts.tls_cert is not None and opts.tls_key is not None:
                cert, key = (
                    read_pem(opts.tls_cert, "TLS certificate"),
                    read_pem(opts.tls_key, "TLS key"),
                )
                self._cert_files = (opts.tls_cert, opts.tls_key)
            else:
                hosts = [h for h in [*opts.tls_hosts, opts.host] if h not in ("0.0.0.0", "::")]
                files = ensure_server_tls(opts.data_dir / "tls", hosts)
                cert, key = files.server_cert.read_bytes(), files.server_key.read_bytes()
                self.ca_path = files.ca_cert
                self._cert_files = (files.server_cert, files.server_key)
            client_ca = (
                read_pem(opts.client_ca, "client CA certificate") if opts.client_ca else None
            )
            credentials = server_credentials(cert, key, client_ca)
        self.credentials = credentials
        self.port = 0
        public_host = (
            opts.tls_hosts[0]
            if opts.tls_hosts
            else ("localhost" if opts.host in ("0.0.0.0", "::", "127.0.0.1") else opts.host)
        )
        self._public_host = public_host
        settings = ServerSettings(
            data_dir=opts.data_dir,
            database_url=opts.database_url,
            heartbeat_interval_s=opts.heartbeat_interval_s,
            heartbeat_timeout_s=opts.heartbeat_timeout_s,
            auto_approve=opts.auto_approve,
            ca_path=str(self.ca_path) if self.ca_path else "",
        )
        self.core = ServerCore(settings, test_data)
        self.operator_token_file = self.core.ensure_operator_token()
        self._server: grpc.aio.Server | None = None
        self.web: WebServer | None = None
        if opts.web_enabled:
            self.web = self._web_server()

    def _web_server(self) -> WebServer:
        """The dashboard's web server (same certificate as the gRPC port under TLS)."""
        from fedmetamal.web.server import WebOptions, WebServer

        assert self.opts.web_port is not None
        cert, key = self._cert_files if self._cert_files else (None, None)
        web_host = self.opts.web_host or self.opts.host
        public = self._public_host if web_host == self.opts.host else None
        return WebServer(
            self.core,
            WebOptions(
                host=web_host,
                port=self.opts.web_port,
                max_upload_mb=self.opts.max_upload_mb,
                admin_password_file=self.opts.admin_password_file,
                static_dir=self.opts.static_dir,
                tls_cert=cert,
                tls_key=key,
                public_host=public,
                port_fallback=self.opts.web_port_fallback,
            ),
            # the gRPC address is only known after start(); ServerInfo reads it then
            self._public_host,
            self.tls,
        )

    @property
    def web_url(self) -> str | None:
        """The dashboard's URL once started (None without a web port)."""
        return self.web.url if self.web is not None and self.web.port else None

    @property
    def tls(self) -> bool:
        return self.credentials is not None

    @property
    def address(self) -> str:
        return f"{self._public_host}:{self.port}"

    async def start(self) -> None:
        server = grpc.aio.server(options=grpc_options())
        federation_pb2_grpc.add_FederationServiceServicer_to_server(
            FederationService(self.core), server
        )
        bind = f"[{self.opts.host}]" if ":" in self.opts.host else self.opts.host
        target = f"{bind}:{self.opts.port}"
        if self.credentials is None:
            port = server.add_insecure_port(target)
        else:
            port = server.add_secure_port(target, self.credentials)
        if port == 0:
            raise ConfigError(
                f"Cannot listen on {target}.", "Is the port in use? Pick another with --port."
            )
        self.port = port
        self.core.settings.public_address = self.address
        control_pb2_grpc.add_ControlServiceServicer_to_server(
            ControlService(self.core, self.address, self.tls), server
        )
        await server.start()
        self._server = server
        await self.core.start()
        if self.web is not None:
            self.web.control.address = self.address
            try:
                await self.web.start()
            except BaseException:
                await self.stop(0)
                raise

    async def stop(self, grace: float = 2.0) -> None:
        if self.web is not None:  # first: its watch streams end, its calls finish
            await self.web.stop()
        await self.core.close()
        if self._server is not None:
            await self._server.stop(grace)

    async def wait(self) -> None:
        assert self._server is not None
        await self._server.wait_for_termination()


async def run_server(server: FederationServer, on_started=None) -> None:
    """Start, run until SIGINT/SIGTERM, stop."""
    await server.start()
    if on_started is not None:
        on_started(server)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # Windows: no handlers
            loop.add_signal_handler(sig, stop.set)
    waiter = asyncio.create_task(server.wait())
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
    await server.stop()
    for t in (waiter, stopper):
        t.cancel()
