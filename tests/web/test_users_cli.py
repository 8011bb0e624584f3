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
