"""The built front end on the web port: files, SPA fallback, no traversal, security headers."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from fedmetamal.v1 import control_pb2
from fedmetamal.web.app import CSP

from .conftest import Reply, Web, start_web

INDEX = b"<!doctype html><title>FedMetaMal</title><div id=app></div>"
SECRET = b"TOP-SECRET-CONTENT"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Web]:
    root = tmp_path_factory.mktemp("site")
    static = root / "static"
    (static / "assets").mkdir(parents=True)
    (static / "index.html").write_bytes(INDEX)
    (static / "assets" / "app-1a2b.js").write_bytes(b"console.log(1)")
    (static / "assets" / "ort-wasm-simd-threaded-9f.wasm").write_bytes(b"\0asm\1\0\0\0")
    (static / "assets" / "style-3c.css").write_bytes(b"body{}")
    (root / "secret.txt").write_bytes(SECRET)
    (static / "assets" / "link.txt").symlink_to(root / "secret.txt")
    w = start_web(root, static_dir=static)
    try:
        yield w
    finally:
        w.thread.stop()


def _security_headers(r: Reply) -> None:
    assert r.header("content-security-policy") == CSP
    assert "'wasm-unsafe-eval'" in CSP and "frame-ancestors 'none'" in CSP
    assert "'unsafe-eval'" not in CSP.replace("'wasm-unsafe-eval'", "")
    assert r.header("x-content-type-options") == "nosniff"
    assert r.header("x-frame-options") == "DENY"
    assert r.header("referrer-policy") == "same-origin"


def test_index_and_assets_are_served_with_their_types(site: Web) -> None:
    b = site.browser()
    r = b.request("GET", "/")
    assert r.status == 200 and r.body == INDEX
    assert r.header("content-type") == "text/html; charset=utf-8"
    assert r.header("cache-control") == "no-cache"
    _security_headers(r)
    for path, ctype in (
        ("/assets/app-1a2b.js", "text/javascript; charset=utf-8"),
        ("/assets/ort-wasm-simd-threaded-9f.wasm", "application/wasm"),
        ("/assets/style-3c.css", "text/css; charset=utf-8"),
    ):
        r = b.request("GET", path)
        assert r.status == 200 and r.header("content-type") == ctype, path
        assert "immutable" in (r.header("cache-control") or "")
        _security_headers(r)
    head = b.request("HEAD", "/assets/app-1a2b.js")
    assert head.status == 200 and head.body == b""
    assert head.header("content-length") == str(len(b"console.log(1)"))


def test_front_end_routes_fall_back_to_index(site: Web) -> None:
    b = site.browser()
    for path in ("/runs", "/runs/run-20260101-abc", "/models/m1/report", "/login?next=/runs"):
        r = b.request("GET", path)
        assert r.status == 200 and r.body == INDEX, path
    for path in ("/assets/missing-123.js", "/favicon.ico", "/fedmetamal.v1.Nope/Call"):
        r = b.request("GET", path)
        assert r.status == 404, path
        _security_headers(r)
    assert b.request("POST", "/runs").status == 405


def test_path_traversal_is_refused(site: Web) -> None:
    for path in (
        "/../secret.txt",
        "/assets/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/assets/%2e%2e/%2e%2e/secret.txt",
        "/assets/..%2f..%2fsecret.txt",
        "/..%5c..%5csecret.txt",
        "/assets/link.txt",  # a symlink out of the folder
        "//etc/passwd",
        "/%00index.html",
    ):
        r = _raw_get(site.port, path)
        assert SECRET not in r and b"root:" not in r, path
        status = int(r.split(b" ", 2)[1])
        # refused, or (a path without a dot) the SPA page, never the file named
        assert status in (400, 404) or (status == 200 and r.endswith(INDEX)), (path, status)


def _raw_get(port: int, path: str) -> bytes:
    """A GET sent byte for byte (no client-side path normalisation)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_api_responses_carry_the_headers_too(site: Web) -> None:
    b = site.browser()
    r = b.call(
        "ControlService", "ListRuns", control_pb2.ListRunsRequest(), control_pb2.ListRunsReply
    )
    assert isinstance(r, Reply) and r.status == 401
    _security_headers(r)
    assert r.header("cache-control") == "no-store"


def test_unbuilt_dashboard_says_how_to_build_it(tmp_path: Path) -> None:
    empty = tmp_path / "no-static"
    w = start_web(tmp_path, static_dir=empty)
    try:
        for path in ("/", "/runs/x"):
            r = w.browser().request("GET", path)
            assert r.status == 503
            assert b"bash scripts/install.sh" in r.body and b"not built" in r.body
            _security_headers(r)
        # the API still answers
        login = w.login()
        assert login.cookies["fmm_session"]
    finally:
        w.thread.stop()


def test_a_taken_web_port_is_an_error_unless_it_was_only_the_default(tmp_path: Path) -> None:
    from fedmetamal.errors import ConfigError

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ConfigError, match="--web-port"):
            start_web(tmp_path / "a", web_port=port)
        w = start_web(tmp_path / "b", web_port=port, web_port_fallback=True)
        try:
            assert w.port != port
            assert f"port {port} is in use" in w.thread.server.web.notice
            assert w.browser().request("GET", "/").status in (200, 503)
        finally:
            w.thread.stop()
