"""A real PostgreSQL server for the tests, in a temporary folder, reached over its Unix socket only.

``initdb`` refuses to run as root (CI runs as root): the cluster is made and started as the
``postgres`` user (``runuser``) when we are root.  Nothing listens on TCP (``listen_addresses=''``).
Used as a session fixture (``pg_url``, tests/conftest.py); :func:`new_database` gives each test
its own database on it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

PG_BIN = Path(os.environ.get("HOMETWIN_PG_BIN", "/usr/lib/postgresql/15/bin"))


class PgServer:
    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="hometwin-pg-"))
        self.data = self.root / "data"
        self.sock = self.root  # the socket's folder
        self.user = "postgres"
        self._as: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
            self._as = ["runuser", "-u", "postgres", "--"]
        else:
            import getpass

            self.user = getpass.getuser()

    def _run(self, *argv: str, timeout: float = 120) -> None:
        p = subprocess.run(self._as + list(argv), capture_output=True, text=True, timeout=timeout)
        if p.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed ({p.returncode}): {p.stderr.strip() or p.stdout.strip()}")

    def start(self) -> "PgServer":
        self._run(str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", self.user, "--no-sync")
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log"), "-w", "-t", "120",
                  "-o", f"-k {self.sock} -c listen_addresses='' -c fsync=off", "start")
        return self

    def stop(self) -> None:
        try:
            self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def url(self, db: str = "postgres") -> str:
        """A SQLAlchemy URL of database ``db`` over the Unix socket."""
        return f"postgresql+psycopg://{self.user}@/{db}?host={self.sock}"

    def new_database(self) -> str:
        """A fresh, empty database on this server; its URL."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(host=str(self.sock), user=self.user, dbname="postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)
