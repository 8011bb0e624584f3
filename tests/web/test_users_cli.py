"""`fedmetamal users` adds dashboard accounts in the server's database, hashed."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.net.harness import ServerThread

from fedmetamal.cli import run as run_cli
from fedmetamal.service.store import Store
from fedmetamal.web.accounts import Accounts


def test_users_add_and_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ServerThread(tmp_path / "server").stop()  # a server's data dir with its database
    secret = tmp_path / "pw"
    secret.write_text("correct horse battery staple\n")
    base = ["--data-dir", str(tmp_path / "server")]
    assert (
        run_cli(
            ["users", "add", "alice", "--role", "viewer", "--password-file", str(secret), *base]
        )
        == 0
    )
    assert run_cli(["users", "list", *base]) == 0
    assert "alice" in capsys.readouterr().out
    store = Store(f"sqlite:///{tmp_path / 'server' / 'fedmetamal.db'}")
    try:
        accounts = Accounts(store.engine)
        user = accounts.verify("alice", "correct horse battery staple")
        assert user is not None and user.role == "viewer"
        assert accounts.verify("alice", "wrong") is None
    finally:
        store.close()
    assert run_cli(["users", "add", "alice", "--password-file", str(secret), *base]) != 0
    assert run_cli(["users", "list", "--data-dir", str(tmp_path / "nothing")]) != 0


def _accounts_of(server: Path) -> tuple[Store, Accounts]:
    store = Store(f"sqlite:///{server / 'fedmetamal.db'}")
    return store, Accounts(store.engine)


def test_users_set_role_passwd_and_remove_keep_an_admin_and_end_sessions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = tmp_path / "server"
    ServerThread(server).stop()
    first, second = tmp_path / "pw1", tmp_path / "pw2"
    first.write_text("correct horse battery staple\n")
    second.write_text("another long passphrase\n")
    base = ["--data-dir", str(server)]
    assert run_cli(["users", "add", "bob", "--password-file", str(first), *base]) == 0
    store, accounts = _accounts_of(server)
    try:
        bob = accounts.verify("bob", "correct horse battery staple")
        assert bob is not None
        token, _ = accounts.open_session(bob)

        assert run_cli(["users", "set-role", "bob", "admin", *base]) == 0
        assert "bob is now admin" in capsys.readouterr().out
        assert accounts.get_user("bob").role == "admin"
        assert accounts.session(token) is None  # the role change logged bob out

        token, _ = accounts.open_session(bob)
        assert run_cli(["users", "passwd", "bob", "--password-file", str(second), *base]) == 0
        assert accounts.verify("bob", "another long passphrase") is not None
        assert accounts.verify("bob", "correct horse battery staple") is None
        assert accounts.session(token) is None

        # with two admins one may go; then bob is the last one
        assert (
            run_cli(
                ["users", "add", "carol", "--role", "admin", "--password-file", str(first), *base]
            )
            == 0
        )
        assert run_cli(["users", "remove", "carol", *base]) == 0
        assert accounts.get_user("carol") is None
        assert run_cli(["users", "set-role", "bob", "viewer", *base]) == 2
        assert run_cli(["users", "remove", "bob", *base]) == 2
        err = capsys.readouterr().err
        assert "last admin" in err and "Make another user admin first" in err
        assert accounts.get_user("bob").role == "admin"

        # mistakes are named
        assert run_cli(["users", "set-role", "bob", "root", *base]) == 2
        assert "Use one of: admin, viewer" in capsys.readouterr().err
        assert run_cli(["users", "remove", "nobody", *base]) == 2
        assert "No user 'nobody'" in capsys.readouterr().err
        short = tmp_path / "short"
        short.write_text("tiny\n")
        assert run_cli(["users", "passwd", "bob", "--password-file", str(short), *base]) == 2
        assert "shorter than 10" in capsys.readouterr().err

        assert run_cli(["users", "list", *base]) == 0
        listed = capsys.readouterr().out
        assert "bob" in listed and "admin" in listed
    finally:
        store.close()
