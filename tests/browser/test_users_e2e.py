"""The Users page end to end, in Debian's headless chromium against `fedmetamal serve`: an
admin adds a viewer, the viewer changes their own password and sees no admin controls, the
admin deletes the viewer; the server's database agrees at each end."""

from __future__ import annotations

import http.client
import json

from google.protobuf.message import Message

from fedmetamal.v1 import dashboard_pb2 as pb

from .conftest import SCREENSHOTS, Dashboard, Tools, run_script
from .test_dashboard_e2e import assert_clean, png_size

VIEWER = "e2e-viewer"


def dashboard_call(
    server: Dashboard, method: str, request: Message, headers: dict[str, str]
) -> tuple[int, bytes]:
    """One unary DashboardService call on the web port: (HTTP status, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.web_port, timeout=30)
    try:
        conn.request(
            "POST",
            f"/fedmetamal.v1.DashboardService/{method}",
            request.SerializeToString(),
            {"content-type": "application/proto", "connect-protocol-version": "1", **headers},
        )
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_admin_adds_a_viewer_who_changes_their_password_then_is_deleted(
    browser_tools: Tools, dashboard: Dashboard
) -> None:
    result = run_script(browser_tools, dashboard, "users.mjs", env={"FMM_VIEWER": VIEWER}).ok()
    # The deliberate refusal (a short password) shows next to its field, and its 400 is the
    # only console line; everything else is clean.
    assert "shorter than 10 characters" in result["shortPasswordError"]
    assert result["shortPasswordInvalid"] == "true"
    assert len(result["consoleFromRefusal"]) <= 1
    assert all("400" in text for text in result["consoleFromRefusal"])
    assert_clean(result)
    # WCAG 2.1 A/AA (axe-core): the admin's page with an inline error and with the reset form
    # open, and the viewer's page
    assert result["axe"] == {"adminWithError": [], "adminResetOpen": [], "viewer": []}, result[
        "axe"
    ]
    assert result["resetFocus"] == "reset-pass"

    assert result["initialUsers"] == ["admin"]
    assert result["ownRowButtons"] == ["Change my password"]  # no delete or demote of yourself
    assert result["added"] == f"Added {VIEWER} as a viewer."
    assert result["addErrorGone"] is True
    assert result["viewerRole"] == "viewer"
    actions = " | ".join(result["rowButtons"])
    for label in ("Make admin", "Reset password", "Delete"):
        assert label in actions, actions
    # the viewer: no Users link, no table or add form, only the own-password form
    assert "Users" not in result["viewerNav"]
    assert result["viewerTables"] == 0 and result["viewerAddForm"] == 0
    assert result["viewerButtons"] == ["Change password"]
    assert result["viewerFocus"] == "cp-current"
    assert "Your password is changed" in result["changed"]
    assert result["stillLoggedIn"].startswith(VIEWER)
    assert result["viewerSecondLogin"].startswith(VIEWER)
    # the admin saw the viewer's login, then deleted the account
    assert result["viewerLastLogin"].endswith("ago")
    assert result["afterDelete"] == ["admin"]
    assert png_size(SCREENSHOTS / "users.png") == (1280, 800)

    # the server agrees: the account is gone, and neither password opens a session
    bearer = {"authorization": f"Bearer {dashboard.operator_token}"}
    status, body = dashboard_call(dashboard, "ListUsers", pb.ListUsersRequest(), bearer)
    assert status == 200
    listed = pb.ListUsersReply()
    listed.ParseFromString(body)
    assert [u.username for u in listed.users] == ["admin"]
    for password in ("first viewer password", "second viewer password"):
        status, body = dashboard_call(
            dashboard, "Login", pb.LoginRequest(username=VIEWER, password=password), {}
        )
        assert status == 401 and json.loads(body)["code"] == "unauthenticated"
