"""A real server with its web port on 127.0.0.1, and a small Connect-protocol client over
http.client that keeps the cookies a browser would (and can leave out what a browser might)."""

from __future__ import annotations

import http.client
import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from net.harness import ServerThread  # tests/ is on sys.path (tests/net is a package)

ADMIN_PASSWORD = "correct horse battery staple"
VIEWER = ("viewer1", "viewer password 123")


@dataclass
class Reply:
    """One HTTP exchange: status, headers (lower-case names, repeated ones kept), body."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k == name), None)

    def headers_named(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k == name]

    @property
    def error(self) -> dict[str, Any]:
        """The Connect error of a failed unary call ({"code": ..., "message": ...})."""
        assert self.status != 200, f"call succeeded: {self.body[:200]!r}"
        return json.loads(self.body)


@dataclass
class Browser:
    """Calls the web port like the dashboard does: binary Connect, cookies, CSRF header."""

    port: int
    cookies: dict[str, str] = field(default_factory=dict)
    send_csrf: bool = True

    def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        timeout: float = 30,
    ) -> Reply:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.putrequest(method, path, skip_accept_encoding=True)
            hdrs = {"content-length": str(len(body))} if method == "POST" else {}
            if self.cookies:
                hdrs["cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
            hdrs.update(headers or {})
            for k, v in hdrs.items():
                conn.putheader(k, v)
            conn.endheaders()
            if body:
                conn.send(body)
            resp = conn.getresponse()
            data = resp.read()
            reply = Reply(resp.status, [(k.lower(), v) for k, v in resp.getheaders()], data)
        finally:
            conn.close()
        for cookie in reply.headers_named("set-cookie"):
            name, _, rest = cookie.partition("=")
            value = rest.split(";", 1)[0]
            if "Max-Age=0" in cookie:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value
        return reply

    def _headers(self, extra: dict[str, str] | None) -> dict[str, str]:
        hdrs = {"connect-protocol-version": "1"}
        if self.send_csrf and "fmm_csrf" in self.cookies:
            hdrs["x-csrf-token"] = self.cookies["fmm_csrf"]
        hdrs.update(extra or {})
        return hdrs

    def call(
        self,
        service: str,
        method: str,
        request: Any,
        reply_type: Any,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """A unary call; returns the reply message, or the Reply when the call failed."""
        hdrs = {"content-type": "application/proto", **self._headers(headers)}
        r = self.request(
            "POST",
            f"/fedmetamal.v1.{service}/{method}",
            request.SerializeToString(),
            hdrs,
        )
        if r.status != 200:
            return r
        out = reply_type()
        out.ParseFromString(r.body)
        return out

    def code(self, service: str, method: str, request: Any, reply_type: Any, **kw: Any) -> str:
        """The Connect error code of a call that must fail ("ok" if it did not)."""
        r = self.call(service, method, request, reply_type, **kw)
        return r.error["code"] if isinstance(r, Reply) else "ok"

    def stream(
        self, service: str, method: str, request: Any, reply_type: Any, timeout: float = 30
    ) -> Iterator[Any]:
        """A server-streaming call: yields messages as they arrive; raises on an error end."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        body = request.SerializeToString()
        envelope = struct.pack(">BI", 0, len(body)) + body
        hdrs = {
            "content-type": "application/connect+proto",
            "content-length": str(len(envelope)),
            **self._headers(None),
        }
        if self.cookies:
            hdrs["cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        try:
            conn.request("POST", f"/fedmetamal.v1.{service}/{method}", envelope, hdrs)
            resp = conn.getresponse()
            if resp.status != 200:
                raise StreamError(json.loads(resp.read() or b"{}"))
            while True:
                head = resp.read(5)
                if len(head) < 5:
                    return
                flags, size = struct.unpack(">BI", head)
                data = resp.read(size)
                if flags & 0x02:
                    end = json.loads(data or b"{}")
                    if "error" in end:
                        raise StreamError(end["error"])
                    return
                msg = reply_type()
                msg.ParseFromString(data)
                yield msg
        finally:
            conn.close()


class StreamError(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error)
        self.code = error.get("code")
        self.message = error.get("message", "")


@dataclass
class Web:
    thread: ServerThread
    port: int
    data_dir: Path

    def browser(self) -> Browser:
        return Browser(self.port)

    def login(self, username: str = "admin", password: str = ADMIN_PASSWORD) -> Browser:
        from fedmetamal.v1 import dashboard_pb2 as pb

        b = self.browser()
        reply = b.call(
            "DashboardService",
            "Login",
            pb.LoginRequest(username=username, password=password),
            pb.LoginReply,
        )
        assert isinstance(reply, pb.LoginReply), reply
        return b


def start_web(tmp: Path, **opts: Any) -> Web:
    tmp.mkdir(parents=True, exist_ok=True)
    pw = tmp / "admin-pw"
    pw.write_text(ADMIN_PASSWORD + "\n")
    opts.setdefault("admin_password_file", pw)
    opts.setdefault("web_port", 0)
    thread = ServerThread(tmp / "server", **opts)
    assert thread.server.web is not None
    return Web(thread, thread.server.web.port, tmp / "server")


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Web]:
    """A server with the web port and a viewer account, shared by a module's tests."""
    w = start_web(tmp_path_factory.mktemp("web"))
    w.thread.run_sync(lambda: w.thread.server.web.accounts.create_user(*VIEWER, "viewer"))
    try:
        yield w
    finally:
        w.thread.stop()
