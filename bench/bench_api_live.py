"""Benchmark: does a live twin's stream keep up at speed 60 through ``hometwin serve``?

Starts ``hometwin serve --port 0`` (a real process), a live Cape Town twin at speed 60 (a
simulated minute per wall second) with single-step windows, reads its Server-Sent Events for
``--seconds`` and measures, from the first flows event on:

* simulated time advanced per wall second, against the speed asked (ratio 1.0 = keeping up);
* flows events per second, and the gaps between them (median, p95, max);
* the lag of each event behind the paced schedule (arrival − when the clock's pace puts it),
  first and last quarter: a lag that grows means the stream falls behind;
* the size of an event and the time to parse it (``json.loads``), against a browser frame (16.7 ms).

The browser side (the UI's frame budget while it draws the events) is measured by the UI's own
Playwright bench; this is what reaches it.  Appends to bench/RESULTS.md.  Usage:

    python bench/bench_api_live.py [--seconds 60] [--speed 60]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--speed", type=float, default=60.0)
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()

    proc = subprocess.Popen([sys.executable, "-m", "hometwin.cli", "serve", "--port", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        address = ""
        assert proc.stdout is not None
        for line in proc.stdout:
            if "hometwin serve: open " in line:
                address = line.split("open ", 1)[1].strip()
                break
        base, _, token = address.partition("/?token=")
        http = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60)
        doc = yaml.safe_load((ROOT / "examples/homes/cape-town.yaml").read_text())
        doc = json.loads(json.dumps(doc, default=lambda v: v.isoformat()))  # as a browser posts it
        t_post = time.perf_counter()
        run = http.post("/api/runs", json={"home": doc, "mode": "live", "speed": args.speed, "window": 1,
                                           "days": 2}).json()
        arrivals: list[tuple[float, dict, int, float]] = []  # (wall, event, bytes, parse s)
        stop = threading.Event()

        def read() -> None:
            with httpx.stream("GET", f"{base}/api/runs/{run['id']}/stream?token={token}",
                              timeout=httpx.Timeout(60, read=None)) as r:
                for line in r.iter_lines():
                    if stop.is_set():
                        return
                    if line.startswith("data: "):
                        t = time.perf_counter()
                        t0 = time.perf_counter()
                        ev = json.loads(line[6:])
                        parse = time.perf_counter() - t0
                        if ev["type"] == "flows":
                            arrivals.append((t, ev, len(line) - 6, parse))

        threading.Thread(target=read, daemon=True).start()
        while not arrivals:
            time.sleep(0.05)
        startup = arrivals[0][0] - t_post
        time.sleep(args.seconds)
        stop.set()
        http.delete(f"/api/runs/{run['id']}")
        flows = list(arrivals)
    finally:
        proc.terminate()
        proc.wait(60)

    w0, e0 = flows[0][0], flows[0][1]
    wall = flows[-1][0] - w0
    sim_s = (flows[-1][1]["time"][-1] - e0["time"][-1]) / 1000
    gaps = [b[0] - a[0] for a, b in zip(flows, flows[1:])]
    lags = [(w - w0) - (ev["time"][-1] - e0["time"][-1]) / 1000 / args.speed for w, ev, _, _ in flows]
    q = max(1, len(lags) // 4)
    sizes = [b for _, _, b, _ in flows]
    parses = [p for _, _, _, p in flows]
    p95 = sorted(gaps)[int(0.95 * (len(gaps) - 1))]
    load = os.getloadavg()[0]
    lines = [
        f"- live Cape Town twin at speed {args.speed:g}, single-step windows, {len(flows)} flows events over {wall:.1f} s "
        f"(first event {startup:.1f} s after POST /api/runs)",
        f"- simulated time per wall second: {sim_s / wall:.1f} s → **{sim_s / wall / args.speed:.2f}** of the speed asked",
        f"- flows events per second: {len(flows) / wall:.2f}; gaps median {statistics.median(gaps) * 1000:.0f} ms, "
        f"p95 {p95 * 1000:.0f} ms, max {max(gaps) * 1000:.0f} ms",
        f"- lag behind the pace (first → last quarter, mean): {statistics.mean(lags[:q]):+.2f} s → "
        f"{statistics.mean(lags[-q:]):+.2f} s",
        f"- event size median {statistics.median(sizes)} bytes; json.loads median {statistics.median(parses) * 1e6:.0f} µs "
        f"(max {max(parses) * 1e3:.2f} ms) against a 16.7 ms frame: **{16.7e-3 / max(parses):.0f}×** headroom at the worst",
    ]
    print("\n".join(lines))
    if not args.no_record:
        head = (f"\n## bench_api_live.py — {dt.date.today().isoformat()}\n\n`python bench/bench_api_live.py "
                f"--seconds {args.seconds:g} --speed {args.speed:g}` on {platform.node()} ({os.cpu_count()} CPUs, "
                f"{platform.machine()}, Python {platform.python_version()}; load average {load:.1f} while measuring — "
                "the cores are shared)\n\n")
        with open(ROOT / "bench" / "RESULTS.md", "a") as f:
            f.write(head + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
