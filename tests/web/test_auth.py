"""Who may call what on the web port: sessions, CSRF, Origin, roles, password storage."""

from __future__ import annotations

import stat
from typing import Any

import pytest
from sqlalchemy import select, update

from fedmetamal.v1 import control_pb2, dashboard_pb2
from fedmetamal.web.accounts import (
    AccountError,
    Accounts,
    check_password,
    web_sessions,
    web_users,
)
from fedmetamal.web.auth import PUBLIC_METHODS, VIEWER_METHODS

from .conftest import ADMIN_PASSWORD, VIEWER, Browser, StreamError, Web, start_web

SERVICES = [
    ("ControlService", control_pb2.DESCRIPTOR.services_by_name["ControlService"]),
    ("DashboardService", dashboard_pb2.DESCRIPTOR.services_by_name["DashboardService"]),
    ("DetectService", dashboard_pb2.DESCRIPTOR.services_by_name["DetectService"]),
]
ALL_METHODS = [(svc, m) for svc, desc in SERVICES for m in desc.methods]


def call_code(b: Browser, service: str, method: Any) -> str:
    """The Connect code of calling ``method`` with an empty request ("ok" on success)."""
    req = _message(method.input_type)
    out = _message(method.output_type)
    if method.name == "WatchRun":
        req.run_id = "no-such-run"  # admitted: NOT_FOUND at once, not an endless stream
    if method.server_streaming:
        try:
            for _ in b.stream(service, method.name, req, type(out)):
                break
        except StreamError as err:
            return str(err.code)
        return "ok"
    return b.code(service, method.name, req, type(out))


def _message(desc: Any) -> Any:
    from google.protobuf import message_factory

    return message_factory.GetMessageClass(desc)()


def test_every_call_but_login_and_whoami_needs_a_session(web: Web) -> None:
    anonymous = web.browser()
    for service, method in ALL_METHODS:
        code = call_code(anonymous, service, method)
        if method.name == "Login":
            assert code == "unauthenticated"  # an empty password, not a missing session
        elif method.name in PUBLIC_METHODS:
            assert code == "ok", method.name
        else:
            assert code == "unauthenticated", (method.name, code)


def test_viewer_may_only_read(web: Web) -> None:
    viewer = web.login(*VIEWER)
    for service, method in ALL_METHODS:
        if method.name in ("Login", "Logout"):
            continue
        code = call_code(viewer, service, method)
        if method.name in VIEWER_METHODS:
            assert code not in ("permission_denied", "unauthenticated"), (method.name, code)
        else:
            assert code == "permission_denied", (method.name, code)
    # and the read-only calls really answer
    runs = viewer.call(
        "ControlService", "ListRuns", control_pb2.ListRunsRequest(), control_pb2.ListRunsReply
    )
    assert isinstance(runs, control_pb2.ListRunsReply)
    me = viewer.call(
        "DashboardService", "WhoAmI", dashboard_pb2.WhoAmIRequest(), dashboard_pb2.WhoAmIReply
    )
    assert (me.logged_in, me.username, me.role) == (True, VIEWER[0], "viewer")


def test_admin_gets_past_the_checks_everywhere(web: Web) -> None:
    admin = web.login()
    for service, method in ALL_METHODS:
        if method.name in ("Login", "Logout"):
            continue  # would end this session
        code = call_code(admin, service, method)
        assert code not in ("permission_denied", "unauthenticated"), (method.name, code)


def test_csrf_header_is_required_and_must_match(web: Web) -> None:
    admin = web.login()
    req, out = control_pb2.ListRunsRequest(), control_pb2.ListRunsReply
    assert admin.code("ControlService", "ListRuns", req, out) == "ok"
    admin.send_csrf = False
    r = admin.call("ControlService", "ListRuns", req, out)
    assert r.error["code"] == "permission_denied"
    assert "x-csrf-token" in r.error["message"]
    wrong = {"x-csrf-token": "not-the-token"}
    assert admin.code("ControlService", "ListRuns", req, out, headers=wrong) == "permission_denied"
    # the cookie's own value is the token: the double submit works once more
    admin.send_csrf = True
    assert admin.code("ControlService", "ListRuns", req, out) == "ok"
    # a stream checks it too
    admin.send_csrf = False
    with pytest.raises(StreamError) as err:
        list(
            admin.stream(
                "ControlService", "WatchRun", control_pb2.WatchRunRequest(), control_pb2.Event
            )
        )
    assert err.value.code == "permission_denied"


def test_foreign_origin_is_refused(web: Web) -> None:
    admin = web.login()
    req, out = control_pb2.ListRunsRequest(), control_pb2.ListRunsReply
    own = {"origin": f"http://127.0.0.1:{web.port}"}
    assert admin.code("ControlService", "ListRuns", req, out, headers=own) == "ok"
    for origin in (
        "https://evil.example",
        f"http://127.0.0.1:{web.port + 1}",
        "null",
        f"https://127.0.0.1:{web.port}",
    ):
        code = admin.code("ControlService", "ListRuns", req, out, headers={"origin": origin})
        assert code == "permission_denied", origin
    # login from another site is refused too (no login CSRF)
    b = web.browser()
    login = dashboard_pb2.LoginRequest(username="admin", password=ADMIN_PASSWORD)
    r = b.call(
        "DashboardService",
        "Login",
        login,
        dashboard_pb2.LoginReply,
        headers={"origin": "https://evil.example"},
    )
    assert r.error["code"] == "permission_denied"
    assert "fmm_session" not in b.cookies


def test_login_sets_safe_cookies_and_wrong_passwords_fail(web: Web) -> None:
    b = web.browser()
    login = dashboard_pb2.LoginRequest(username="admin", password=ADMIN_PASSWORD)
    r = b.request(
        "POST",
        "/fedmetamal.v1.DashboardService/Login",
        login.SerializeToString(),
        {"content-type": "application/proto"},
    )
    assert r.status == 200
    cookies = {c.split("=", 1)[0]: c for c in r.headers_named("set-cookie")}
    session, csrf = cookies["fmm_session"], cookies["fmm_csrf"]
    for flag in ("HttpOnly", "SameSite=Strict", "Path=/"):
        assert flag in session
    assert "SameSite=Strict" in csrf and "HttpOnly" not in csrf
    assert "Secure" not in session  # plain http on loopback; TLS adds it
    token = session.split("=", 1)[1].split(";")[0]
    assert len(token) >= 43  # 256 bits, base64
    for user, pw in (("admin", "wrong password!"), ("nobody", ADMIN_PASSWORD), ("admin", "")):
        bad = web.browser()
        reply = bad.call(
            "DashboardService",
            "Login",
            dashboard_pb2.LoginRequest(username=user, password=pw),
            dashboard_pb2.LoginReply,
        )
        assert reply.error["code"] == "unauthenticated"
        assert bad.cookies == {}


def test_repeated_failed_logins_are_throttled(web: Web) -> None:
    b = web.browser()
    codes = []
    for _ in range(12):
        r = b.call(
            "DashboardService",
            "Login",
            dashboard_pb2.LoginRequest(username="guess-target", password="x" * 12),
            dashboard_pb2.LoginReply,
        )
        codes.append(r.error["code"])
    assert codes[:10] == ["unauthenticated"] * 10
    assert codes[10:] == ["resource_exhausted"] * 2


def test_logout_ends_the_session(web: Web) -> None:
    admin = web.login()
    saved = dict(admin.cookies)
    out = admin.call(
        "DashboardService", "Logout", dashboard_pb2.LogoutRequest(), dashboard_pb2.LogoutReply
    )
    assert isinstance(out, dashboard_pb2.LogoutReply)
    assert "fmm_session" not in admin.cookies  # the reply cleared the cookie
    replay = Browser(web.port, cookies=saved)  # a copy of the old cookie is dead too
    req, reply = control_pb2.ListRunsRequest(), control_pb2.ListRunsReply
    assert replay.code("ControlService", "ListRuns", req, reply) == "unauthenticated"
    me = replay.call(
        "DashboardService", "WhoAmI", dashboard_pb2.WhoAmIRequest(), dashboard_pb2.WhoAmIReply
    )
    assert me.logged_in is False


def _sessions(web: Web) -> Accounts:
    assert web.thread.server.web is not None
    return web.thread.server.web.accounts


def test_expired_and_idle_sessions_are_refused(web: Web) -> None:
    req, out = control_pb2.ListRunsRequest(), control_pb2.ListRunsReply
    accounts = _sessions(web)
    for column in ("expires_at", "last_seen"):
        b = web.login()
        assert b.code("ControlService", "ListRuns", req, out) == "ok"
        with accounts.engine.begin() as conn:  # age every session
            conn.execute(update(web_sessions).values({column: 1000.0}))
        assert b.code("ControlService", "ListRuns", req, out) == "unauthenticated", column


def test_session_lifetime_rules(tmp_path) -> None:
    from sqlalchemy import create_engine

    accounts = Accounts(create_engine(f"sqlite:///{tmp_path / 'a.db'}"), 100.0, 10.0)
    user = accounts.create_user("alice", "long enough pw", "viewer")
    token, session = accounts.open_session(user, now=1000.0)
    assert accounts.session(token, now=1005.0) == session
    assert accounts.session(token, now=1014.0) is not None  # idle 9 s: still alive
    assert accounts.session(token, now=1025.0) is None  # idle 11 s: gone
    assert accounts.session(token, now=1026.0) is None  # and deleted, not revived
    token, _ = accounts.open_session(user, now=2000.0)
    for t in range(2008, 2100, 8):  # active all along ...
        assert accounts.session(token, now=float(t)) is not None
    assert accounts.session(token, now=2100.0) is None  # ... but the lifetime is over
    assert accounts.session("", now=2000.0) is None
    assert accounts.session("x" * 500, now=2000.0) is None


def test_passwords_and_session_tokens_are_stored_hashed(web: Web) -> None:
    admin = web.login()
    accounts = _sessions(web)
    with accounts.engine.begin() as conn:
        rows = {r.username: r.password_hash for r in conn.execute(select(web_users))}
        tokens = [r.token_sha256 for r in conn.execute(select(web_sessions))]
    assert rows["admin"] != ADMIN_PASSWORD and ADMIN_PASSWORD not in rows["admin"]
    assert rows["admin"].startswith("scrypt$")
    assert check_password(ADMIN_PASSWORD, rows["admin"])
    assert not check_password(ADMIN_PASSWORD + "x", rows["admin"])
    assert rows[VIEWER[0]] != VIEWER[1]
    salts = {h.split("$")[4] for h in rows.values()}
    assert len(salts) == len(rows)  # a salt per user
    assert admin.cookies["fmm_session"] not in tokens
    assert len(tokens) >= 1 and all(len(t) == 64 for t in tokens)


def test_operator_token_works_without_csrf(web: Web) -> None:
    token = web.thread.server.operator_token_file.read_text().strip()
    b = web.browser()
    req, out = control_pb2.GetServerInfoRequest(), control_pb2.ServerInfo
    ok = b.call(
        "ControlService", "GetServerInfo", req, out, headers={"authorization": f"Bearer {token}"}
    )
    assert isinstance(ok, control_pb2.ServerInfo)
    bad = b.code(
        "ControlService", "GetServerInfo", req, out, headers={"authorization": "Bearer " + "A" * 43}
    )
    assert bad == "unauthenticated"


def test_admin_creates_users_with_checked_names_roles_and_passwords(web: Web) -> None:
    admin = web.login()
    req = dashboard_pb2.CreateUserRequest(username="ops-2", password="a strong one!", role="admin")
    user = admin.call("DashboardService", "CreateUser", req, dashboard_pb2.User)
    assert (user.username, user.role) == ("ops-2", "admin")
    assert admin.code("DashboardService", "CreateUser", req, dashboard_pb2.User) == "already_exists"
    for bad in (
        dashboard_pb2.CreateUserRequest(username="x", password="short", role="viewer"),
        dashboard_pb2.CreateUserRequest(username="../etc", password="long enough!", role="viewer"),
        dashboard_pb2.CreateUserRequest(username="eve", password="long enough!", role="root"),
    ):
        assert admin.code("DashboardService", "CreateUser", bad, dashboard_pb2.User) == (
            "invalid_argument"
        )
    listed = admin.call(
        "DashboardService",
        "ListUsers",
        dashboard_pb2.ListUsersRequest(),
        dashboard_pb2.ListUsersReply,
    )
    assert {u.username: u.role for u in listed.users}["ops-2"] == "admin"
    web.login("ops-2", "a strong one!")


def test_first_start_writes_a_private_admin_password(tmp_path) -> None:
    w = start_web(tmp_path, admin_password_file=None)
    try:
        path = w.data_dir / "admin.password"
        assert w.thread.server.web.admin_password_file == path
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        password = path.read_text().strip()
        assert len(password) >= 16
        w.login("admin", password)
    finally:
        w.thread.stop()
    # a restart keeps the password (the file and the account)
    w = start_web(tmp_path, admin_password_file=None)
    try:
        assert (w.data_dir / "admin.password").read_text().strip() == password
        w.login("admin", password)
    finally:
        w.thread.stop()


def test_accounts_refuse_short_admin_password_file(tmp_path) -> None:
    from sqlalchemy import create_engine

    accounts = Accounts(create_engine(f"sqlite:///{tmp_path / 'a.db'}"))
    pw = tmp_path / "pw"
    pw.write_text("short\n")
    with pytest.raises(AccountError, match="shorter than"):
        accounts.ensure_admin(tmp_path, pw)


def test_tls_server_serves_the_dashboard_over_https_with_secure_cookies(tmp_path) -> None:
    import http.client
    import ssl

    w = start_web(tmp_path, insecure=False)
    try:
        assert w.thread.server.web_url.startswith("https://localhost:")
        ca = w.thread.server.ca_path
        ctx = ssl.create_default_context(cafile=str(ca))
        conn = http.client.HTTPSConnection("localhost", w.port, context=ctx, timeout=30)
        body = dashboard_pb2.LoginRequest(username="admin", password=ADMIN_PASSWORD)
        conn.request(
            "POST",
            "/fedmetamal.v1.DashboardService/Login",
            body.SerializeToString(),
            {"content-type": "application/proto", "origin": f"https://localhost:{w.port}"},
        )
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200
        cookies = resp.headers.get_all("set-cookie")
        assert len(cookies) == 2 and all("; Secure" in c for c in cookies)
        conn.close()
    finally:
        w.thread.stop()


def test_plaintext_web_port_only_on_loopback(tmp_path) -> None:
    from fedmetamal.errors import ConfigError
    from fedmetamal.net.server import FederationServer, ServeOptions

    opts = ServeOptions(
        host="127.0.0.1", port=0, data_dir=tmp_path, insecure=True, web_port=0, web_host="0.0.0.0"
    )
    with pytest.raises(ConfigError, match="loopback"):
        FederationServer(opts)


def test_admin_password_file_changes_the_password_and_ends_old_sessions(tmp_path) -> None:
    from sqlalchemy import create_engine

    accounts = Accounts(create_engine(f"sqlite:///{tmp_path / 'a.db'}"))
    pw = tmp_path / "pw"
    pw.write_text("first password\n")
    assert accounts.ensure_admin(tmp_path, pw) == pw
    admin = accounts.verify("admin", "first password")
    assert admin is not None and admin.role == "admin"
    token, _ = accounts.open_session(admin)
    accounts.ensure_admin(tmp_path, pw)  # a restart with the same file keeps the session
    assert accounts.session(token) is not None
    pw.write_text("second password\n")
    accounts.ensure_admin(tmp_path, pw)
    assert accounts.verify("admin", "first password") is None
    assert accounts.verify("admin", "second password") is not None
    assert accounts.session(token) is None
    assert not (tmp_path / "admin.password").exists()  # the operator's file is the only copy
