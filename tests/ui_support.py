"""Helpers of the UI's end-to-end tests and bench: the built UI, ``hometwin serve`` as a real
process on a free loopback port (its printed address holds the login token), and Debian's Chromium
driven by Playwright."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
UI = ROOT / "ui"
UI_DIST = UI / "dist" / "hometwin-ui" / "browser"
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
WAIT_S = 120.0


def build_ui() -> Path:
    """The built UI; built here (``npm ci`` when node_modules is missing, then ``npm run build``)
    when ``ui/dist`` has none — never skipped."""
    if (UI_DIST / "index.html").is_file():
        return UI_DIST
    npm = shutil.which("npm")
    assert npm, "npm is needed to build the UI (node 20 + npm)"
    if not (UI / "node_modules").is_dir():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=UI, check=True, timeout=1200)
    subprocess.run([npm, "run", "build"], cwd=UI, check=True, timeout=1200)
    assert (UI_DIST / "index.html").is_file(), f"npm run build wrote no {UI_DIST / 'index.html'}"
    return UI_DIST


class Serve:
    """``hometwin serve --port 0`` (loopback, with its login token) in a subprocess."""

    def __init__(self, work_dir: Path, *args: str):
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen([sys.executable, "-m", "hometwin.cli", "serve", "--host", "127.0.0.1",
                                      "--port", "0", "--work-dir", str(work_dir), "--ui", str(UI_DIST), *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                     cwd=work_dir)
        self.lines: list[str] = []
        self.address = ""
        ready = threading.Event()

        def pump() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                self.lines.append(line.rstrip())
                if "hometwin serve: open " in line:
                    self.address = line.split("open ", 1)[1].strip()
                    ready.set()
            ready.set()

        threading.Thread(target=pump, daemon=True).start()
        assert ready.wait(WAIT_S) and self.address, "\n".join(self.lines)
        self.base, _, self.token = self.address.partition("/?token=")
        assert self.token, f"hometwin serve printed no login token: {self.address}"

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def launch(playwright: Any) -> Any:
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def wait_for(pred: Callable[[], Any], what: str, timeout_s: float = WAIT_S, every_s: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(every_s)


def shot(page: Any, name: str, full_page: bool = False) -> Path:
    """A PNG of the page under tests/artifacts/ (kept as a test artifact, out of git)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    assert path.stat().st_size > 1000
    return path
