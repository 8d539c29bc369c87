"""Live twins for the API: a home run as services by the launcher of ``hometwin up``
(:class:`hometwin.runtime.launcher.Launcher`, with its own router on loopback), in a thread
of its own with its own event loop.

The API holds the run's credentials (a folder only this process reads) and joins the home's
realm twice: as the ``viewer`` (flows, clock status, control events → Server-Sent Events) and
as the ``controller`` (pause, resume, speed, on/off, set).  A browser gets JSON numbers over
SSE, never a router credential."""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import threading
from collections import deque
from pathlib import Path
from typing import Any

import pandas as pd

from hometwin.runtime import messages as m
from hometwin.api import homes
from hometwin.api.runs import ApiError, Run
from hometwin.errors import clip

log = logging.getLogger("hometwin.serve.live")

#: Events a slow browser may fall behind by before the oldest are dropped (it then sees a gap
#: in ``i0``; the next ``flows`` event is whole).
QUEUE_EVENTS = 600
#: Log lines of the services kept per run (GET /api/runs/{id}/log).
LOG_LINES = 400
JOIN_TIMEOUT_S = 120.0
#: Kinds whose temperatures (``temp_*`` telemetry) come with each flows event: indoor, tank.
THERMAL_KINDS = ("geyser", "space_heater", "heat_pump")


class LiveRun(Run):
    """One live twin: the launcher, the API's viewer and controller sessions, and the SSE listeners."""

    mode = "live"

    def __init__(self, run_id: str, home: Any, until_s: int | None, speed: float | str = 60,
                 window: int | None = None, work_dir: Path | None = None):
        super().__init__(run_id, home)
        if work_dir is not None:
            Path(work_dir).mkdir(parents=True, exist_ok=True)
        self.folder = Path(tempfile.mkdtemp(prefix=f"hometwin-serve-{run_id}-", dir=work_dir))
        self.folder.chmod(0o700)
        self.spec_path = self.folder / "home.yaml"
        self.spec_path.write_text(homes.to_yaml(home))
        self.until_s = until_s
        self.speed = "max" if speed == "max" else f"{float(speed):g}"
        self.window = window
        self.launcher: Any = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None
        self.controller: Any = None
        self.viewer: Any = None
        self.clock: dict[str, Any] = {}
        self.last_flows: dict[str, Any] | None = None
        self.logs: deque[str] = deque(maxlen=LOG_LINES)
        self.listeners: set[tuple[asyncio.AbstractEventLoop, asyncio.Queue]] = set()
        self._stopped = False
        self._ready = threading.Event()
        self._comps: list[Any] = []
        self._tasks: list[asyncio.Future] = []
        self._t0_ms = 0
        self._dt_s = 60

    # -- start and stop ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Build the launcher (the spec checked again, the elements set up) and start it in its thread."""
        from hometwin.runtime.launcher import Launcher

        def build() -> Any:
            return Launcher(spec_path=self.spec_path, speed=self.speed, window=self.window, until_s=self.until_s,
                            port=0, rawsocket_port=0, log_sink=self._log, live=False, transport="unix",
                            credentials_dir=self.folder / "credentials", state_dir=self.folder / "state")

        try:
            self.launcher = await asyncio.get_running_loop().run_in_executor(None, build)
        except Exception:
            shutil.rmtree(self.folder, ignore_errors=True)
            raise
        ctx = self.launcher.ctx
        self._t0_ms = int(ctx.start.timestamp() * 1000)
        self._dt_s = ctx.step_s
        self.status = "starting"
        self.thread = threading.Thread(target=self._main, name=f"hometwin-live-{self.id}", daemon=True)
        self.thread.start()

    def _log(self, name: str, _color: str, line: str) -> None:
        self.logs.append(f"[{name}] {line}")

    def _main(self) -> None:
        import txaio

        txaio.use_asyncio()

        async def main() -> Any:
            self.loop = asyncio.get_running_loop()
            task = asyncio.ensure_future(self.launcher.run())
            try:
                await self._connect(task)
            except Exception as exc:  # noqa: BLE001 - no sessions: the run cannot be watched; end it
                self.error = f"could not join the twin's realm: {exc}"
                self.launcher.stop(self.error)
            result = await task
            for t in self._tasks:
                t.cancel()
            for comp in self._comps:
                from hometwin.runtime.wamp import stop_component

                await stop_component(comp)
            return result

        try:
            result = asyncio.run(main())
            self.result = result
            why = self.launcher.ended_early
            if self._stopped:
                self.status = "stopped"
            elif self.launcher.failed or why:
                self.status = "failed"
                self.error = self.error or self.launcher.failed or why
            else:
                self.status = "finished"
        except Exception as exc:  # noqa: BLE001 - the server goes on; the run says why it failed
            self.status = "failed"
            self.error = clip(f"{type(exc).__name__}: {exc}", 500)
        finally:
            self._ready.set()
            self.progress = self.launcher.i / self.launcher.ctx.n_steps
            self._broadcast({"type": "end", "status": self.status, "error": self.error})
            shutil.rmtree(self.folder, ignore_errors=True)

    async def _connect(self, task: asyncio.Future) -> None:
        """Once the launcher has joined (its router is up), join as viewer and as controller."""
        from hometwin.runtime.wamp import Credentials, component

        launcher = self.launcher
        deadline = asyncio.get_running_loop().time() + JOIN_TIMEOUT_S
        while not (getattr(launcher, "_joined", None) is not None and launcher._joined.is_set()):
            if task.done() or asyncio.get_running_loop().time() > deadline:
                raise TimeoutError("the twin did not come up within "
                                   f"{JOIN_TIMEOUT_S:.0f} s" if not task.done() else "the twin ended")
            await asyncio.sleep(0.1)
        url = launcher.router.unix_url
        joined: dict[str, asyncio.Future] = {}
        for role, on_join in (("viewer", self._on_viewer), ("controller", self._on_controller)):
            comp = component(url, launcher.realm, credentials=Credentials.from_folder(launcher.credentials_dir, role))
            fut = asyncio.get_running_loop().create_future()
            joined[role] = fut

            async def _joined(session: Any, details: Any, on_join: Any = on_join, fut: Any = fut) -> None:
                await on_join(session)
                if not fut.done():
                    fut.set_result(session)

            comp.on("join", _joined)
            comp.start(asyncio.get_running_loop())
            self._comps.append(comp)
        await asyncio.wait_for(asyncio.gather(*joined.values()), JOIN_TIMEOUT_S)
        self.status = "running"
        self._ready.set()

    async def _on_controller(self, session: Any) -> None:
        self.controller = session

    async def _on_viewer(self, session: Any) -> None:
        from hometwin.runtime.wamp import subscribe

        self.viewer = session
        rejections = m.Rejections()

        thermal = [el.name for el in self.home.spec.elements if el.enabled and el.kind in THERMAL_KINDS]
        windows: asyncio.Queue = asyncio.Queue()

        async def with_temps() -> None:  # in order: each window with its elements' temperatures
            while True:
                event = await windows.get()
                if thermal:
                    event["temps"] = await self._temps(session, [n for n in thermal if n in event["roster"]])
                self._broadcast(event)

        self._tasks.append(asyncio.ensure_future(with_temps()))

        def on_flows(payload: Any = None, *_: Any, **__: Any) -> None:
            f = m.decode(m.Flows, payload, m.FLOWS, rejections)
            if f is not None:
                windows.put_nowait(self.flows_event(f))

        def on_status(payload: Any = None, *_: Any, **__: Any) -> None:
            st = m.decode(m.ClockStatus, payload, m.CLOCK_STATUS_EVENT, rejections)
            if st is not None:
                self._on_clock(st.model_dump(mode="json"))

        def on_event(payload: Any) -> None:
            e = m.decode(m.ControlEvent, payload, m.EVENT, rejections)
            if e is not None:
                self._broadcast({"type": "event", **e.model_dump(mode="json")})

        await session.subscribe(on_flows, m.FLOWS)
        await session.subscribe(on_status, m.CLOCK_STATUS_EVENT)
        await subscribe(session, m.EVENT, on_event, rejections)
        try:
            self._on_clock(await session.call(m.clock_uri("status")))
        except Exception:  # noqa: BLE001 - the clock may not be up yet: its status event follows
            pass

    async def _temps(self, session: Any, names: list[str]) -> dict[str, dict[str, float]]:
        """The ``temp_*`` telemetry of ``names`` (their ``get``, which a viewer may call), at most 5 s."""
        async def one(name: str) -> tuple[str, dict[str, float]]:
            got = await asyncio.wait_for(session.call(m.element_uri(name, "get")), 5)
            tele = (got or {}).get("telemetry") or {}
            return name, {k: float(v) for k, v in tele.items() if k.startswith("temp_") and isinstance(v, (int, float))
                          and v == v}

        out = {}
        for got in await asyncio.gather(*(one(n) for n in names), return_exceptions=True):
            if isinstance(got, tuple) and got[1]:
                out[got[0]] = got[1]
        return out

    def stop(self) -> None:
        """End the run (its steps settled so far are kept) and wait for it (at most 120 s)."""
        self._stopped = True
        if self.loop is not None and self.thread is not None and self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.launcher.stop, "stopped over the API")
            self.thread.join(timeout=120)

    @property
    def active(self) -> bool:
        return self.status in ("starting", "running", "paused")

    def summary(self) -> dict[str, Any]:
        if self.launcher is not None and self.active:
            self.progress = self.launcher.i / self.launcher.ctx.n_steps
        out = super().summary()
        out["speed"] = self.clock.get("speed", self.speed)
        out["clock"] = self.clock_event() if self.clock else None
        return out

    def current_result(self) -> Any:
        if self.result is not None or self.launcher is None or not self.launcher.i:
            return self.result
        return self.launcher.result()

    # -- what a browser gets --------------------------------------------------------------------------
    def flows_event(self, f: m.Flows) -> dict[str, Any]:
        """A ``Flows`` window as plain JSON numbers: mean power per step [W], SoC, epoch-ms times."""
        dt = f.dt_s
        fl = f.flows

        def w(arr: Any) -> list[float]:
            return [float(v) / dt for v in arr]

        power = {"pv": w(fl["pv_ac_j"]), "load": w(fl["load_j"]),
                 "battery": [(float(d) - float(c)) / dt for d, c in zip(fl["battery_discharge_j"], fl["battery_charge_j"])],
                 "grid": [(float(i) - float(e)) / dt for i, e in zip(fl["grid_import_j"], fl["grid_export_j"])]}
        for name, arr in f.served.items():
            power[f"el.{name}"] = w(arr)
        times = [self._t0_ms + (f.i0 + j) * dt * 1000 for j in range(f.k + 1)]
        soc = [None if v != v else float(v) for v in f.soc] if f.soc is not None else None
        event = {"type": "flows", "seq": f.seq, "i0": f.i0, "k": f.k, "time": times, "power_w": power, "soc": soc,
                 "roster": sorted(f.roles), "temps": {}}
        self.last_flows = event
        return event

    def _on_clock(self, status: dict[str, Any]) -> None:
        self.clock = status
        if self.active and self.status != "starting":
            self.status = "paused" if status.get("paused") else "running"
        self._broadcast(self.clock_event())

    def clock_event(self) -> dict[str, Any]:
        st = self.clock
        sim = st.get("sim_time")
        return {"type": "clock", "state": "paused" if st.get("paused") else ("done" if st.get("done") else "running"),
                "speed": st.get("speed"), "i": st.get("i"), "n_steps": st.get("n_steps"),
                "sim_time": int(pd.Timestamp(sim).timestamp() * 1000) if sim else None, "lag_s": st.get("lag_s")}

    def _broadcast(self, event: dict[str, Any]) -> None:
        for loop, queue in list(self.listeners):
            try:
                loop.call_soon_threadsafe(_offer, queue, event)
            except RuntimeError:  # that listener's loop is closed
                self.listeners.discard((loop, queue))

    def listen(self) -> asyncio.Queue:
        """A queue of this run's events for one SSE client (first: where the clock and flows stand)."""
        queue: asyncio.Queue = asyncio.Queue(maxsize=QUEUE_EVENTS)
        if self.clock:
            queue.put_nowait(self.clock_event())
        if self.last_flows is not None:
            queue.put_nowait(self.last_flows)
        if not self.active:
            queue.put_nowait({"type": "end", "status": self.status, "error": self.error})
        self.listeners.add((asyncio.get_running_loop(), queue))
        return queue

    def unlisten(self, queue: asyncio.Queue) -> None:
        self.listeners = {(lp, q) for lp, q in self.listeners if q is not queue}

    # -- control ------------------------------------------------------------------------------------
    async def call(self, uri: str, *args: Any, **kwargs: Any) -> Any:
        """An RPC as the controller, from the API's event loop (the session lives in the run's loop)."""
        from autobahn.wamp.exception import ApplicationError

        if not self.active:
            raise ApiError(409, f"run {self.id} is {self.status}: it takes no control actions")
        if not self._ready.is_set() or self.controller is None:
            await asyncio.get_running_loop().run_in_executor(None, self._ready.wait, JOIN_TIMEOUT_S)
        if self.controller is None or self.loop is None:
            raise ApiError(409, f"run {self.id} is {self.status}: not connected to its twin yet")
        session = self.controller

        async def in_its_loop() -> Any:  # autobahn's call() sends at once: from the session's own loop
            return await asyncio.wait_for(session.call(uri, *args, **kwargs), 30)

        fut = asyncio.run_coroutine_threadsafe(in_its_loop(), self.loop)
        try:
            return await asyncio.wrap_future(fut)
        except ApplicationError as exc:
            detail = clip(" ".join(str(exc.args[0] if exc.args else exc.error).split()), 400)
            if exc.error == "wamp.error.no_such_procedure":
                raise ApiError(409, f"nothing serves {uri} in run {self.id} (is that element running?)") from None
            fields = (exc.kwargs or {}).get("field") or []
            allowed = (exc.kwargs or {}).get("allowed")
            if allowed:
                detail += f" (settable: {', '.join(map(str, allowed))})"
            raise ApiError(422, detail, _prop_errors(detail, fields)) from None
        except asyncio.TimeoutError:
            raise ApiError(504, f"run {self.id}: no answer to {uri} within 30 s") from None

    async def clock_op(self, op: str, speed: Any = None) -> dict[str, Any]:
        if op == "set_speed":
            if speed is None:
                raise ApiError(422, "speed: required for set_speed (simulated seconds per wall second, or max)")
            status = await self.call(m.clock_uri("set_speed"), str(speed))
        else:
            status = await self.call(m.clock_uri(op))
        if isinstance(status, dict):
            self._on_clock(status)
        return {"ok": True, "clock": self.clock_event()}

    async def switch(self, name: str, on: bool) -> dict[str, Any]:
        if name not in {el.name for el in self.home.spec.elements}:
            raise ApiError(404, f"no element {clip(name, 60)!r} in home {self.home.metadata.name} "
                                 f"(elements: {', '.join(el.name for el in self.home.spec.elements)})")
        procs = await self.call(m.launcher_uri("on" if on else "off"), name)
        return {"ok": True, "element": name, "on": on, "process": (procs or {}).get(name)}

    async def set(self, name: str, props: dict[str, Any]) -> dict[str, Any]:
        if name not in {el.name for el in self.home.spec.elements}:
            raise ApiError(404, f"no element {clip(name, 60)!r} in home {self.home.metadata.name}")
        if not props:
            raise ApiError(422, "props: give at least one property to set")
        answer = await self.call(m.element_uri(name, "set"), **props)
        return {"ok": True, "element": name, **(answer or {})}


def _offer(queue: asyncio.Queue, event: dict[str, Any]) -> None:
    if queue.full():  # a slow client: the oldest event goes
        try:
            queue.get_nowait()
        except asyncio.QueueEmpty:
            pass
    queue.put_nowait(event)


def _prop_errors(detail: str, fields: list[str]) -> list[dict[str, Any]]:
    """A refused ``set`` as per-field errors (``props.<name>``)."""
    items = homes.error_items([detail])
    out = []
    for name in fields or [""]:
        item = next((i for i in items if i["path"] and i["path"][0] == name), None)
        message = item["message"] if item is not None else detail
        out.append({"path": ["props", name] if name else ["props"], "field": f"props.{name}" if name else "props",
                    "message": message})
    return out
