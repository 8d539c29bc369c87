"""Shared fixtures: a hand-built HomeContext, paths to the examples and to ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from hometwin.element import HomeContext, Window

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "homes"
SHARED_DATA = Path(os.environ.get("HOMETWIN_SHARED_DATA", ROOT.parent / "shared" / "data"))
# The examples name price files in ../shared/data, outside their folder: a configured data root
# (hometwin.datafiles), inherited by every hometwin process the tests start.
os.environ.setdefault("HOMETWIN_DATA_ROOT", str(SHARED_DATA))


def make_ctx(n_steps: int = 1440, step_s: int = 60, start: str = "2025-01-01T00:00:00Z",
             tz: str = "UTC", lat: float = -33.92, lon: float = 18.42, seed: int = 0) -> HomeContext:
    return HomeContext(name="test", latitude=lat, longitude=lon, altitude_m=0.0, timezone=tz,
                       start=pd.Timestamp(start).tz_convert("UTC"), step_s=step_s, n_steps=n_steps, seed=seed)


def window(ctx: HomeContext, i0: int, n: int, seq: int = 0) -> Window:
    return Window(seq=seq, i0=i0, n=n, dt_s=ctx.step_s, home=ctx)


@pytest.fixture
def ctx() -> HomeContext:
    return make_ctx()


def shared(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.fail(f"shared reference data missing: {path} (set HOMETWIN_SHARED_DATA)")
    return path


@pytest.fixture(scope="session")
def pg_server():
    """A real PostgreSQL server for the session (tests/pgserver.py: a temp folder, Unix socket only)."""
    from pgserver import PgServer

    server = PgServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url(pg_server) -> str:
    """A fresh database on the session's PostgreSQL server (its SQLAlchemy URL)."""
    return pg_server.new_database()
