"""``fedmetamal users``: dashboard accounts, managed on the server's own machine (the command
opens the server's database directly, so only someone with access to its data may add users)."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from fedmetamal.errors import ConfigError

if TYPE_CHECKING:
    from fedmetamal.web.accounts import Accounts

users_app = typer.Typer(
    help="Dashboard accounts (admin or read-only viewer), in the server's database.",
    no_args_is_help=True,
)
out = Console()

DataDirOpt = Annotated[Path, typer.Option("--data-dir", help="The server's data directory.")]
DatabaseOpt = Annotated[
    str | None,
    typer.Option(
        help="The server's database URL (default: sqlite in --data-dir; env "
        "FEDMETAMAL_DATABASE_URL)."
    ),
]


@contextmanager
def _accounts(data_dir: Path, database: str | None) -> Iterator[Accounts]:
    """The server's accounts, its database opened for one command and closed after it."""
    from fedmetamal.service.store import Store
    from fedmetamal.web.accounts import Accounts

    url = database or os.environ.get("FEDMETAMAL_DATABASE_URL")
    if not url:
        db = data_dir / "fedmetamal.db"
        if not db.is_file():
            raise ConfigError(
                f"No server database at '{db}'.",
                "Pass the server's --data-dir (or --database URL).",
            )
        url = f"sqlite:///{db}"
    store = Store(url)
    try:
        yield Accounts(store.engine)
    finally:
        store.close()


PasswordFileOpt = Annotated[
    Path | None,
    typer.Option("--password-file", help="Read the password from this file (else stdin)."),
]


def _read_password(password_file: Path | None) -> str:
    """From the file, else a hidden prompt (typed twice) on a terminal, else stdin's first line."""
    if password_file is not None:
        if not password_file.is_file():
            raise ConfigError(f"Password file '{password_file}' does not exist.")
        return password_file.read_text().strip()
    if sys.stdin.isatty():
        return str(typer.prompt("password", hide_input=True, confirmation_prompt=True))
    return sys.stdin.readline().strip()


@users_app.command("add")
def users_add(
    username: Annotated[str, typer.Argument(help="Login name.")],
    role: Annotated[str, typer.Option(help="admin (everything) or viewer (read-only).")] = "viewer",
    password_file: PasswordFileOpt = None,
    data_dir: DataDirOpt = Path("fedmetamal-server"),
    database: DatabaseOpt = None,
) -> None:
    """Add a dashboard account."""
    password = _read_password(password_file)
    with _accounts(data_dir, database) as accounts:
        user = accounts.create_user(username, password, role)
    out.print(f"added {user.username} ({user.role})")


@users_app.command("list")
def users_list(
    data_dir: DataDirOpt = Path("fedmetamal-server"), database: DatabaseOpt = None
) -> None:
    """Dashboard accounts: role, when made, last login, sessions open now."""
    with _accounts(data_dir, database) as accounts:
        table = Table("user", "role", "created", "last login", "sessions")
        for u in accounts.list_users():
            table.add_row(
                u.username,
                u.role,
                _when(u.created_at),
                _when(u.last_login_at) if u.last_login_at else "never",
                str(u.active_sessions),
            )
    out.print(table)


@users_app.command("set-role")
def users_set_role(
    username: Annotated[str, typer.Argument(help="Login name.")],
    role: Annotated[str, typer.Argument(help="admin (everything) or viewer (read-only).")],
    data_dir: DataDirOpt = Path("fedmetamal-server"),
    database: DatabaseOpt = None,
) -> None:
    """Change an account's role; its open sessions end. The last admin stays admin."""
    with _accounts(data_dir, database) as accounts:
        user = accounts.update_user(username, role=role)
    out.print(f"{user.username} is now {user.role} (its sessions ended)")


@users_app.command("passwd")
def users_passwd(
    username: Annotated[str, typer.Argument(help="Login name.")],
    password_file: PasswordFileOpt = None,
    data_dir: DataDirOpt = Path("fedmetamal-server"),
    database: DatabaseOpt = None,
) -> None:
    """Set a new password for an account; its open sessions end."""
    password = _read_password(password_file)
    with _accounts(data_dir, database) as accounts:
        accounts.set_password(username, password)
    out.print(f"new password set for {username} (its sessions ended)")


@users_app.command("remove")
def users_remove(
    username: Annotated[str, typer.Argument(help="Login name.")],
    data_dir: DataDirOpt = Path("fedmetamal-server"),
    database: DatabaseOpt = None,
) -> None:
    """Delete an account and end its sessions (never the last admin)."""
    with _accounts(data_dir, database) as accounts:
        accounts.delete_user(username)
    out.print(f"removed {username}")


def _when(unix: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(unix))
