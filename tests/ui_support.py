"""Helpers of the UI's end-to-end tests and bench: the built UI, ``hometwin serve`` as a real
process on a free loopback port (its printed address holds the login token; the API tests'
``Serve``), and Debian's Chromium driven by Playwright."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

from test_api_live import Serve  # noqa: F401 - hometwin serve --port 0 in a subprocess, its address and token
from conftest import WAIT_S

ROOT = Path(__file__).resolve().parents[1]
UI = ROOT / "ui"
UI_DIST = UI / "dist" / "hometwin-ui" / "browser"
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


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
