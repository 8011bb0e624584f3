"""Fixtures of the service tests: a ``store`` on SQLite (always) and on PostgreSQL.

The PostgreSQL variant runs when FEDMETAMAL_TEST_POSTGRES_URL names a server
(scripts/postgres.sh starts one and scripts/test.sh exports it); each test module gets a fresh
database, dropped afterwards, and each test starts from empty tables. Under CI=true a missing
URL fails those tests instead of skipping them, so CI cannot quietly test SQLite alone.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from fedmetamal.service import tables
from fedmetamal.service.store import Store

PG_ENV = "FEDMETAMAL_TEST_POSTGRES_URL"
BACKENDS = ["sqlite", "postgresql"]


def postgres_base_url() -> str:
    """The server URL from the environment; skips (or fails under CI=true) without one."""
    url = os.environ.get(PG_ENV, "").strip()
    if url:
        return url
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(
            f"{PG_ENV} is not set under CI=true: scripts/postgres.sh did not start a server "
            "(see its messages above), so the PostgreSQL store tests cannot run.",
            pytrace=False,
        )
    pytest.skip(f"{PG_ENV} not set; run scripts/postgres.sh to test PostgreSQL as well")


def _admin_conninfo(url: str) -> str:
    """A libpq URL for psycopg (which does not know SQLAlchemy's +driver suffix)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test module, dropped afterwards."""
    base = postgres_base_url()
    name = f"fmm_test_{uuid.uuid4().hex[:12]}"
    admin = _admin_conninfo(base)
    with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(admin).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty database on each backend (tables dropped after the test)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    url = request.getfixturevalue("postgres_url")
    yield url
    engine = create_engine(make_url(url).set(drivername="postgresql+psycopg"))
    try:
        tables.metadata.drop_all(engine)
    finally:
        engine.dispose()


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """A Store on an empty database, closed after the test."""
    s = Store(store_url)
    try:
        yield s
    finally:
        s.close()
