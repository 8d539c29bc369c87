"""The recorder of a live home (``hometwin record``, started by ``hometwin up``), against the real
Crossbar router and a real database: a 2-day ``hometwin up`` of the Cape Town home lands in
PostgreSQL (``--db``) and in the default SQLite file (``<out>/hometwin.db``) with every step once
and per-day energy equal to kpis.json; the recorder SIGKILLed mid-run and started again leaves
no missing and no duplicate step (the steps settled while it was away come from the launcher);
a database that cannot be reached is one line and exit 5, the result files written.

Every wait is bounded and generous (a loaded 2-core machine); nothing depends on wall-clock speed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from hometwin.results import FLOW_COLUMNS
from runtime_support import CAPE_TOWN, Up, wait_until
from test_recording import check_run_in_db

pytestmark = pytest.mark.timeout(600)
CLI = [sys.executable, "-m", "hometwin.cli"]
ENV = dict(os.environ, COLUMNS="400")


def up(out: Path, *extra: str, timeout: float = 480) -> subprocess.CompletedProcess:
    return subprocess.run(CLI + ["up", "-f", str(CAPE_TOWN), "--days", "2", "--port", "0", "--rawsocket-port", "0",
                                 "--no-live", "--out", str(out), *extra],
                          capture_output=True, text=True, timeout=timeout, env=ENV, cwd=out.parent)


def test_hometwin_up_records_into_postgresql(tmp_path: Path, pg_url: str) -> None:
    out = tmp_path / "out"
    p = up(out, "--db", pg_url)
    assert p.returncode == 0, p.stderr[-4000:]
    assert "recorded as run cape-town-" in p.stdout
    assert not (out / "hometwin.db").exists()  # --db: there, not the default file
    check_run_in_db(pg_url, out, 2880)


def _states(url: str) -> pd.DataFrame:
    eng = sa.create_engine(url)
    try:
        with eng.connect() as c:
            return pd.read_sql("SELECT step, element, quantity, value FROM element_states "
                               "ORDER BY step, element, quantity", c)
    finally:
        eng.dispose()


def test_hometwin_up_records_into_sqlite_in_out_by_default(tmp_path: Path) -> None:
    out = tmp_path / "out"
    p = up(out)
    assert p.returncode == 0, p.stderr[-4000:]
    check_run_in_db(f"sqlite:///{out / 'hometwin.db'}", out, 2880)
    # the geyser's window-end tank temperatures, published by the live geyser (hometwin.telemetry),
    # equal those hometwin run records of its own model for the same windows
    ref = tmp_path / "ref"
    r = subprocess.run(CLI + ["run", "-f", str(CAPE_TOWN), "--days", "2", "--out", str(ref),
                              "--db", f"sqlite:///{tmp_path / 'ref.db'}"], capture_output=True, text=True,
                       timeout=480, env=ENV, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-4000:]
    live, run = _states(f"sqlite:///{out / 'hometwin.db'}"), _states(f"sqlite:///{tmp_path / 'ref.db'}")
    water = live[(live.element == "geyser") & (live.quantity == "temp_water")]
    assert len(water) >= 2 and water.value.between(10.0, 95.0).all(), water
    assert live[["step", "element", "quantity"]].equals(run[["step", "element", "quantity"]]), (live, run)
    assert np.allclose(live.value, run.value, rtol=0, atol=1e-9)


def test_hometwin_up_with_an_unreachable_database_says_so_and_writes_its_files(tmp_path: Path) -> None:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))  # bound, not listening
    port = s.getsockname()[1]
    out = tmp_path / "out"
    try:
        p = up(out, "--db", f"postgresql://rec:pa55word@127.0.0.1:{port}/twin")
    finally:
        s.close()
    assert p.returncode == 5, p.stderr[-4000:]
    assert "pa55word" not in p.stdout + p.stderr
    line = [ln for ln in p.stderr.splitlines() if ln.startswith("--db: the run was not recorded")]
    assert len(line) == 1 and f"rec:***@127.0.0.1:{port}/twin" in line[0], p.stderr[-3000:]
    assert json.loads((out / "kpis.json").read_text())["meta"]["n_steps"] == 2880  # the run went on


def test_a_recorder_killed_mid_run_and_restarted_leaves_no_gap_and_no_duplicate(tmp_path: Path) -> None:
    """SIGKILL while windows come (paced, 30-step windows); the launcher starts it again; the
    steps settled meanwhile are asked of the launcher.  The clock pauses at step 2400 until the
    new recorder has joined, so that the kill falls mid-run however slow the machine is."""
    db = tmp_path / "rec.db"
    url = f"sqlite:///{db}"
    u = Up(None, CAPE_TOWN, until_s=2 * 86400, window=30, speed="4000", pause_at=2400, db_url=url,
           out=tmp_path / "out").start()
    engine = sa.create_engine(url)

    def recorded() -> int:
        with engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT count(*) FROM flows")).scalar())

    with u.driving():
        wait_until(lambda: recorded() >= 300, 240, "the recorder to write 300 steps")
        rec = u.launcher.procs["recorder"]
        old = rec.proc
        os.kill(old.pid, signal.SIGKILL)
        before = recorded()
        assert before < 2400
        wait_until(lambda: rec.proc is not old and rec.joined, 120, "the recorder to be started again and join")
        u.wait_paused_at(2400)
        wait_until(lambda: recorded() >= 2400, 120, "the restarted recorder to hold steps 0–2399")
        u.call("hometwin.clock.resume")
    result, logs = u.finish(300)
    assert len(result.frame) == 2880
    assert "caught up steps" in logs, logs[-3000:]  # it did miss steps, and got them from the launcher
    assert rec.restarts == 1
    with engine.connect() as conn:
        steps = conn.execute(sa.text("SELECT step FROM flows ORDER BY step")).scalars().all()
        assert steps == list(range(2880))  # no gap, no duplicate
        run = conn.execute(sa.text("SELECT status, steps_recorded FROM runs")).one()
        assert tuple(run) == ("finished", 2880)
        db_flows = pd.read_sql(sa.text("SELECT * FROM flows ORDER BY step"), conn)
        n_el = conn.execute(sa.text("SELECT count(*), count(DISTINCT step) FROM element_flows")).one()
        db_kpis = dict(conn.execute(sa.text("SELECT name, value FROM kpis")).all())
    engine.dispose()
    # each step as the launcher recorded it from the same Flows, to the bit
    for c in FLOW_COLUMNS:
        np.testing.assert_array_equal(db_flows[c].to_numpy(), result.frame[c].to_numpy(), err_msg=c)
    elements = [c for c in result.frame.columns if c.startswith("el.")]
    assert tuple(n_el) == (2880 * len(elements), 2880)
    for name, value in result.kpis().items():  # the recorder's KPIs, from the database, are the run's
        if np.isfinite(value):
            assert db_kpis[name] == pytest.approx(value, rel=1e-9, abs=1e-9), name
