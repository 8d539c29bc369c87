"""``hometwin run --db``: a run recorded in a real database (SQLite file; PostgreSQL started by
the tests, tests/pgserver.py), checked against the run's own result files — per simulated day,
every energy total equals kpis.json's to 1e-6 kWh, every step is there once, each element's
energy equals kpis.json's ``elements_kwh`` — and the errors: a bad URL, an unreachable
database, a full disk are one line without the password, exit 5, the result files written.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from hometwin.results import FLOW_COLUMNS
from runtime_support import CAPE_TOWN

CLI = [sys.executable, "-m", "hometwin.cli"]
ENV = dict(os.environ, COLUMNS="400")
KWH = 3.6e6
#: kpis.json's energy totals and the flows column each sums
ENERGY_KPIS = {"pv_kwh": "pv_ac_j", "pv_dc_kwh": "pv_dc_j", "curtailed_kwh": "curtailed_j", "load_kwh": "load_j",
               "unserved_kwh": "unserved_j", "grid_import_kwh": "grid_import_j", "grid_export_kwh": "grid_export_j",
               "battery_charge_kwh": "battery_charge_j", "battery_discharge_kwh": "battery_discharge_j",
               "losses_kwh": "loss_j"}


def hometwin(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(CLI + list(args), capture_output=True, text=True, timeout=timeout, env=ENV)


def daily_sql(dialect: str, column: str, tz_hours: int = 2) -> str:
    """Energy per *local* simulated day, in the database's own SQL (Cape Town: UTC+2, no DST)."""
    if dialect == "postgresql":
        day = "date_trunc('day', time AT TIME ZONE 'Africa/Johannesburg')"
    else:
        day = f"date(time, '+{tz_hours} hours')"
    return (f"SELECT {day} AS day, sum({column}) / 3600000.0 AS kwh FROM flows WHERE run_id = :run "
            "GROUP BY 1 ORDER BY 1")


def check_run_in_db(url: str, out: Path, n_steps: int) -> str:
    """The run of ``out`` (its kpis.json, flows.parquet) is in the database at ``url``, whole:
    returns its run_id."""
    kpis = json.loads((out / "kpis.json").read_text())
    frame = pd.read_parquet(out / "flows.parquet")
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            runs = conn.execute(sa.text("SELECT run_id, status, steps_recorded, n_steps, step_s, home FROM runs")).all()
            assert len(runs) == 1, runs
            run_id, status, steps_recorded, n, step_s, home = runs[0]
            assert (status, steps_recorded, n, step_s, home) == ("finished", n_steps, n_steps, 60, "cape-town")
            steps = conn.execute(sa.text("SELECT count(*), count(DISTINCT step), min(step), max(step) FROM flows "
                                         "WHERE run_id = :run"), {"run": run_id}).one()
            assert tuple(steps) == (n_steps, n_steps, 0, n_steps - 1)  # every step, once
            local = frame.index.tz_convert("Africa/Johannesburg")
            for name, col in ENERGY_KPIS.items():
                days = conn.execute(sa.text(daily_sql(engine.dialect.name, col)), {"run": run_id}).all()
                assert len(days) == 2
                by_day = np.array([float(kwh) for _, kwh in days])
                # per local day: the same as the parquet's day (an independent file of the run)
                ref = (frame[col].groupby(local.date).sum() / KWH).to_numpy()
                np.testing.assert_allclose(by_day, ref, rtol=0, atol=1e-6, err_msg=col)
                assert abs(by_day.sum() - kpis["kpis"][name]) <= 1e-6, (name, by_day.sum(), kpis["kpis"][name])
            # each element's energy, from the long table
            el = dict(conn.execute(sa.text("SELECT element, sum(energy_j) / 3600000.0 FROM element_flows "
                                           "WHERE run_id = :run GROUP BY element"), {"run": run_id}).all())
            assert set(el) == set(kpis["elements_kwh"])
            for name, kwh in kpis["elements_kwh"].items():
                assert abs(el[name] - kwh) <= 1e-6, name
            # KPIs as the run computed them (NaN: NULL)
            db_kpis = dict(conn.execute(sa.text("SELECT name, value FROM kpis WHERE run_id = :run"), {"run": run_id}).all())
            for name, value in kpis["kpis"].items():
                if value is None:
                    assert db_kpis[name] is None
                else:
                    assert db_kpis[name] == pytest.approx(value, rel=1e-12, abs=1e-12), name
            units = dict(conn.execute(sa.text("SELECT name, unit FROM kpis WHERE run_id = :run"), {"run": run_id}).all())
            assert units["grid_import_kwh"] == "kWh" and units["total_cost"] == "ZAR"
            # the wide table's SoC and the time of step 0 (the spec's local midnight, in UTC)
            first = conn.execute(sa.text("SELECT time, soc FROM flows WHERE run_id = :run AND step = 0"),
                                 {"run": run_id}).one()
            assert first.soc == pytest.approx(frame["soc"].iloc[0], abs=0)
            t0 = pd.Timestamp(first.time)
            t0 = t0.tz_localize("UTC") if t0.tzinfo is None else t0.tz_convert("UTC")  # SQLite: UTC text
            assert t0 == frame.index[0] == pd.Timestamp("2024-12-31T22:00:00Z")
    finally:
        engine.dispose()
    return run_id


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_hometwin_run_db_holds_every_step_and_the_kpis(backend: str, tmp_path: Path, request) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'rec.db'}" if backend == "sqlite" else request.getfixturevalue("pg_url")
    out = tmp_path / "out"
    p = hometwin("run", "-f", str(CAPE_TOWN), "--days", "2", "--out", str(out), "--db", url, "-q")
    assert p.returncode == 0, p.stderr[-3000:]
    assert "recorded as run cape-town-" in p.stdout
    run_id = check_run_in_db(url, out, 2880)
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        # window-end telemetry: the geyser's tank, one row per window (a day each in hometwin run)
        states = conn.execute(sa.text("SELECT step, value FROM element_states WHERE run_id = :run AND "
                                      "element = 'geyser' AND quantity = 'temp_water' ORDER BY step"),
                              {"run": run_id}).all()
        assert [s for s, _ in states] == [1439, 2879]
        assert all(10.0 < v < 90.0 for _, v in states)  # a tank of water, in °C
        kinds = dict(conn.execute(sa.text("SELECT element, role FROM elements WHERE run_id = :r"),
                                  {"r": run_id}).all())
        assert kinds["battery"] == "storage" and kinds["grid"] == "grid" and kinds["oven"] == "load"
    engine.dispose()


def test_writes_are_idempotent_by_run_and_step(tmp_path: Path, pg_url: str) -> None:
    """The same window written twice (a restarted recorder) is there once, unchanged."""
    from hometwin.recording.store import RunWriter, Store

    for url in (f"sqlite:///{tmp_path / 'i.db'}", pg_url):
        store = Store(url)
        store.begin_run({"run_id": "r", "home": "h", "spec": "{}", "start": pd.Timestamp("2025-01-01", tz="UTC"),
                         "step_s": 60, "n_steps": 10, "timezone": "UTC", "seed": 0, "version": "0", "runtime": "run",
                         "currency": "", "status": "running", "started_at": pd.Timestamp.now(tz="UTC"),
                         "steps_recorded": 0}, [("pv", "pv", "source")])
        w = RunWriter(store, "r", "2025-01-01T00:00:00Z", 60)
        flows = {c: np.arange(5, dtype=float) + 0.1 for c in FLOW_COLUMNS}
        w.add_window(0, 4, flows, None, {"pv": np.full(5, 7.25)}, roles={"pv": "source"})
        w.flush()
        flows2 = {c: np.full(5, 99.0) for c in flows}  # the same steps, other values: the first write stays
        w.add_window(2, 4, flows2, np.full(5, 0.5), {"pv": np.full(5, 1.0)}, roles={"pv": "source"})
        w.flush()
        assert store.recorded_steps("r").tolist() == [0, 1, 2, 3, 4, 5, 6]
        with store.engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT step, load_j, soc FROM flows ORDER BY step")).all()
            assert [(s, l) for s, l, _ in rows] == [(0, 0.1), (1, 1.1), (2, 2.1), (3, 3.1), (4, 4.1), (5, 99.0), (6, 99.0)]
            assert rows[0][2] is None and rows[5][2] == 0.5
            assert conn.execute(sa.text("SELECT count(*), sum(energy_j) FROM element_flows")).one() == (7, 5 * 7.25 + 2.0)
        store.close()


def test_windows_read_back_through_the_views_bit_for_bit_with_gaps_filled_once(tmp_path: Path, pg_url: str) -> None:
    """Flows and element energies are stored as one array per window; the views give each step once,
    with the very doubles written (awkward ones included), a NaN SoC as NULL, and a window that
    overlaps two written before (a catch-up across a gap) adds only the missing steps."""
    from hometwin.recording.store import RunWriter, Store

    awkward = np.array([1 / 3, -0.1, 5e-324, 1.7976931348623157e308, 2.0 ** -1074 * 3, 123456.789e-20, -2.5, 0.0,
                        np.pi, np.e, 1e22, 9007199254740993.0, -7.0, 0.1 + 0.2, 1e-5])

    def window(i0: int, n: int, scale: float) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, np.ndarray]]:
        vals = awkward[np.arange(i0, i0 + n) % len(awkward)] * scale
        return ({c: vals + j for j, c in enumerate(FLOW_COLUMNS)}, np.where(np.arange(i0, i0 + n) % 3 == 0, np.nan, 0.25),
                {"pv": vals, "load": -vals})

    for url in (f"sqlite:///{tmp_path / 'v.db'}", pg_url):
        store = Store(url)
        store.begin_run({"run_id": "v", "home": "h", "spec": "{}", "start": pd.Timestamp("2025-03-01 06:00", tz="UTC"),
                         "step_s": 60, "n_steps": 15, "timezone": "UTC", "seed": 0, "version": "0", "runtime": "run",
                         "currency": "", "status": "running", "started_at": pd.Timestamp.now(tz="UTC"),
                         "steps_recorded": 0}, [("pv", "pv", "source"), ("load", "base_load", "load")])
        w = RunWriter(store, "v", "2025-03-01T06:00:00Z", 60)
        w.add_window(0, 4, *window(0, 5, 1.0))
        w.add_window(10, 4, *window(10, 5, 1.0))
        w.flush()
        w.add_window(2, 10, *window(2, 11, 0.5))  # steps 2–12: only 5–9 are new
        w.flush()
        expect = window(0, 15, 1.0)
        late = window(0, 15, 0.5)
        new = (np.arange(15) >= 5) & (np.arange(15) <= 9)
        assert store.recorded_steps("v").tolist() == list(range(15))
        with store.engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT step, time, " + ", ".join(FLOW_COLUMNS) + ", soc FROM flows "
                                        "WHERE run_id = 'v' ORDER BY step")).all()
            assert [r[0] for r in rows] == list(range(15))  # each step once
            t7 = pd.Timestamp(rows[7][1])
            assert (t7.tz_convert("UTC").tz_localize(None) if t7.tzinfo else t7) == pd.Timestamp("2025-03-01 06:07")
            for j, c in enumerate(FLOW_COLUMNS):
                got = np.array([r[2 + j] for r in rows], dtype=float)
                want = np.where(new, late[0][c], expect[0][c])
                assert got.tobytes() == want.tobytes(), c  # the same doubles, to the bit
            soc = [r[-1] for r in rows]
            assert all((s is None) == (i % 3 == 0) for i, s in enumerate(soc)) and {s for s in soc if s is not None} == {0.25}
            for el in ("pv", "load"):
                got = conn.execute(sa.text("SELECT step, energy_j FROM element_flows WHERE run_id = 'v' AND element = :e "
                                           "ORDER BY step"), {"e": el}).all()
                assert [s for s, _ in got] == list(range(15))
                want = np.where(new, late[2][el], expect[2][el])
                assert np.array([v for _, v in got], dtype=float).tobytes() == want.tobytes(), el
        store.close()


# -- errors: one line, no password, exit 5, the result files written -----------------------------------------

def _check_unrecorded(p: subprocess.CompletedProcess, out: Path, *words: str) -> str:
    assert p.returncode == 5, (p.returncode, p.stderr[-2000:])
    lines = [ln for ln in p.stderr.splitlines() if "--db" in ln]
    assert lines, p.stderr[-2000:]
    for w in words:
        assert any(w in ln for ln in lines), (w, lines)
    assert "Traceback" not in p.stderr
    kpis = json.loads((out / "kpis.json").read_text())  # the run's own files are there, whole
    assert kpis["meta"]["n_steps"] == 1440 and "partial" not in kpis["meta"]
    assert (out / "flows.parquet").stat().st_size > 0
    return "\n".join(lines)


@pytest.mark.parametrize("url, words", [
    ("mysql://u:hunter2@localhost/db", ("'mysql' is not supported",)),
    ("not a database url", ("not a database URL",)),
    ("sqlite://", ("give the SQLite file",)),
])
def test_a_bad_db_url_is_one_line_and_the_results_are_written(tmp_path: Path, url: str, words: tuple) -> None:
    out = tmp_path / "out"
    p = hometwin("run", "-f", str(CAPE_TOWN), "--days", "1", "--out", str(out), "--db", url, "-q")
    text = _check_unrecorded(p, out, *words)
    assert "hunter2" not in p.stderr + p.stdout and "hunter2" not in text


def test_an_unreachable_database_is_one_line_without_its_password(tmp_path: Path) -> None:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]  # bound, not listening: the connection is refused
    out = tmp_path / "out"
    try:
        p = hometwin("run", "-f", str(CAPE_TOWN), "--days", "1", "--out", str(out), "-q",
                     "--db", f"postgresql://rec:s3cr3t-pw@127.0.0.1:{port}/twin")
    finally:
        s.close()
    text = _check_unrecorded(p, out, "cannot open the database", f"127.0.0.1:{port}/twin", "***")
    assert "s3cr3t-pw" not in p.stderr + p.stdout, text


@pytest.fixture
def full_disk(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A real, tiny file system (tmpfs of 256 KiB) to fill: its writes fail with ENOSPC."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True, text=True)
    if p.returncode != 0:
        pytest.fail(f"this test mounts a tiny tmpfs to fill (CI runs as root): {p.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_full_disk_is_one_line_and_the_results_are_written(tmp_path: Path, full_disk: Path) -> None:
    out = tmp_path / "out"  # on the ordinary file system: the results fit
    p = hometwin("run", "-f", str(CAPE_TOWN), "--days", "1", "--out", str(out), "-q",
                 "--db", f"sqlite:///{full_disk / 'hometwin.db'}")
    _check_unrecorded(p, out, "database or disk is full")


def test_the_plans_a_strategy_made_are_events_of_the_run(tmp_path: Path) -> None:
    """``hometwin run --db`` of the Trondheim home with its MPC: one ``plan`` event per replan, at the step
    the plan was made for, as the strategy of an engine run alone made them."""
    from hometwin.engine import Engine
    from hometwin.spec import load_home
    from conftest import EXAMPLES

    spec = EXAMPLES / "trondheim-spot.yaml"
    db = tmp_path / "plans.db"
    p = hometwin("run", "-f", str(spec), "--days", "1", "--out", str(tmp_path / "out"), "--db", f"sqlite:///{db}")
    assert p.returncode == 0, p.stderr[-3000:]
    eng = Engine(load_home(spec), until_s=86400)
    eng.run()
    made = eng.inverter.strategy.made
    assert len(made) == 24  # hourly replans of a day
    eng_db = sa.create_engine(f"sqlite:///{db}")
    try:
        with eng_db.connect() as c:
            rows = c.execute(sa.text("SELECT seq, kind, element, actor, detail, CAST(strftime('%s', time) AS INTEGER) "
                                     "FROM events WHERE kind = 'plan' ORDER BY seq")).all()
    finally:
        eng_db.dispose()
    assert [(r.kind, r.element, r.actor) for r in rows] == [("plan", "inverter", "element.inverter")] * 24
    assert [json.loads(r.detail)["args"]["plan"] for r in rows] == [d["plan"] for d in made]
    start = int(eng.ctx.start.timestamp())
    assert [r[5] - start for r in rows] == [d["step"] * eng.ctx.step_s for d in made]
