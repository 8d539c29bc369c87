"""Benchmark: what recording a run costs (hometwin.recording; docs/recording.md).

1. ``hometwin up`` of the Cape Town year (525 600 1-minute steps, automatic windows of a day) with
   and without the recorder (``--no-record``), in pairs, alternating which goes first, in this
   one script: the end-to-end wall time of each command (startup to exit, the recorder's last
   rows and KPIs included) and the run's own time (the launcher's "steps as services in … s");
   ratio of the medians (goal: ≤ 1.10).
2. ``hometwin run`` of the same year in-process: without ``--db``, with ``--db sqlite:///…`` and
   with ``--db postgresql://…`` (a server started here in a temp folder, tests/pgserver.py):
   end-to-end wall time and the time spent writing the database ("(… s writing)"; goal for
   SQLite: well under a minute).

Prints Markdown lines for bench/RESULTS.md (command, date, load average).  Usage:

    python bench/bench_recording.py [--pairs 2] [--days 365] [--skip-up] [--skip-run] [--skip-pg]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HOME = ROOT / "examples" / "homes" / "cape-town.yaml"
CLI = [sys.executable, "-m", "hometwin.cli"]
ENV = dict(os.environ, COLUMNS="400")
ENV.setdefault("HOMETWIN_DATA_ROOT", str(ROOT.parent / "shared" / "data"))


def timed(argv: list[str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    p = subprocess.run(argv, capture_output=True, text=True, env=ENV)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return wall, p.stdout + p.stderr


def number(pattern: str, text: str) -> float:
    m = re.search(pattern, text.replace("\n", " "))
    return float(m.group(1)) if m else float("nan")


def bench_up(pairs: int, days: int, work: Path) -> list[str]:
    walls: dict[str, list[float]] = {"without": [], "with": []}
    runs: dict[str, list[float]] = {"without": [], "with": []}
    cpu: list[float] = []  # the recorder's own CPU time (its last log line)
    for i in range(pairs):
        order = ("without", "with") if i % 2 == 0 else ("with", "without")
        for which in order:
            out = work / f"up-{which}-{i}"
            argv = CLI + ["up", "-f", str(HOME), "--days", str(days), "--port", "0", "--rawsocket-port", "0",
                          "--no-live", "--out", str(out)] + (["--no-record"] if which == "without" else [])
            wall, text = timed(argv)
            walls[which].append(wall)
            runs[which].append(number(r"steps as services in ([\d.]+) s", text))
            if which == "with":
                cpu.append(number(r"recorder CPU ([\d.]+) s", text))
            print(f"  up {which} recorder: {wall:.1f} s end to end, run {runs[which][-1]:.1f} s"
                  + (f", recorder CPU {cpu[-1]:.1f} s" if which == "with" else ""), flush=True)
            shutil.rmtree(out, ignore_errors=True)
    w0, w1 = statistics.median(walls["without"]), statistics.median(walls["with"])
    r0, r1 = statistics.median(runs["without"]), statistics.median(runs["with"])
    return [f"- `hometwin up` of the year, {pairs} pairs: end to end median {w1:.1f} s with the recorder vs "
            f"{w0:.1f} s without → **{w1 / w0:.2f}×** (goal ≤ 1.10); the run itself (first tick to the launcher's "
            f"result) {r1:.1f} s vs {r0:.1f} s → {r1 / r0:.2f}×; the recorder's own CPU (median) "
            f"{statistics.median(cpu):.1f} s; each: with "
            + ", ".join(f"{x:.1f}" for x in walls["with"]) + " s; without " + ", ".join(f"{x:.1f}" for x in walls["without"]) + " s"]


def bench_run(days: int, work: Path, pg: bool) -> list[str]:
    lines = []
    base, _ = timed(CLI + ["run", "-f", str(HOME), "--days", str(days), "--out", str(work / "run-plain"), "-q"])
    print(f"  run without --db: {base:.1f} s", flush=True)
    urls = [("SQLite", f"sqlite:///{work / 'run.db'}")]
    server = None
    if pg:
        sys.path.insert(0, str(ROOT / "tests"))
        from pgserver import PgServer

        server = PgServer().start()
        urls.append(("PostgreSQL (COPY, Unix socket, fsync off)", server.new_database()))
    try:
        for name, url in urls:
            wall, text = timed(CLI + ["run", "-f", str(HOME), "--days", str(days), "--out", str(work / "run-db"),
                                      "-q", "--db", url])
            writing = number(r"\(([\d.]+) s writing\)", text)
            size = f"; file {(work / 'run.db').stat().st_size / 1e6:.0f} MB" if name == "SQLite" else ""
            print(f"  run --db {name}: {wall:.1f} s, writing {writing:.1f} s", flush=True)
            lines.append(f"- `hometwin run --db` {name}, {days} days at 1-minute steps ({days * 1440:,} steps, "
                         f"an array per element and window in element_windows): **{writing:.1f} s writing** (all steps, KPIs, status); "
                         f"end to end {wall:.1f} s vs {base:.1f} s without --db ({wall / base:.2f}×){size}")
    finally:
        if server is not None:
            server.stop()
    return lines


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=2)
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--skip-up", action="store_true")
    ap.add_argument("--skip-run", action="store_true")
    ap.add_argument("--skip-pg", action="store_true")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hometwin-bench-rec-"))
    lines = []
    load0 = os.getloadavg()
    try:
        if not a.skip_run:
            lines += bench_run(a.days, work, not a.skip_pg)
        if not a.skip_up:
            lines += bench_up(a.pairs, a.days, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load1 = os.getloadavg()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    print(f"\n### Recording — {dt.date.today().isoformat()} (commit {commit})\n")
    print(f"- command: `python bench/bench_recording.py {' '.join(sys.argv[1:])}`".rstrip() + "`" * 0)
    print(f"- load average (1, 5, 15 min) before {load0[0]:.2f}, {load0[1]:.2f}, {load0[2]:.2f}; after "
          f"{load1[0]:.2f}, {load1[1]:.2f}, {load1[2]:.2f}; {os.cpu_count()} CPUs")
    for line in lines:
        print(line)


if __name__ == "__main__":
    main()
