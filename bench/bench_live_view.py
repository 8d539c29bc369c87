"""Benchmark: does the live view keep up with a paced twin, with the browser's frame budget intact?

A real ``hometwin serve`` (loopback, with its token) starts the Cape Town home as a live twin at
``--speed`` simulated seconds per wall second (60: a simulated minute per second, one window per
second); Debian's Chromium (Playwright, headless) shows it on the Live page. In the page:

* frame intervals from a ``requestAnimationFrame`` loop, and long tasks (> 50 ms) from a
  ``PerformanceObserver`` — first for ``--idle-s`` on the same page with no twin attached (the
  baseline of this machine and browser), then for ``--measure-s`` while the twin streams;
* how far the simulated time the page shows trails the clock's (``GET /api/runs/{id}``), and how
  many windows the page drew against how much simulated time passed.

Figures are ratios measured in one run (live against idle on the same page). Appends them to
bench/RESULTS.md with ``--record``. Usage:

    python bench/bench_live_view.py [--speed 60] [--measure-s 30] [--idle-s 10] [--record]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from ui_support import ROOT, Serve, build_ui, launch, wait_for  # noqa: E402

from playwright.sync_api import expect, sync_playwright  # noqa: E402

PROBE = """() => {
  window.__frames = []; window.__long = [];
  let last = performance.now();
  const tick = (t) => { window.__frames.push(t - last); last = t; requestAnimationFrame(tick); };
  requestAnimationFrame(tick);
  try {
    new PerformanceObserver((l) => { for (const e of l.getEntries()) window.__long.push(e.duration); })
      .observe({ type: 'longtask', buffered: false });
  } catch (e) { window.__long = null; }
}"""
RESET = "() => { window.__frames = []; if (window.__long) window.__long = []; }"
TAKE = "() => ({ frames: window.__frames.slice(1), long: window.__long })"


def stats(sample: dict[str, Any], wall_s: float) -> dict[str, Any]:
    f = sorted(sample["frames"])
    n = len(f)
    q = (lambda p: f[min(n - 1, int(p * n))]) if n else (lambda p: float("nan"))
    long = sample["long"] or []
    return {"frames": n, "fps": n / wall_s, "median_ms": statistics.median(f) if f else float("nan"),
            "p95_ms": q(0.95), "p99_ms": q(0.99), "max_ms": f[-1] if f else float("nan"),
            "over_50ms": sum(1 for x in f if x > 50), "long_tasks": len(long), "long_task_ms": sum(long),
            "long_tasks_supported": sample["long"] is not None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--speed", type=float, default=60.0)
    ap.add_argument("--measure-s", type=float, default=30.0)
    ap.add_argument("--idle-s", type=float, default=10.0)
    ap.add_argument("--record", action="store_true", help="append the figures to bench/RESULTS.md")
    args = ap.parse_args()

    build_ui()
    work = Path(tempfile.mkdtemp(prefix="bench-live-view-"))
    serve = Serve(work)
    out: dict[str, Any] = {}
    try:
        http = httpx.Client(base_url=serve.base, headers={"Authorization": f"Bearer {serve.token}"}, timeout=60)
        with sync_playwright() as p:
            browser = launch(p)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(180_000)
            page.goto(serve.address)
            page.locator("#example-select").select_option("cape-town")
            expect(page.locator("#run-button")).to_be_enabled(timeout=180_000)
            page.get_by_role("link", name="Live").click()
            page.evaluate(PROBE)

            page.wait_for_timeout(1000)
            page.evaluate(RESET)
            t = time.monotonic()
            page.wait_for_timeout(args.idle_s * 1000)
            out["idle"] = stats(page.evaluate(TAKE), time.monotonic() - t)

            page.locator("#live-days").fill("2")
            page.locator("#live-speed").fill(f"{args.speed:g}")
            page.locator("#live-start").click()
            expect(page.locator("#live-state")).to_have_text("running", timeout=300_000)
            wait_for(lambda: int(page.locator("#live-windows").inner_text()) >= 3, "the first windows", 180)
            run_id = http.get("/api/runs").json()[-1]["id"]

            def shown() -> tuple[int, int]:
                return int(page.locator("#sim-time").get_attribute("data-epoch-ms")), \
                    int(page.locator("#live-windows").inner_text())

            page.evaluate(RESET)
            sim0, win0 = shown()
            t = time.monotonic()
            lags = []
            load = []
            while time.monotonic() - t < args.measure_s:
                page.wait_for_timeout(2000)
                clock = (http.get(f"/api/runs/{run_id}").json().get("clock") or {})
                sim, _ = shown()
                if clock.get("sim_time"):
                    lags.append((clock["sim_time"] - sim) / 1000)
                load.append(os.getloadavg()[0])
            wall = time.monotonic() - t
            sample = page.evaluate(TAKE)
            sim1, win1 = shown()
            out["live"] = stats(sample, wall)
            out["live"].update({
                "wall_s": wall, "sim_s": (sim1 - sim0) / 1000, "sim_per_wall": (sim1 - sim0) / 1000 / wall,
                "windows_drawn": win1 - win0, "windows_per_s": (win1 - win0) / wall,
                "lag_median_s": statistics.median(lags) if lags else float("nan"),
                "lag_max_s": max(lags) if lags else float("nan"),
                "load_avg": statistics.mean(load) if load else os.getloadavg()[0],
            })
            http.delete(f"/api/runs/{run_id}")
            browser.close()
    finally:
        serve.close()

    idle, live = out["idle"], out["live"]
    out["ratio_p95"] = live["p95_ms"] / idle["p95_ms"]
    out["ratio_fps"] = live["fps"] / idle["fps"]
    print(json.dumps(out, indent=2))
    if args.record:
        record(args, out)


def record(args: Any, out: dict[str, Any]) -> None:
    idle, live = out["idle"], out["live"]
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    lt = "long tasks (> 50 ms): {} ({:.0f} ms in all)".format(live["long_tasks"], live["long_task_ms"]) \
        if live["long_tasks_supported"] else "long tasks: not reported by this browser"
    lines = [
        "", f"## bench_live_view.py — {date}", "",
        f"`python bench/bench_live_view.py --speed {args.speed:g} --measure-s {args.measure_s:g} --idle-s {args.idle_s:g}` "
        f"on {platform.node() or 'vm'} ({os.cpu_count()} CPUs, {platform.machine()}, Python {platform.python_version()}; "
        f"Chromium headless; load average {live['load_avg']:.1f} while measuring — the cores are shared)", "",
        f"- the live Cape Town twin at speed {args.speed:g}: the page showed **{live['sim_per_wall']:.1f} simulated s per wall s** "
        f"over {live['wall_s']:.0f} s ({live['windows_per_s']:.2f} windows drawn per s); it trailed the clock by "
        f"{live['lag_median_s']:.1f} s of simulated time (median; max {live['lag_max_s']:.1f} s)",
        f"- frames while it streamed: {live['fps']:.1f} per s, interval median {live['median_ms']:.1f} ms, p95 "
        f"{live['p95_ms']:.1f} ms, p99 {live['p99_ms']:.1f} ms, max {live['max_ms']:.1f} ms, {live['over_50ms']} over 50 ms; {lt}",
        f"- the same page idle (no twin): {idle['fps']:.1f} frames per s, p95 {idle['p95_ms']:.1f} ms, max {idle['max_ms']:.1f} ms "
        f"→ live / idle: frame rate **{out['ratio_fps']:.2f}×**, p95 interval **{out['ratio_p95']:.2f}×**",
    ]
    with open(ROOT / "bench" / "RESULTS.md", "a") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
