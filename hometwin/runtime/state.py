"""State that survives a restart: an element's snapshot in ``DIR/<name>.json``.

``hometwin service … --state-dir DIR`` (and ``hometwin up``, which gives every element
process a per-run directory) keeps the element's :meth:`~hometwin.element.Element.snapshot`
in a file, as a Kubernetes pod keeps its state on a volume:

* after a commit (``Element.commit``: the element settled; for the inverter, which the
  balancer never settles, once it remembers the window; observed through ``Element.on_commit``)
  the state is copied at once (about a µs; the
  config is dumped only when written — a runtime ``set`` replaces the config object, it
  does not change it in place); it is encoded and written off the settle path, on the
  event loop's next turn.  Writes are spaced: by ``interval_s`` when given, else
  automatically so that writing costs about 2 % of the element process's CPU (50× a
  write's CPU time at the process's CPU rate), at most :data:`AUTO_MAX_S` apart.  A
  settle inside the spacing arms one trailing write of the latest state, so the file lags
  the last settle by at most that spacing — a crash loses at most that much of the
  element's state.  ``interval_s=0`` writes every settle.  (Without a running event
  loop — in-process use — the next settle after the spacing, or
  :meth:`StateKeeper.close`, writes.)  The write is atomic: a temp file in the same
  folder, then :func:`os.replace` — a reader (or a restart) sees the old or the new
  file, never half of one.
* the file says which window it is valid for (``seq``, ``i0``, ``k``, ``step`` = the next
  step to run) and carries a fingerprint of what the element was started as (kind, name,
  the config it was started with, the home's start, step, seed and place);
* at start, a file whose fingerprint matches is restored (``element.restore``) and
  logged; a corrupt file, another format, another element or a mismatching fingerprint
  is refused with one log line, moved aside to ``<name>.json.refused`` and ignored — the
  element starts from its config.  Nothing here ever stops the service: a failed write is
  logged and the next one tried.

File format: JSON, ``format`` = :data:`FORMAT`, the snapshot encoded by the core codec
(:mod:`hometwin.codec`: floats written with ``repr`` so they read back to the same bits, numpy
arrays, scalars, tuples, bytes and maps with other keys tagged with ``"$t"``) — the codec that
the strategies' plans (``Plan.to_state``) are written for too.
"""

from __future__ import annotations

import asyncio
import atexit
import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any


from hometwin.codec import copy_tree as _copy
from hometwin.codec import decode, dumps, encode, loads
from hometwin.element import Element

log = logging.getLogger("hometwin.state")

FORMAT = "hometwin.state/1"
#: Automatic spacing of writes: this many times a write's CPU time at the process's CPU rate (≈ 2 %) …
AUTO_SPACING = 50.0
#: … and at most this long [s] (the most a crash can lose of an element's state).
AUTO_MAX_S = 1.0


class StateRefused(ValueError):
    """A state file that must not be restored (corrupt, another element, another config)."""


# -- the element's file ---------------------------------------------------------------------------

def fingerprint(element: Any) -> str:
    """What the element was started as: kind, name, startup config, the home's time base and place.

    Taken before any restore or runtime ``set``: a restart with the same spec and options
    matches; a changed config, another home or another start/step/seed does not.
    """
    ctx = element.home
    ident = {"kind": element.kind, "name": element.name, "config": element.config.model_dump(mode="json"),
             "home": {"name": ctx.name, "start": ctx.start.isoformat(), "step_s": ctx.step_s, "seed": ctx.seed,
                      "latitude": ctx.latitude, "longitude": ctx.longitude, "timezone": ctx.timezone}}
    text = json.dumps(ident, sort_keys=True, separators=(",", ":"), allow_nan=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def state_path(directory: Path | str, name: str) -> Path:
    return Path(directory) / f"{name}.json"


def envelope(element: Any, fp: str, seq: int, i0: int, k: int, snapshot: Any) -> dict[str, Any]:
    """The file's content: what it is valid for, and the encoded snapshot."""
    return {"format": FORMAT, "element": element.name, "kind": element.kind, "fingerprint": fp,
            "seq": int(seq), "i0": int(i0), "k": int(k), "step": int(i0) + int(k) + 1,
            "written_unix": time.time(), "snapshot": snapshot}


def write_atomic(path: Path, text: str, fsync: bool = False, mode: int = 0o644) -> None:
    """Write ``text`` to ``path`` via a temp file in the same folder and :func:`os.replace`; the
    file has ``mode`` from its first byte (0o600: a secret never readable by others, not even
    for a moment)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    data = memoryview(text.encode())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)  # a temp file left by a killed writer keeps its old mode: set it anyway
        try:
            while data:  # os.write may write less than asked (a full disk, a signal)
                data = data[os.write(fd, data):]
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # never half a file in place of the last whole one, nor litter
        raise


def read(path: Path, element: Any, fp: str) -> dict[str, Any]:
    """The file's envelope with its snapshot decoded; :class:`StateRefused` says why not."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise StateRefused(f"unreadable ({exc})") from None
    try:
        doc = loads(text)
    except ValueError as exc:
        raise StateRefused(f"corrupt: not JSON ({exc})") from None
    except RecursionError:
        raise StateRefused("corrupt: not JSON (nested deeper than Python's recursion limit)") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        got = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise StateRefused(f"not a {FORMAT} file (format {got!r})")
    if doc.get("element") != element.name or doc.get("kind") != element.kind:
        raise StateRefused(f"written by {doc.get('element')!r} ({doc.get('kind')!r}), "
                           f"not {element.name!r} ({element.kind!r})")
    if doc.get("fingerprint") != fp:
        raise StateRefused(f"fingerprint {doc.get('fingerprint')!r} != {fp!r}: written for another config or "
                           "home (start, step, seed)")
    try:
        for key in ("seq", "i0", "k", "step"):
            if type(doc[key]) is not int:
                raise ValueError(f"{key} is not an int")
        doc["snapshot"] = decode(doc["snapshot"])
        if not isinstance(doc["snapshot"], dict) or not isinstance(doc["snapshot"].get("state"), dict):
            raise ValueError("no snapshot state")
    except (KeyError, ValueError, TypeError) as exc:
        raise StateRefused(f"corrupt: {exc}") from None
    except Exception as exc:  # whatever else a damaged encoding makes the decoder raise: refused, not fatal
        raise StateRefused(f"corrupt: {type(exc).__name__}: {exc}") from None
    return doc


class StateKeeper:
    """Restores an element from ``DIR/<name>.json`` and keeps that file current after each settle."""

    def __init__(self, directory: Path | str, element: Any, interval_s: float | None = None,
                 fsync: bool = False):
        self.dir = Path(directory)
        self.element = element
        self.path = state_path(self.dir, element.name)
        self.interval_s = None if interval_s is None else max(0.0, float(interval_s))  # None: automatic
        self.spacing_s = 0.0 if interval_s is None else self.interval_s  # between writes, now
        self.fsync = fsync
        self.fp = fingerprint(element)  # before restore or set: what the element was started as
        self.restored: dict[str, Any] | None = None  # envelope (without snapshot) of a restore
        self.pending: tuple[int, int, int, Any] | None = None  # (seq, i0, k, snapshot) to write
        self.last_write = float("-inf")
        self.writes = 0
        self.commits = 0
        self.commit_s = 0.0  # wall time taking snapshots at settles (the cost figures; µs, ≈ CPU)
        self.write_cpu_s = 0.0  # CPU time encoding and writing
        self.cpu_first_commit = 0.0
        self._cpu_mark, self._wall_mark = time.process_time(), time.monotonic()
        self._plain_snapshot = getattr(type(element), "snapshot", None) is Element.snapshot
        self._timer: asyncio.Handle | None = None
        self._failed_once = False
        self._first_commit = True
        self.dir.mkdir(parents=True, exist_ok=True)

    # -- start ---------------------------------------------------------------------------------------
    def restore(self) -> bool:
        """Restore from the file if it matches; log what happened.  Never raises."""
        if not self.path.exists():
            log.info("%s: no state file %s — starting from the config", self.element.name, self.path)
            return False
        try:
            doc = read(self.path, self.element, self.fp)
        except StateRefused as exc:
            self._refuse(str(exc))
            return False
        el = self.element
        fallback = el.snapshot()
        try:
            el.restore(doc["snapshot"])
        except Exception as exc:  # the snapshot does not fit the model: start from the config
            try:
                el.restore(fallback)
            except Exception:  # pragma: no cover — restoring its own snapshot must work
                log.exception("%s: could not roll back a failed restore", el.name)
            self._refuse(f"restore failed: {type(exc).__name__}: {exc}")
            return False
        self.restored = {k: v for k, v in doc.items() if k != "snapshot"}
        try:
            tele = ", ".join(f"{k} {v!r}" for k, v in list(_floats(el.telemetry()).items())[:4])
        except Exception:
            tele = ""
        log.info("%s: restored state from %s: valid from step %d (window %d settled through step %d)%s",
                 el.name, self.path, doc["step"], doc["seq"], doc["i0"] + doc["k"], f"; {tele}" if tele else "")
        return True

    def _refuse(self, why: str) -> None:
        aside = self.path.with_name(self.path.name + ".refused")
        try:
            os.replace(self.path, aside)
            where = f"; moved to {aside.name}"
        except OSError:
            where = ""
        log.error("%s: state file %s refused (%s)%s — starting from the config", self.element.name, self.path, why,
                  where)

    # -- commits ---------------------------------------------------------------------------------------
    def attach(self) -> "StateKeeper":
        """Keep the file current from now on: :meth:`committed` observes the element's commits
        (``Element.on_commit``: after each ``commit``, i.e. settle; for the inverter after it
        remembers a window's flows; a window settled ahead of its Settle — a speculative packet —
        only once the Settle confirms it)."""
        self.element.on_commit.append(self.committed)
        atexit.register(self.close)
        return self

    def close(self) -> None:
        """Write what is pending and log what keeping the state cost (at exit)."""
        self.flush()
        if self.commits:
            run = time.process_time() - self.cpu_first_commit  # the process's CPU since its first settle
            log.info("%s: state kept in %s: %d settles (snapshot %.1f µs each), %d writes (%.1f µs CPU each); "
                     "%.2f%% of the %.2f s CPU this process used since its first settle", self.element.name,
                     self.path, self.commits, 1e6 * self.commit_s / self.commits, self.writes,
                     1e6 * self.write_cpu_s / max(self.writes, 1),
                     100.0 * (self.commit_s + self.write_cpu_s) / max(run, 1e-9), run)

    def committed(self, seq: int, i0: int, k: int) -> None:
        """After a settle: take the snapshot now (a copy, a few µs); encode and write it off the settle
        path — as soon as the event loop is free when the last write is ``spacing_s`` ago, else when
        the spacing is over (later settles replace the pending snapshot)."""
        t0 = time.perf_counter()
        el = self.element
        if self._first_commit and self.restored is not None:
            step = self.restored["step"]
            if i0 > step:
                log.info("%s: first window after the restart starts at step %d; the restored state is from step %d "
                         "(the windows in between were settled without this element)", el.name, i0, step)
            elif i0 < step:
                log.warning("%s: the run is at step %d but the restored state is from step %d, later — a state "
                            "file of another run? (a state folder belongs to one run)", el.name, i0, step)
            else:
                log.info("%s: continuing exactly at step %d", el.name, i0)
        if self._first_commit:
            self.cpu_first_commit = time.process_time()
        self._first_commit = False
        if self._plain_snapshot:  # Element.snapshot, without dumping an unchanged config at every settle
            self.pending = (seq, i0, k, (el.config, _copy(el.state)))
        else:
            self.pending = (seq, i0, k, el.snapshot())
        self.commits += 1
        self.commit_s += time.perf_counter() - t0
        if self._timer is not None:
            return
        wait = self.last_write + self.spacing_s - time.monotonic()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop (in-process use): write now, or at the next settle / close()
            if wait <= 0:
                self.flush()
            return
        self._timer = loop.call_later(wait, self.flush) if wait > 0 else loop.call_soon(self.flush)

    def flush(self) -> None:
        """Encode and write the pending snapshot (if any)."""
        if self._timer is not None:
            try:
                self._timer.cancel()
            except Exception:  # the loop is gone (at exit)
                pass
            self._timer = None
        pending, self.pending = self.pending, None
        if pending is None:
            return
        t0 = time.process_time()
        seq, i0, k, snap = pending
        try:
            if isinstance(snap, tuple):  # (config, state) of a plain snapshot: as Element.snapshot has it
                el = self.element
                snap = {"kind": el.kind, "name": el.name, "config": snap[0].model_dump(mode="json"), "state": snap[1]}
            text = dumps(envelope(self.element, self.fp, seq, i0, k, encode(snap)))
            write_atomic(self.path, text, self.fsync)
        except Exception as exc:
            self._failed(str(exc))
            return
        finally:
            self.last_write = time.monotonic()
        self.writes += 1
        self.write_cpu_s += time.process_time() - t0
        if self.interval_s is None:  # spacing = 50x this write's CPU at the process's CPU rate: ~2 % of its CPU
            cpu, wall = time.process_time(), time.monotonic()
            rate = (cpu - self._cpu_mark) / max(wall - self._wall_mark, 1e-6)  # CPU s per wall s since the last
            self.spacing_s = min(AUTO_MAX_S, AUTO_SPACING * (cpu - t0) / max(rate, 1e-3))
            self._cpu_mark, self._wall_mark = cpu, wall

    def _failed(self, why: str) -> None:
        if not self._failed_once:
            self._failed_once = True
            log.error("%s: state not persisted to %s (%s); the service goes on (logged once)", self.element.name,
                      self.path, why)


def _floats(d: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in d.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
