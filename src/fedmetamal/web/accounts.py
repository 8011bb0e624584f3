"""Dashboard accounts, browser sessions and run templates, kept in the server's database.

The tables live in their own SQLAlchemy ``MetaData`` on the Store's engine, so the federation
schema (``service.tables``) is untouched and a PostgreSQL deployment keeps everything in one
database. Passwords are stored as scrypt hashes with a per-user salt; sessions as the SHA-256 of
their token, so a copy of the database opens no browser session.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Engine,
    Float,
    ForeignKey,
    MetaData,
    String,
    Table,
    Text,
    delete,
    func,
    insert,
    inspect,
    select,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, IntegrityError

from fedmetamal.errors import ConfigError, FedMetaMalError

ROLES = ("admin", "viewer")
ADMIN_USER = "admin"
ADMIN_PASSWORD_FILE = "admin.password"
#: A session ends this long after login, whatever happens.
SESSION_TTL_S = 12 * 3600.0
#: ... and after this long without a call.
SESSION_IDLE_S = 2 * 3600.0
#: last_seen is written at most this often (a busy page must not write on every call).
_TOUCH_EVERY_S = 60.0
MIN_PASSWORD_LENGTH = 10
_USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
_TEMPLATE_NAME_MAX = 100
_TEMPLATE_JSON_MAX = 256 * 1024
# scrypt cost: ~50 ms and 16 MiB per hash; stored with the hash so it can be raised later.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1

metadata = MetaData()

web_users = Table(
    "web_users",
    metadata,
    Column("username", String(64), primary_key=True),
    Column("role", String(16), nullable=False),
    Column("password_hash", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    # Added after the first release: nullable, so older databases gain it by ALTER TABLE.
    Column("last_login_at", Float, nullable=True),
)

web_sessions = Table(
    "web_sessions",
    metadata,
    Column("token_sha256", String(64), primary_key=True),
    Column(
        "username",
        String(64),
        ForeignKey("web_users.username", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("csrf", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("last_seen", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
)

web_templates = Table(
    "web_templates",
    metadata,
    Column("name", String(_TEMPLATE_NAME_MAX), primary_key=True),
    Column("config_json", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("created_by", String(64), nullable=False),
)


class AccountError(FedMetaMalError):
    """A user's request about accounts that cannot be done (bad name, weak password, ...).

    ``field`` names the input at fault ("username", "role", "password", "current_password"),
    so a form can show the message next to it; "" when no single input is.
    """

    def __init__(self, problem: str, fix: str | None = None, field: str = "") -> None:
        super().__init__(problem, fix)
        self.field = field


class UserExists(AccountError):
    """The user name is taken."""


class NoSuchUser(AccountError):
    """No account has that name."""


class ProtectedAccount(AccountError):
    """The change would lock people out: deleting yourself, or removing the last admin."""


@dataclass(frozen=True)
class User:
    username: str
    role: str
    created_at: float
    last_login_at: float | None = None
    #: Sessions open now (filled in by :meth:`Accounts.list_users` only).
    active_sessions: int = 0


@dataclass(frozen=True)
class Session:
    """A logged-in browser: who, its CSRF token, and when it ends."""

    username: str
    role: str
    csrf: str
    expires_at: float


@dataclass(frozen=True)
class Template:
    name: str
    config_json: str
    created_at: float
    created_by: str


def hash_password(password: str) -> str:
    """``scrypt$N$r$p$salt$hash`` (base64), with a fresh 16-byte salt."""
    salt = os.urandom(16)
    digest = _scrypt(password, salt, _SCRYPT_N, _SCRYPT_R, _SCRYPT_P)
    return "$".join(
        ["scrypt", str(_SCRYPT_N), str(_SCRYPT_R), str(_SCRYPT_P), _b64(salt), _b64(digest)]
    )


def check_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches a hash made by :func:`hash_password` (constant time)."""
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        want = base64.b64decode(digest)
        got = _scrypt(password, base64.b64decode(salt), int(n), int(r), int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=64 * 1024 * 1024, dklen=32
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


#: Compared against when the user does not exist, so a wrong name costs as long as a wrong
#: password (no user enumeration by timing).
_DUMMY_HASH = hash_password(secrets.token_urlsafe(16))


class Accounts:
    """Users, sessions and templates on ``engine`` (the Store's)."""

    def __init__(
        self,
        engine: Engine,
        session_ttl_s: float = SESSION_TTL_S,
        session_idle_s: float = SESSION_IDLE_S,
    ) -> None:
        self.engine = engine
        self._writer = engine.execution_options(fmm_write=True)
        self.session_ttl_s = session_ttl_s
        self.session_idle_s = session_idle_s
        metadata.create_all(engine)
        self._add_missing_columns()

    def _add_missing_columns(self) -> None:
        """Bring a database made by an older release up to date (web_users.last_login_at)."""
        if "last_login_at" in {c["name"] for c in inspect(self.engine).get_columns("web_users")}:
            return
        try:
            with self._writer.begin() as conn:
                conn.exec_driver_sql("ALTER TABLE web_users ADD COLUMN last_login_at FLOAT")
        except DBAPIError:  # another server process on the same database added it first
            cols = {c["name"] for c in inspect(self.engine).get_columns("web_users")}
            if "last_login_at" not in cols:
                raise

    # -- users ------------------------------------------------------------------------------
    def create_user(self, username: str, password: str, role: str) -> User:
        """Add an account; refuses a taken name, an unknown role or a short password."""
        _check_username(username)
        if role not in ROLES:
            raise AccountError(
                f"Unknown role '{role[:20]}'.", f"Use one of: {', '.join(ROLES)}.", "role"
            )
        _check_password_strength(password)
        user = User(username, role, time.time())
        try:
            with self._writer.begin() as conn:
                conn.execute(
                    insert(web_users).values(
                        username=username,
                        role=role,
                        password_hash=hash_password(password),
                        created_at=user.created_at,
                    )
                )
        except IntegrityError as exc:
            raise UserExists(
                f"A user '{username}' exists already.", "Choose another name.", "username"
            ) from exc
        return user

    def set_password(self, username: str, password: str) -> None:
        """Reset a password (admin or CLI: no current password needed); every session of the
        user ends, so whoever knew the old password is logged out."""
        self.update_user(username, password=password)

    def update_user(
        self,
        username: str,
        role: str | None = None,
        password: str | None = None,
        actor: str | None = None,
    ) -> User:
        """Change a user's role and/or password, and end that user's sessions.

        ``actor`` is the logged-in admin asking (None: the server's operator, by CLI or token).
        An admin changes neither their own role (another admin must) nor their own password
        here (:meth:`change_password` asks for the current one). The last admin stays admin.
        """
        if role is None and password is None:
            raise AccountError("Nothing to change.", "Give a new role or a new password.")
        if role is not None and role not in ROLES:
            raise AccountError(
                f"Unknown role '{role[:20]}'.", f"Use one of: {', '.join(ROLES)}.", "role"
            )
        if actor is not None and username == actor:
            if role is not None:
                raise ProtectedAccount(
                    "You cannot change your own role.", "Ask another admin to do it.", "role"
                )
            raise ProtectedAccount(
                "Your own password is changed with your current password, not reset.",
                "Use 'Change my password' instead.",
                "password",
            )
        values: dict[str, str] = {}
        if password is not None:
            _check_password_strength(password)
            values["password_hash"] = hash_password(password)
        with self._writer.begin() as conn:
            row = self._locked_user(conn, username)
            if role is not None and role != row.role:
                if row.role == "admin":
                    self._check_other_admin(conn, username, "demote")
                values["role"] = role
            if values:
                conn.execute(
                    update(web_users).where(web_users.c.username == username).values(**values)
                )
                conn.execute(delete(web_sessions).where(web_sessions.c.username == username))
        return User(username, values.get("role", row.role), row.created_at, row.last_login_at)

    def delete_user(self, username: str, actor: str | None = None) -> None:
        """Remove an account and its sessions; never ``actor`` itself nor the last admin."""
        if actor is not None and username == actor:
            raise ProtectedAccount(
                "You cannot delete your own account.", "Ask another admin to do it."
            )
        with self._writer.begin() as conn:
            row = self._locked_user(conn, username)
            if row.role == "admin":
                self._check_other_admin(conn, username, "delete")
            # explicitly: SQLite enforces ON DELETE CASCADE only with its foreign_keys pragma
            conn.execute(delete(web_sessions).where(web_sessions.c.username == username))
            conn.execute(delete(web_users).where(web_users.c.username == username))

    def change_password(self, username: str, current: str, new: str, keep_token: str = "") -> None:
        """A user changes their own password. The current one must be right; every other
        session of the user ends (a stolen cookie stops working), the one with
        ``keep_token`` stays."""
        if not current:
            raise AccountError("Enter your current password.", field="current_password")
        _check_password_strength(new)
        if new == current:
            raise AccountError(
                "The new password is the same as the current one.",
                "Choose a different password.",
                "password",
            )
        if self.verify(username, current) is None:
            raise AccountError(
                "The current password is wrong.", "Type it again.", "current_password"
            )
        with self._writer.begin() as conn:
            conn.execute(
                update(web_users)
                .where(web_users.c.username == username)
                .values(password_hash=hash_password(new))
            )
            conn.execute(
                delete(web_sessions).where(
                    (web_sessions.c.username == username)
                    & (web_sessions.c.token_sha256 != token_digest(keep_token))
                )
            )

    @staticmethod
    def _locked_user(conn: Connection, username: str) -> Any:
        """The user's row, locked for this transaction (PostgreSQL; SQLite's write
        transactions are exclusive anyway)."""
        row = conn.execute(
            select(web_users).where(web_users.c.username == username).with_for_update()
        ).first()
        if row is None:
            raise NoSuchUser(
                f"No user '{username[:64]}'.", "Check the name (list the users to see them)."
            )
        return row

    @staticmethod
    def _check_other_admin(conn: Connection, username: str, what: str) -> None:
        """Refuse to ``what`` (demote, delete) ``username`` when no other admin would be left.
        The admin rows are locked, so two admins demoting each other cannot both succeed."""
        others = conn.execute(
            select(web_users.c.username)
            .where((web_users.c.role == "admin") & (web_users.c.username != username))
            .with_for_update()
        ).all()
        if not others:
            raise ProtectedAccount(
                f"'{username}' is the last admin; you cannot {what} it.",
                "Make another user admin first.",
                "role" if what == "demote" else "",
            )

    def get_user(self, username: str) -> User | None:
        with self.engine.begin() as conn:
            row = conn.execute(select(web_users).where(web_users.c.username == username)).first()
        if row is None:
            return None
        return User(row.username, row.role, row.created_at, row.last_login_at)

    def list_users(self, now: float | None = None) -> list[User]:
        """Every account, by name, with its last login and how many sessions are open now."""
        now = time.time() if now is None else now
        s = web_sessions.c
        live = (
            select(s.username, func.count().label("n"))
            .where((s.expires_at > now) & (s.last_seen > now - self.session_idle_s))
            .group_by(s.username)
            .subquery()
        )
        with self.engine.begin() as conn:
            rows = conn.execute(
                select(web_users, live.c.n)
                .join_from(web_users, live, web_users.c.username == live.c.username, isouter=True)
                .order_by(web_users.c.username)
            ).all()
        return [
            User(r.username, r.role, r.created_at, r.last_login_at, int(r.n or 0)) for r in rows
        ]

    def verify(self, username: str, password: str) -> User | None:
        """The user if the password is right, else None (as slow for unknown names)."""
        with self.engine.begin() as conn:
            row = conn.execute(
                select(web_users).where(web_users.c.username == username[:64])
            ).first()
        if row is None:
            check_password(password, _DUMMY_HASH)
            return None
        if not check_password(password, row.password_hash):
            return None
        return User(row.username, row.role, row.created_at, row.last_login_at)

    def ensure_admin(self, data_dir: Path, password_file: Path | None = None) -> Path | None:
        """Make sure the "admin" account exists.

        With ``password_file``, admin's password is set from it (at every start). Otherwise, on
        first start, a random password is written to ``<data_dir>/admin.password`` (mode 0600);
        returns the file that holds the password (None when admin existed and no file is kept).
        """
        if password_file is not None:
            if not password_file.is_file():
                raise ConfigError(
                    f"Admin password file '{password_file}' does not exist.", "Check the path."
                )
            password = password_file.read_text(encoding="utf-8").strip()
            if self.get_user(ADMIN_USER) is None:
                self.create_user(ADMIN_USER, password, "admin")
            elif self.verify(ADMIN_USER, password) is None:  # changed: old sessions end
                self.set_password(ADMIN_USER, password)
            return password_file
        path = data_dir / ADMIN_PASSWORD_FILE
        if self.get_user(ADMIN_USER) is not None:
            return path if path.is_file() else None
        password = secrets.token_urlsafe(18)
        data_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(password + "\n")
        tmp.replace(path)
        try:
            self.create_user(ADMIN_USER, password, "admin")
        except UserExists:  # another server process on the same database made it first
            path.unlink(missing_ok=True)
            return None
        return path

    # -- sessions ---------------------------------------------------------------------------
    def open_session(self, user: User, now: float | None = None) -> tuple[str, Session]:
        """A new session for ``user``: the cookie token (only its hash is stored) and what it
        grants."""
        now = time.time() if now is None else now
        token = secrets.token_urlsafe(32)  # 256 bits
        csrf = secrets.token_urlsafe(24)
        expires = now + self.session_ttl_s
        with self._writer.begin() as conn:
            conn.execute(
                delete(web_sessions).where(
                    (web_sessions.c.expires_at <= now)
                    | (web_sessions.c.last_seen <= now - self.session_idle_s)
                )
            )
            conn.execute(
                insert(web_sessions).values(
                    token_sha256=token_digest(token),
                    username=user.username,
                    csrf=csrf,
                    created_at=now,
                    last_seen=now,
                    expires_at=expires,
                )
            )
            conn.execute(
                update(web_users)
                .where(web_users.c.username == user.username)
                .values(last_login_at=now)
            )
        return token, Session(user.username, user.role, csrf, expires)

    def session(self, token: str, now: float | None = None) -> Session | None:
        """The live session of a cookie token, or None (unknown, expired, idle too long)."""
        if not token or len(token) > 128:
            return None
        now = time.time() if now is None else now
        key = token_digest(token)
        s, u = web_sessions.c, web_users.c
        with self.engine.begin() as conn:
            row = conn.execute(
                select(s.username, s.csrf, s.last_seen, s.expires_at, u.role)
                .join_from(web_sessions, web_users, s.username == u.username)
                .where(s.token_sha256 == key)
            ).first()
        if row is None:
            return None
        if row.expires_at <= now or row.last_seen <= now - self.session_idle_s:
            self.end_session(token)
            return None
        if now - row.last_seen >= min(_TOUCH_EVERY_S, self.session_idle_s / 10):
            with self._writer.begin() as conn:
                conn.execute(
                    update(web_sessions).where(s.token_sha256 == key).values(last_seen=now)
                )
        return Session(row.username, row.role, row.csrf, row.expires_at)

    def end_session(self, token: str) -> None:
        with self._writer.begin() as conn:
            conn.execute(
                delete(web_sessions).where(web_sessions.c.token_sha256 == token_digest(token))
            )

    # -- templates --------------------------------------------------------------------------
    def save_template(self, name: str, config_json: str, created_by: str) -> Template:
        """Store (or replace) a named run configuration."""
        name = name.strip()
        if not name or len(name) > _TEMPLATE_NAME_MAX or not name.isprintable():
            raise AccountError(
                "A template needs a name of 1 to 100 printable characters.", "Name it."
            )
        if len(config_json) > _TEMPLATE_JSON_MAX:
            raise AccountError("The template's configuration is larger than 256 KiB.")
        tpl = Template(name, config_json, time.time(), created_by)
        with self._writer.begin() as conn:
            conn.execute(delete(web_templates).where(web_templates.c.name == name))
            conn.execute(
                insert(web_templates).values(
                    name=name,
                    config_json=config_json,
                    created_at=tpl.created_at,
                    created_by=created_by,
                )
            )
        return tpl

    def list_templates(self) -> list[Template]:
        with self.engine.begin() as conn:
            rows = conn.execute(select(web_templates).order_by(web_templates.c.name)).all()
        return [Template(r.name, r.config_json, r.created_at, r.created_by) for r in rows]


def _check_username(username: str) -> None:
    if not _USERNAME.match(username):
        raise AccountError(
            f"'{username[:64]}' is not a valid user name.",
            "Use 1 to 64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit.",
            "username",
        )


def _check_password_strength(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(
            f"The password is shorter than {MIN_PASSWORD_LENGTH} characters.",
            "Choose a longer password.",
            "password",
        )
    if len(password) > 1024:
        raise AccountError(
            "The password is longer than 1024 characters.", "Choose a shorter one.", "password"
        )
