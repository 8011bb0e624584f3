"""The web port's ASGI application: the Connect services, the built front end, and the
security headers on every response.

Requests under a service's path (``/fedmetamal.v1.ControlService/...``) go to its Connect app;
every other GET is a static file of the built dashboard, or ``index.html`` for the front end's
own routes (history-mode URLs such as ``/runs/abc``). When the dashboard was not built, the
page says so and how to build it (status 503) instead of a bare 404.
"""

from __future__ import annotations

import asyncio
import html
import importlib.resources
import mimetypes
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from pathlib import Path
from typing import Any, Protocol

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: onnxruntime-web compiles its wasm at run time: 'wasm-unsafe-eval' allows that (and only
#: that; no JS eval). Styles may be inline because Vue and Chart.js set style attributes.
CSP = (
    "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; font-src 'self' data:; "
    "connect-src 'self'; worker-src 'self' blob:; object-src 'none'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
)
#: Types the platform's mimetypes table may lack or get wrong.
_TYPES = {
    ".wasm": "application/wasm",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".map": "application/json",
    ".onnx": "application/octet-stream",
}
#: Where Vite puts content-hashed files, which never change under the same name.
ASSETS_PREFIX = "/assets/"
#: Every API path starts like this; an unknown one is a 404, never the SPA page.
API_PREFIX = "/fedmetamal."

NOT_BUILT_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>FedMetaMal dashboard not built</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 3em auto">
<h1>The dashboard was not built</h1>
<p>This server answers the dashboard's API, but its web pages are missing from
<code>{folder}</code>.</p>
<p>Build them (needs Node.js 20) from the repository root with</p>
<pre>bash scripts/install.sh</pre>
<p>or <code>cd frontend &amp;&amp; npm ci &amp;&amp; npm run build</code>, then restart
<code>fedmetamal serve</code>.</p>
</body></html>
"""


class ConnectApp(Protocol):
    @property
    def path(self) -> str: ...

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None: ...


def default_static_dir() -> Path:
    """The built front end shipped in the package (``fedmetamal/web/static``)."""
    return Path(str(importlib.resources.files("fedmetamal.web") / "static"))


def content_type(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in _TYPES:
        return _TYPES[suffix]
    return mimetypes.guess_type(path.name)[0] or "application/octet-stream"


class WebApp:
    """Dispatches to the Connect apps or the static files, adding the security headers."""

    def __init__(self, connect_apps: Iterable[ConnectApp], static_dir: Path | None = None) -> None:
        self.routes = {app.path + "/": app for app in connect_apps}
        self.static_dir = (static_dir or default_static_dir()).resolve()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return  # no websockets
        path: str = scope.get("path", "/")
        api = path.startswith(API_PREFIX)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in SECURITY_HEADERS if k not in present]
                if api and b"cache-control" not in present:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        for prefix, app in self.routes.items():
            if path.startswith(prefix):
                await app(scope, receive, send_with_headers)
                return
        await self.static(scope, send_with_headers, api)

    # -- static files ------------------------------------------------------------------------
    @property
    def built(self) -> bool:
        return (self.static_dir / "index.html").is_file()

    def resolve(self, path: str) -> Path | None:
        """The file under the static folder that ``path`` names, or None (also for any path
        that would leave the folder)."""
        rel = path.lstrip("/")
        if "\x00" in rel or "\\" in rel:
            return None
        parts = rel.split("/")
        if any(p in ("..", ".") for p in parts):
            return None
        candidate = (self.static_dir / rel).resolve() if rel else self.static_dir / "index.html"
        if not candidate.is_relative_to(self.static_dir) or not candidate.is_file():
            return None
        return candidate

    async def static(self, scope: Scope, send: Send, api: bool) -> None:
        method = scope.get("method", "GET")
        if method not in ("GET", "HEAD"):
            await _respond(
                send, 405, b"method not allowed\n", "text/plain", [(b"allow", b"GET, HEAD")]
            )
            return
        head = method == "HEAD"
        path: str = scope.get("path", "/")
        if api or _traversal(path):
            await _respond(send, 404, b"not found\n", "text/plain", head=head)
            return
        if not self.built:
            page = NOT_BUILT_PAGE.format(folder=html.escape(str(self.static_dir)))
            await _respond(send, 503, page.encode(), _TYPES[".html"], head=head)
            return
        found = self.resolve(path)
        if found is None:
            last = path.rsplit("/", 1)[-1]
            if path.startswith(ASSETS_PREFIX) or "." in last:
                await _respond(send, 404, b"not found\n", "text/plain", head=head)
                return
            found = self.static_dir / "index.html"  # a front-end route: the SPA handles it
        body = await asyncio.to_thread(found.read_bytes)
        cache = (
            b"public, max-age=31536000, immutable"
            if path.startswith(ASSETS_PREFIX)
            else b"no-cache"
        )
        await _respond(send, 200, body, content_type(found), [(b"cache-control", cache)], head)


def _traversal(path: str) -> bool:
    """A path that tries to climb out of the folder (refused outright, no SPA fallback)."""
    parts = path.replace("\\", "/").split("/")
    return "\x00" in path or any(p == ".." for p in parts)


async def _respond(
    send: Send,
    status: int,
    body: bytes,
    ctype: str,
    extra: list[tuple[bytes, bytes]] | None = None,
    head: bool = False,
) -> None:
    headers = [
        (b"content-type", ctype.encode()),
        (b"content-length", str(len(body)).encode()),
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
