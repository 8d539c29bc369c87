"""A real PostgreSQL for the tests: Debian's server binaries, a cluster in a temporary directory,
listening on a Unix socket there only (no TCP), stopped at the end.  As root (CI), the cluster
runs as the ``postgres`` user: ``initdb`` refuses root."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

PG_BIN = Path(os.environ.get("HOMETWIN_PG_BIN", "/usr/lib/postgresql/15/bin"))
PORT = 5432  # only names the socket file (.s.PGSQL.5432) in the cluster's own directory


class Postgres:
    def __init__(self, root: Path):
        self.root = root
        self.data = root / "data"
        self.socket_dir = root / "sock"

    def _as_owner(self, argv: list[str]) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv

    def start(self) -> "Postgres":
        self.socket_dir.mkdir()
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
            shutil.chown(self.socket_dir, "postgres")
        subprocess.run(self._as_owner([str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                                       "-E", "UTF8", "--no-sync"]), check=True, capture_output=True, timeout=120)
        opts = f"-k {self.socket_dir} -c listen_addresses='' -p {PORT} -c fsync=off"
        subprocess.run(self._as_owner([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-o", opts, "-w", "-t", "120",
                                       "-l", str(self.root / "server.log"), "start"]),
                       check=True, capture_output=True, timeout=150)
        return self

    def stop(self) -> None:
        subprocess.run(self._as_owner([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"]),
                       capture_output=True, timeout=120)

    def create_database(self, name: str) -> str:
        """A new database; its SQLAlchemy URL (psycopg, the Unix socket)."""
        import psycopg

        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql://postgres@/{name}?host={self.socket_dir}&port={PORT}"

    def dsn(self, database: str) -> str:
        return f"host={self.socket_dir} port={PORT} user=postgres dbname={database}"


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    root = Path(tempfile.mkdtemp(prefix="hometwin-pg-"))
    root.chmod(0o755)
    pg = Postgres(root).start()
    try:
        yield pg
    finally:
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)
