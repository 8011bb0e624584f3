"""Account management over the web port: admins change roles, reset passwords and delete
users; everyone changes their own password. Each change that matters ends sessions, and no
change may leave the dashboard without an admin."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Column, Float, MetaData, String, Table, Text, create_engine, insert

from fedmetamal.v1 import control_pb2
from fedmetamal.v1 import dashboard_pb2 as pb
from fedmetamal.web.accounts import (
    AccountError,
    Accounts,
    NoSuchUser,
    ProtectedAccount,
    hash_password,
)

from .conftest import VIEWER, Browser, Reply, Web, start_web

STRONG = "a long enough passphrase"


# conftest's module-scoped `web` fixture gives this module a server of its own: these tests
# add, demote and delete accounts.


def dash(b: Browser, method: str, request: Any, reply: Any, **kw: Any) -> Any:
    return b.call("DashboardService", method, request, reply, **kw)


def create(admin: Browser, name: str, role: str = "viewer", password: str = STRONG) -> pb.User:
    user = dash(
        admin,
        "CreateUser",
        pb.CreateUserRequest(username=name, password=password, role=role),
        pb.User,
    )
    assert isinstance(user, pb.User), user
    return user


def users(b: Browser) -> dict[str, pb.User]:
    reply = dash(b, "ListUsers", pb.ListUsersRequest(), pb.ListUsersReply)
    assert isinstance(reply, pb.ListUsersReply), reply
    return {u.username: u for u in reply.users}


def alive(b: Browser) -> bool:
    """Whether the browser's session still opens calls (a read any role may make)."""
    code = b.code(
        "ControlService", "ListRuns", control_pb2.ListRunsRequest(), control_pb2.ListRunsReply
    )
    assert code in ("ok", "unauthenticated"), code
    return code == "ok"


def field_errors(r: Reply) -> dict[str, str]:
    """The FieldError details of a failed call, by field."""
    out = {}
    for d in r.error.get("details", []):
        assert d["type"] == "fedmetamal.v1.FieldError", d
        fe = pb.FieldError()
        fe.ParseFromString(base64.b64decode(d["value"] + "=" * (-len(d["value"]) % 4)))
        out[fe.path] = fe.message
    return out


def operator(web: Web) -> dict[str, str]:
    token = web.thread.server.operator_token_file.read_text().strip()
    return {"authorization": f"Bearer {token}"}


def test_list_shows_created_time_last_login_and_open_sessions(web: Web) -> None:
    admin = web.login()
    create(admin, "lister")
    before = users(admin)["lister"]
    assert before.created_unix > 0 and before.last_login_unix == 0 and before.active_sessions == 0
    web.login("lister", STRONG)
    web.login("lister", STRONG)
    after = users(admin)["lister"]
    assert after.last_login_unix >= before.created_unix
    assert after.active_sessions == 2
    assert users(admin)["admin"].active_sessions >= 1


def test_a_viewer_may_not_manage_users(web: Web) -> None:
    admin = web.login()
    create(admin, "target-v")
    viewer = web.login(*VIEWER)
    for method, req, out in (
        ("ListUsers", pb.ListUsersRequest(), pb.ListUsersReply),
        (
            "CreateUser",
            pb.CreateUserRequest(username="sneak", password=STRONG, role="admin"),
            pb.User,
        ),
        ("UpdateUser", pb.UpdateUserRequest(username=VIEWER[0], role="admin"), pb.User),
        ("UpdateUser", pb.UpdateUserRequest(username="target-v", new_password="x" * 12), pb.User),
        ("DeleteUser", pb.DeleteUserRequest(username="target-v"), pb.DeleteUserReply),
    ):
        r = dash(viewer, method, req, out)
        assert r.error["code"] == "permission_denied", method
        assert "needs the admin role" in r.error["message"]
    listed = users(admin)
    assert listed[VIEWER[0]].role == "viewer" and "sneak" not in listed and "target-v" in listed
    web.login("target-v", STRONG)  # its password is unchanged


def test_a_role_change_ends_the_users_sessions_so_a_demoted_admin_loses_rights_at_once(
    web: Web,
) -> None:
    admin = web.login()
    create(admin, "ops-demoted", role="admin")
    ops = web.login("ops-demoted", STRONG)
    assert "ops-demoted" in users(ops)  # admin rights
    user = dash(
        admin, "UpdateUser", pb.UpdateUserRequest(username="ops-demoted", role="viewer"), pb.User
    )
    assert (user.username, user.role) == ("ops-demoted", "viewer")
    assert not alive(ops)  # the session it had as admin is gone
    again = web.login("ops-demoted", STRONG)  # the password still works ...
    code = again.code("DashboardService", "ListUsers", pb.ListUsersRequest(), pb.ListUsersReply)
    assert code == "permission_denied"  # ... for a viewer
    # promoting back works the same way
    dash(admin, "UpdateUser", pb.UpdateUserRequest(username="ops-demoted", role="admin"), pb.User)
    assert not alive(again)
    assert users(web.login("ops-demoted", STRONG))["ops-demoted"].role == "admin"
    # the same role again changes nothing, and ends nothing
    ops = web.login("ops-demoted", STRONG)
    dash(admin, "UpdateUser", pb.UpdateUserRequest(username="ops-demoted", role="admin"), pb.User)
    assert alive(ops)


def test_an_admin_resets_a_password_and_the_users_sessions_end(web: Web) -> None:
    admin = web.login()
    create(admin, "forgetful")
    old = web.login("forgetful", STRONG)
    new_password = "a brand new passphrase"
    r = dash(
        admin,
        "UpdateUser",
        pb.UpdateUserRequest(username="forgetful", new_password="short"),
        pb.User,
    )
    assert r.error["code"] == "invalid_argument"
    assert "shorter than 10" in field_errors(r)["password"]
    assert alive(old)  # a refused reset changes nothing
    user = dash(
        admin,
        "UpdateUser",
        pb.UpdateUserRequest(username="forgetful", new_password=new_password),
        pb.User,
    )
    assert user.role == "viewer"
    assert not alive(old)
    bad = dash(
        web.browser(),
        "Login",
        pb.LoginRequest(username="forgetful", password=STRONG),
        pb.LoginReply,
    )
    assert bad.error["code"] == "unauthenticated"
    web.login("forgetful", new_password)


def test_update_user_says_what_is_wrong(web: Web) -> None:
    admin = web.login()
    for req, code, field, words in (
        (pb.UpdateUserRequest(username="nobody-here", role="viewer"), "not_found", "", "No user"),
        (
            pb.UpdateUserRequest(username=VIEWER[0], role="root"),
            "invalid_argument",
            "role",
            "admin, viewer",
        ),
        (pb.UpdateUserRequest(username=VIEWER[0]), "invalid_argument", "", "Nothing to change"),
        (
            pb.UpdateUserRequest(username="admin", role="viewer"),
            "failed_precondition",
            "role",
            "own role",
        ),
        (
            pb.UpdateUserRequest(username="admin", new_password=STRONG),
            "failed_precondition",
            "password",
            "Change my password",
        ),
    ):
        r = dash(admin, "UpdateUser", req, pb.User)
        assert r.error["code"] == code, req
        assert words in r.error["message"], r.error
        if field:
            assert words in field_errors(r)[field]


def test_an_admin_deletes_a_user_whose_sessions_end(web: Web) -> None:
    admin = web.login()
    create(admin, "leaver")
    leaver = web.login("leaver", STRONG)
    reply = dash(admin, "DeleteUser", pb.DeleteUserRequest(username="leaver"), pb.DeleteUserReply)
    assert isinstance(reply, pb.DeleteUserReply)
    assert not alive(leaver)
    assert "leaver" not in users(admin)
    r = dash(
        web.browser(), "Login", pb.LoginRequest(username="leaver", password=STRONG), pb.LoginReply
    )
    assert r.error["code"] == "unauthenticated"
    r = dash(admin, "DeleteUser", pb.DeleteUserRequest(username="leaver"), pb.DeleteUserReply)
    assert r.error["code"] == "not_found"
    # the name is free again
    create(admin, "leaver")


def test_no_admin_deletes_themself_and_the_last_admin_stays(tmp_path: Path) -> None:
    w = start_web(tmp_path)
    try:
        admin = w.login()
        r = dash(admin, "DeleteUser", pb.DeleteUserRequest(username="admin"), pb.DeleteUserReply)
        assert r.error["code"] == "failed_precondition"
        assert "your own account" in r.error["message"]
        # the operator token is nobody's account, but the last admin stays even for it
        token = operator(w)
        r = dash(
            w.browser(),
            "DeleteUser",
            pb.DeleteUserRequest(username="admin"),
            pb.DeleteUserReply,
            headers=token,
        )
        assert r.error["code"] == "failed_precondition"
        assert (
            "last admin" in r.error["message"] and "Make another user admin" in r.error["message"]
        )
        r = dash(
            w.browser(),
            "UpdateUser",
            pb.UpdateUserRequest(username="admin", role="viewer"),
            pb.User,
            headers=token,
        )
        assert r.error["code"] == "failed_precondition" and "last admin" in r.error["message"]
        assert alive(admin) and users(admin)["admin"].role == "admin"
        # with a second admin, the first may go; then the second is the last one
        create(admin, "second", role="admin")
        second = w.login("second", STRONG)
        assert isinstance(
            dash(second, "DeleteUser", pb.DeleteUserRequest(username="admin"), pb.DeleteUserReply),
            pb.DeleteUserReply,
        )
        assert not alive(admin)
        r = dash(
            w.browser(),
            "UpdateUser",
            pb.UpdateUserRequest(username="second", role="viewer"),
            pb.User,
            headers=token,
        )
        assert r.error["code"] == "failed_precondition"
        assert users(second)["second"].role == "admin"
    finally:
        w.thread.stop()


def test_change_password_needs_the_current_one_and_ends_only_the_other_sessions(web: Web) -> None:
    admin = web.login()
    create(admin, "changer")
    here = web.login("changer", STRONG)
    elsewhere = web.login("changer", STRONG)
    new_password = "my own new passphrase"
    for req, field, words in (
        (
            pb.ChangePasswordRequest(new_password=new_password),
            "current_password",
            "Enter your current",
        ),
        (
            pb.ChangePasswordRequest(current_password="not it at all", new_password=new_password),
            "current_password",
            "wrong",
        ),
        (
            pb.ChangePasswordRequest(current_password=STRONG, new_password="tiny"),
            "password",
            "shorter than",
        ),
        (
            pb.ChangePasswordRequest(current_password=STRONG, new_password=STRONG),
            "password",
            "same as the current",
        ),
    ):
        r = dash(here, "ChangePassword", req, pb.ChangePasswordReply)
        assert r.error["code"] == "invalid_argument", req
        assert words in field_errors(r)[field]
        assert alive(here) and alive(elsewhere)  # a refused change ends nothing
    ok = dash(
        here,
        "ChangePassword",
        pb.ChangePasswordRequest(current_password=STRONG, new_password=new_password),
        pb.ChangePasswordReply,
    )
    assert isinstance(ok, pb.ChangePasswordReply)
    assert alive(here)
    assert not alive(elsewhere)
    r = dash(
        web.browser(), "Login", pb.LoginRequest(username="changer", password=STRONG), pb.LoginReply
    )
    assert r.error["code"] == "unauthenticated"
    web.login("changer", new_password)


def test_a_viewer_changes_their_own_password(web: Web) -> None:
    admin = web.login()
    create(admin, "viewer-pw")
    viewer = web.login("viewer-pw", STRONG)
    ok = dash(
        viewer,
        "ChangePassword",
        pb.ChangePasswordRequest(current_password=STRONG, new_password="viewer's new one"),
        pb.ChangePasswordReply,
    )
    assert isinstance(ok, pb.ChangePasswordReply)
    web.login("viewer-pw", "viewer's new one")


def test_wrong_current_passwords_are_throttled_like_logins(web: Web) -> None:
    admin = web.login()
    create(admin, "guessed")
    thief = web.login("guessed", STRONG)
    codes = []
    for i in range(11):
        req = pb.ChangePasswordRequest(current_password=f"guess number {i}", new_password="x" * 12)
        codes.append(dash(thief, "ChangePassword", req, pb.ChangePasswordReply).error["code"])
    assert codes[:10] == ["invalid_argument"] * 10
    assert codes[10] == "resource_exhausted"


def test_the_operator_token_has_no_password_to_change(web: Web) -> None:
    req = pb.ChangePasswordRequest(current_password=STRONG, new_password="x" * 12)
    r = dash(web.browser(), "ChangePassword", req, pb.ChangePasswordReply, headers=operator(web))
    assert r.error["code"] == "failed_precondition"
    assert "users passwd" in r.error["message"]


def test_accounts_rules_without_the_web_layer(tmp_path: Path) -> None:
    accounts = Accounts(create_engine(f"sqlite:///{tmp_path / 'a.db'}"))
    accounts.create_user("root1", STRONG, "admin")
    accounts.create_user("v", STRONG, "viewer")
    with pytest.raises(ProtectedAccount, match="last admin"):
        accounts.update_user("root1", role="viewer")
    with pytest.raises(ProtectedAccount, match="last admin"):
        accounts.delete_user("root1")
    with pytest.raises(NoSuchUser):
        accounts.update_user("ghost", password=STRONG)
    with pytest.raises(AccountError, match="shorter") as err:
        accounts.set_password("v", "short")
    assert err.value.field == "password"
    # a viewer is no admin: deleting the last viewer is fine
    accounts.delete_user("v")
    assert [u.username for u in accounts.list_users()] == ["root1"]


def test_an_older_database_gains_the_last_login_column(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    old = MetaData()
    table = Table(
        "web_users",
        old,
        Column("username", String(64), primary_key=True),
        Column("role", String(16), nullable=False),
        Column("password_hash", Text, nullable=False),
        Column("created_at", Float, nullable=False),
    )
    old.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            insert(table).values(
                username="admin", role="admin", password_hash=hash_password(STRONG), created_at=1.0
            )
        )
    accounts = Accounts(engine)
    Accounts(engine)  # a second start finds the column there
    (user,) = accounts.list_users()
    assert (user.username, user.last_login_at) == ("admin", None)
    verified = accounts.verify("admin", STRONG)
    assert verified is not None
    accounts.open_session(verified, now=5.0)
    assert accounts.get_user("admin").last_login_at == 5.0
