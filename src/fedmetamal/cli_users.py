"""``fedmetamal users``: dashboard accounts, managed on the server's own machine (the command
opens the server's database directly, so only someone with access to its data may add users)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from fedmetamal.errors import ConfigError

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


def _accounts(data_dir: Path, database: str | None):
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
    return store, Accounts(store.engine)


@users_app.command("add")
def users_add(
    username: Annotated[str, typer.Argument(help="Login name.")],
    role: Annotated[str, typer.Option(help="admin (everything) or viewer (read-only).")] = "viewer",
    password_file: Annotated[
        Path | None,
        typer.Option("--password-file", help="Read the password from this file (else stdin)."),
    ] = None,
    data_dir: DataDirOpt = Path("fedmetamal-server"),
    database: DatabaseOpt = None,
) -> None:
    """Add a dashboard account."""
    if password_file is not None:
        if not password_file.is_file():
            raise ConfigError(f"Password file '{password_file}' does not exist.")
        password = password_file.read_text().strip()
    elif sys.stdin.isatty():
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    else:
        password = sys.stdin.readline().strip()
    store, accounts = _accounts(data_dir, database)
    try:
        user = accounts.create_user(username, password, role)
    finally:
        store.close()
    out.print(f"added {user.username} ({user.role})")


@users_app.command("list")
def users_list(
    data_dir: DataDirOpt = Path("fedmetamal-server"), database: DatabaseOpt = None
) -> None:
    """Dashboard accounts and their roles."""
    store, accounts = _accounts(data_dir, database)
    try:
        table = Table("user", "role")
        for u in accounts.list_users():
            table.add_row(u.username, u.role)
    finally:
        store.close()
    out.print(table)
