"""Paired A/B of the twin's speed: a base commit against the head, alternated in one script.

Each side is its own tree: the base a temporary git worktree at ``--base``; the head the current
checkout (``--head`` names another commit, made a worktree the same way, or the folder of one).
Both run on this venv's Python and libraries, each importing its own ``hometwin``,
``hometwin.services`` and ``hometwin.operator`` (bench/ab_site/sitecustomize.py, inherited by
every process a measurement starts; printed per side and checked over every process).  The
measurements are this checkout's bench code, the same for both sides:

- bench_runtime.py's single-step windows over the router (Unix socket): ticks per second between
  the first and the last Flows;
- bench_runtime.py's year at 1-minute steps with automatic windows over services against the same
  year in-process: the ratio of the two times (lower is better);
- bench_core.py's in-process year (wall and CPU time) and its ratio to pvlib's ModelChain.

Every measurement is a fresh process; per round each figure is taken on both sides one after the
other, the side that goes first swapping from round to round (base, head; head, base; …) so that a
drift in the machine's load favours neither.  Reported: the median per side, the median of the
rounds' head / base ratios, the load average over the run.  Appends one section to bench/RESULTS.md.

    python bench/bench_ab.py --base 7a1e38d [--head REV-or-folder] [--rounds 3] [--quick]

The reference base for issue 22 is 7a1e38d: the last commit before its first (dadc25f, which made
hometwin/window.py); 6622ccf is where the second issue-22 session started.  A full run (3 rounds)
takes about 12 minutes on a two-core machine at a load average of 2–4, about 20 at 10–20;
``--quick`` (one short round: 300 ticks, 7 days over services, 14 days in-process) about 2–3
minutes, and is a smoke test of the script only.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from results import append_result  # bench/results.py (the script's folder is on sys.path)

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
SHIM = BENCH / "ab_site"
REFERENCE_BASE = "7a1e38d"  # the last commit before issue 22's first (dadc25f: hometwin/window.py)
SESSION_START = "6622ccf"  # where the second issue-22 session started
MARK = "AB-RESULT "  # a worker's result: this, then one line of JSON

#: (key, what, unit, which way is better) of each figure, in the order they are reported.
FIGURES = [
    ("ticks_per_s", "single-step windows over the router (unix), {ticks} ticks", "ticks/s", "higher"),
    ("year_ratio", "{days:g} days over services / in-process (automatic windows)", "×", "lower"),
    ("year_services_s", "the same days: the services' time (first to last Flows)", "s", "lower"),
    ("year_inprocess_s", "the same days: in-process", "s", "lower"),
    ("core_s", "bench_core: in-process home, {core} (wall)", "s", "lower"),
    ("core_cpu_s", "bench_core: the same, CPU time of the process", "s", "lower"),
    ("core_ratio", "bench_core: home / pvlib ModelChain", "×", "lower"),
]


# -- the worker: one measurement, in the side's tree ---------------------------------------------

def worker(what: str, ticks: int, days: float, core_days: float | None) -> dict:
    if what == "where":
        import hometwin
        import hometwin.operator
        import hometwin.services

        return {"hometwin": hometwin.__file__, "services": list(hometwin.services.__path__),
                "operator": list(hometwin.operator.__path__)}
    from hometwin.engine import Engine
    from hometwin.spec import load_home

    spec = ROOT / "examples" / "homes" / "cape-town.yaml"  # bench_runtime's and bench_core's home, this checkout's
    if what in ("year", "core"):  # the modules a run imports, imported before it is timed (as in the
        Engine(load_home(spec), until_s=86400).run()  # bench scripts, where an earlier run did so)
    if what == "core":
        import bench_core

        until = None if core_days is None else int(core_days * 86400)
        c0 = time.process_time()
        home_s, _ = bench_core.time_home(spec, until)
        cpu = time.process_time() - c0
        mc = bench_core.time_modelchain(spec, until)
        return {"core_s": home_s, "core_cpu_s": cpu, "core_ratio": home_s / mc}
    import bench_runtime
    from hometwin.runtime.wamp import autobahn_errors_only

    autobahn_errors_only(sys.stderr)
    if what == "single":
        tps, la, total = bench_runtime.single_step(ticks, "unix")
        return {"ticks_per_s": tps}
    if what == "year":
        span, t_in, total, windows = bench_runtime.year_over_services(days)
        return {"year_ratio": span / t_in, "year_services_s": span, "year_inprocess_s": t_in}
    raise SystemExit(f"unknown measurement {what!r}")


# -- the sides -----------------------------------------------------------------------------------

def git(*args: str, cwd: Path = ROOT) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@dataclass
class Side:
    name: str  # base | head
    tree: Path
    label: str  # the commit, and whether the tree has changes of its own
    log: Path
    worktree: bool = False  # made here; removed at the end
    runs: list[dict] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        return dict(os.environ, PYTHONPATH=str(SHIM), HOMETWIN_AB_TREE=str(self.tree), HOMETWIN_AB_LOG=str(self.log))

    def run(self, what: str, a: argparse.Namespace) -> dict:
        argv = [sys.executable, str(BENCH / "bench_ab.py"), "--worker", what, "--ticks", str(a.ticks),
                "--days", str(a.days)] + ([] if a.core_days is None else ["--core-days", str(a.core_days)])
        p = subprocess.run(argv, cwd=self.tree, env=self.env(), capture_output=True, text=True, timeout=3600)
        lines = [x for x in p.stdout.splitlines() if x.startswith(MARK)]
        if p.returncode != 0 or not lines:
            raise SystemExit(f"{self.name} ({self.label}): measurement {what!r} failed (exit {p.returncode}):\n"
                             + (p.stdout + p.stderr)[-4000:])
        return json.loads(lines[-1][len(MARK):])


def make_side(name: str, rev_or_tree: str | None, tmp: Path) -> Side:
    log = tmp / f"{name}-imports.log"
    if rev_or_tree is None or Path(rev_or_tree).is_dir():
        tree = ROOT if rev_or_tree is None else Path(rev_or_tree).resolve()
        dirty = git("status", "--porcelain", "--untracked-files=no", cwd=tree)
        label = git("rev-parse", "--short", "HEAD", cwd=tree) + (" + uncommitted changes" if dirty else "")
        return Side(name, tree, f"{label} (the checkout {tree})", log)
    sha = git("rev-parse", "--short", f"{rev_or_tree}^{{commit}}")
    tree = tmp / name
    git("worktree", "add", "--detach", "--quiet", str(tree), sha)
    return Side(name, tree, f"{sha} ({git('log', '-1', '--format=%s', sha)[:70]}…)", log, worktree=True)


def check_imports(side: Side, where: dict) -> int:
    """The side's packages come from its tree, in the worker and in every process it started (those
    that imported ``hometwin``: how many so far)."""
    want = {"hometwin": side.tree / "hometwin" / "__init__.py", "services": side.tree / "services",
            "operator": side.tree / "operator"}
    got = {"hometwin": Path(where["hometwin"]), "services": Path(where["services"][0]),
           "operator": Path(where["operator"][0])}
    if got != want:
        raise SystemExit(f"{side.name} imports from the wrong tree: {got} (want {want})")
    lines = side.log.read_text().splitlines()
    folders = {line.split(" ", 1)[1] for line in lines}
    if folders != {str(side.tree / "hometwin")}:
        raise SystemExit(f"{side.name}: a process imported hometwin from {folders - {str(side.tree / 'hometwin')}}")
    return len(lines)


# -- the A/B -------------------------------------------------------------------------------------

def fmt(x: float, unit: str) -> str:
    return f"{x:.0f} {unit}" if unit == "ticks/s" else f"{x:.2f}{unit}" if unit == "×" else f"{x:.2f} {unit}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", help=f"the commit to compare against (issue 22's reference: {REFERENCE_BASE}, the last "
                                   f"commit before its first; {SESSION_START}: the second session's start)")
    ap.add_argument("--head", help="a commit or the folder of a checkout (default: this checkout as it is)")
    ap.add_argument("--rounds", type=int, default=3, help="paired rounds (each about 4 min at a load of 2–4)")
    ap.add_argument("--quick", action="store_true", help="one short round: a smoke test, not a measurement")
    ap.add_argument("--ticks", type=int, default=2880, help="single-step windows per run (bench_runtime's default)")
    ap.add_argument("--days", type=float, default=365, help="days of the run over services and in-process")
    ap.add_argument("--core-days", type=float, default=None, help="bench_core's span in days (default: the year)")
    ap.add_argument("--no-record", action="store_true", help="print only; nothing appended to bench/RESULTS.md")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        print(MARK + json.dumps(worker(a.worker, a.ticks, a.days, a.core_days)), flush=True)
        return
    if not a.base:
        ap.error("--base is required")
    if a.quick:
        a.rounds, a.ticks, a.days, a.core_days = 1, 300, 7, 14
    tmp = Path(tempfile.mkdtemp(prefix="bench_ab-"))
    sides: list[Side] = []
    try:
        sides = [make_side("base", a.base, tmp), make_side("head", a.head, tmp)]
        for s in sides:
            subprocess.run([sys.executable, "-m", "compileall", "-q", "hometwin", "services", "operator"],
                           cwd=s.tree, env=s.env(), check=True, stdout=subprocess.DEVNULL)
            where = s.run("where", a)
            print(f"{s.name}: {s.label}\n  hometwin.__file__ = {where['hometwin']}\n"
                  f"  hometwin.services.__path__ = {where['services']}\n"
                  f"  hometwin.operator.__path__ = {where['operator']}", flush=True)
            check_imports(s, where)
        loads: list[float] = []
        t_start = time.perf_counter()
        for r in range(a.rounds):
            order = sides if r % 2 == 0 else sides[::-1]
            got: dict[str, dict] = {"base": {}, "head": {}}
            for what in ("single", "year", "core"):
                for s in order:
                    loads.append(os.getloadavg()[0])
                    figures = s.run(what, a)
                    got[s.name].update(figures)
                    print(f"round {r + 1}, {s.name}, {what}: " + ", ".join(f"{k} {v:.3f}" for k, v in figures.items())
                          + f" (load {loads[-1]:.1f})", flush=True)
            for s in sides:
                s.runs.append(got[s.name])
        loads.append(os.getloadavg()[0])
        for s in sides:  # every process of every measurement took the side's tree
            print(f"{s.name}: {check_imports(s, s.run('where', a))} processes imported hometwin, all from "
                  f"{s.tree}", flush=True)
        minutes = (time.perf_counter() - t_start) / 60
        report(a, sides, loads, minutes)
    finally:
        for s in sides:
            if s.worktree:
                git("worktree", "remove", "--force", str(s.tree))
        shutil.rmtree(tmp, ignore_errors=True)


def report(a: argparse.Namespace, sides: list[Side], loads: list[float], minutes: float) -> None:
    base, head = sides
    core = "the year" if a.core_days is None else f"{a.core_days:g} days"
    rows = ["| figure | base (median) | head (median) | head / base (median of the rounds') | better |",
            "|---|---|---|---|---|"]
    per_round = []
    for key, what, unit, better in FIGURES:
        b = [x[key] for x in base.runs]
        h = [x[key] for x in head.runs]
        ratios = [y / x for x, y in zip(b, h)]
        rows.append(f"| {what.format(ticks=a.ticks, days=a.days, core=core)} | {fmt(statistics.median(b), unit)} | "
                    f"{fmt(statistics.median(h), unit)} | **{statistics.median(ratios):.3f}** | {better} |")
        per_round.append(f"{key} " + ", ".join(f"{x:.3f}" for x in ratios))
    command = "python bench/bench_ab.py " + " ".join(sys.argv[1:])
    body = (f"- base: {base.label}; head: {head.label}\n"
            f"- each side imports its own tree (hometwin, hometwin.services, hometwin.operator; checked in every "
            f"process that imported hometwin); {a.rounds} round(s), each figure taken on both sides one after the "
            f"other, the side that goes first swapping each round; {minutes:.1f} min in all\n"
            f"- load average (1-min) while measuring: {min(loads):.1f}–{max(loads):.1f} "
            f"(median {statistics.median(loads):.1f})\n"
            + ("- **--quick: a smoke test of the script, not a measurement**\n" if a.quick else "")
            + "\n" + "\n".join(rows) + "\n\n- head / base per round: " + "; ".join(per_round) + "\n")
    print("\n" + body)
    if not a.no_record:
        append_result(f"Paired A/B, base {base.label.split(' (')[0]} vs head {head.label.split(' (')[0]} (bench_ab.py)",
                      command, body)


if __name__ == "__main__":
    main()
