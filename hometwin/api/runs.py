"""The API's runs: in-process ones in a worker thread (:class:`InProcessRun`), live twins through
the launcher of ``hometwin up`` (:mod:`hometwin.api.live`).  Kept in memory, the oldest finished
ones dropped beyond :data:`MAX_RUNS`."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
import threading
import time
from pathlib import Path
from typing import Any

from hometwin.results import Result

#: Runs kept (finished ones beyond this are dropped, oldest first).
MAX_RUNS = 20
#: Runs computing at once (each takes a core); one more is refused (429) until one ends.
MAX_ACTIVE = 2

ACTIVE = ("starting", "running", "paused")


class ApiError(Exception):
    """A request refused: ``status`` (4xx), one line of ``detail``, and ``errors`` (one per field)
    where there are several."""

    def __init__(self, status: int, detail: str, errors: list[dict[str, Any]] | None = None):
        super().__init__(detail)
        self.status, self.detail, self.errors = status, detail, errors


class RunNotFound(KeyError):
    pass


class TooManyRuns(RuntimeError):
    pass


class Run:
    """What every run has: id, home, mode, status, progress, error, result."""

    mode = "run"

    def __init__(self, run_id: str, home: Any):
        self.id = run_id
        self.home = home
        self.status = "starting"
        self.progress = 0.0
        self.error: str | None = None
        self.result: Result | None = None
        self.created = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        self.t0 = time.monotonic()
        self.wall_s: float | None = None

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    def summary(self) -> dict[str, Any]:
        return {"id": self.id, "home": self.home.metadata.name, "mode": self.mode, "status": self.status,
                "progress": round(self.progress, 4), "created": self.created, "error": self.error,
                "wall_s": self.wall_s}

    def stop(self) -> None:
        raise NotImplementedError

    def current_result(self) -> Result | None:
        """The result so far (a finished run's, or the steps settled of one still going)."""
        return self.result


class InProcessRun(Run):
    """``hometwin run`` in a worker thread: :class:`hometwin.engine.Engine`, progress per window,
    stopped between windows."""

    mode = "run"

    def __init__(self, run_id: str, home: Any, until_s: int | None, window: int | None = None):
        from hometwin.engine import Engine

        super().__init__(run_id, home)
        self.engine = Engine(home, window=window, until_s=until_s)  # SpecError here: nothing started
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._work, name=f"hometwin-run-{run_id}", daemon=True)

    async def start(self) -> None:
        self.status = "running"
        self.thread.start()

    def _work(self) -> None:
        eng = self.engine
        total = eng.ctx.n_steps
        try:
            result = eng.run(lambda i, n: setattr(self, "progress", i / n), stop=self._stop.is_set)
            if eng.i < total:
                result = result.partial(eng.i, total, "stopped")
            self.result = result
            self.status = "stopped" if self._stop.is_set() else "finished"
        except Exception as exc:  # noqa: BLE001 - a failed run says why, the server goes on
            self.error = f"{type(exc).__name__}: {exc}"
            rec = eng.recorder
            if rec is not None and eng.i:
                self.result = rec.result().partial(eng.i, total, self.error)
            self.status = "failed"
        finally:
            self.wall_s = time.monotonic() - self.t0

    def stop(self) -> None:
        if self.active:
            self._stop.set()
            self.thread.join(timeout=120)

    def current_result(self) -> Result | None:
        if self.result is not None or self.engine.recorder is None or not self.engine.i:
            return self.result
        return self.engine.recorder.result().partial(self.engine.i, self.engine.ctx.n_steps, "running")


class FileRun(Run):
    """A run of ``hometwin run --out DIR`` (or ``hometwin up --out``): its result files
    (``flows.parquet``, ``kpis.json``), read when first asked for."""

    mode = "file"

    def __init__(self, run_id: str, folder: Path, home_name: str):
        from types import SimpleNamespace

        super().__init__(run_id, SimpleNamespace(metadata=SimpleNamespace(name=home_name)))
        self.folder = folder
        meta = json.loads((folder / "kpis.json").read_text()).get("meta", {})
        self.status = "finished" if meta.get("complete", True) else "stopped"
        self.progress = 1.0 if self.status == "finished" else (meta.get("partial") or {}).get("steps_settled", 0) / \
            max(1, (meta.get("partial") or {}).get("steps_asked", 1))
        self.created = dt.datetime.fromtimestamp((folder / "kpis.json").stat().st_mtime, dt.timezone.utc) \
            .isoformat(timespec="seconds")
        self.wall_s = meta.get("wall_s")
        self._result: Result | None = None

    @property
    def result(self) -> Result | None:  # type: ignore[override]
        if self._result is None:
            import pandas as pd

            meta = json.loads((self.folder / "kpis.json").read_text())["meta"]
            self._result = Result(frame=pd.read_parquet(self.folder / "flows.parquet"), meta=meta)
        return self._result

    @result.setter
    def result(self, value: Result | None) -> None:
        self._result = value

    def summary(self) -> dict[str, Any]:
        return {**super().summary(), "folder": str(self.folder)}

    def stop(self) -> None:
        pass


def file_runs(folder: Path) -> list[FileRun]:
    """The result folders in ``folder`` (itself, or its subfolders) holding ``kpis.json`` and
    ``flows.parquet``; ids ``f-<folder name>``.  A folder whose ``kpis.json`` cannot be read is
    left out."""
    found = []
    for sub in [folder, *sorted(p for p in Path(folder).iterdir() if p.is_dir())]:
        if (sub / "kpis.json").is_file() and (sub / "flows.parquet").is_file():
            try:
                meta = json.loads((sub / "kpis.json").read_text()).get("meta", {})
                name = re.sub(r"[^A-Za-z0-9_.-]", "-", sub.name)[:60] or "results"
                found.append(FileRun(f"f-{name}", sub, str(meta.get("home", name))))
            except (OSError, ValueError):
                continue
    return found


class Runs:
    """The runs of this server, by id (``r1``, ``r2`` …)."""

    def __init__(self, max_runs: int = MAX_RUNS, max_active: int = MAX_ACTIVE):
        self.max_runs = max_runs
        self.max_active = max_active
        self._runs: dict[str, Run] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def new_id(self) -> str:
        return f"r{next(self._ids)}"

    def check_room(self, mode: str = "run") -> None:
        """Refuse a run of ``mode`` when :attr:`max_active` of that mode are going (in-process runs
        each take a core; a live twin a router and a process per element)."""
        active = sum(r.active and r.mode == mode for r in self._runs.values())
        if active >= self.max_active:
            what = "live twins" if mode == "live" else "in-process runs"
            raise TooManyRuns(f"{active} {what} are going already (at most {self.max_active}); "
                              "wait for one to end or stop one (DELETE /api/runs/{id})")

    def add(self, run: Run) -> Run:
        with self._lock:
            self._runs[run.id] = run
            done = [r for r in self._runs.values() if not r.active and r.mode != "file"]
            for old in done[:max(0, len(self._runs) - self.max_runs)]:
                del self._runs[old.id]
        return run

    def discard(self, run_id: str) -> None:
        with self._lock:
            self._runs.pop(run_id, None)

    def get(self, run_id: str) -> Run:
        try:
            return self._runs[run_id]
        except KeyError:
            raise RunNotFound(f"no run {run_id[:40]!r} (runs: {', '.join(self._runs) or 'none'})") from None

    def all(self) -> list[Run]:
        return list(self._runs.values())

    def stop_all(self) -> None:
        for run in self.all():
            if run.active:
                run.stop()
