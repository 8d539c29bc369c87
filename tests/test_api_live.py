"""A live twin over the HTTP API: ``hometwin serve`` (a real process, its real address and token)
starts the Cape Town home through the launcher of ``hometwin up`` — a real Crossbar router, a
process per element — and streams its flows to a client as Server-Sent Events of JSON numbers.

* the flows change from window to window and add up (load = what the loads took), the geyser's
  tank temperature comes with them;
* pause stops simulated time (the clock's step and the stream stand still), resume goes on;
* a property set over the API is validated (a bad value: 422 naming the field) and applied;
* switching the oven off removes its load from the windows after it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from typing import Any, Callable

import httpx
import pytest

from api_support import example
from conftest import WAIT_S

pytestmark = pytest.mark.timeout(600)
OVEN_W = 2400.0  # examples/homes/cape-town.yaml


class Serve:
    """``hometwin serve --port 0`` in a subprocess; the address it printed."""

    def __init__(self, tmp: Any, *args: str):
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen([sys.executable, "-m", "hometwin.cli", "serve", "--port", "0",
                                      "--work-dir", str(tmp), *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
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
        base, _, token = self.address.partition("/?token=")
        self.base, self.token = base, token
        self.http = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60)

    def close(self) -> None:
        self.http.close()
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Stream:
    """The run's SSE stream, read in a thread: every event, parsed."""

    def __init__(self, serve: Serve, run_id: str):
        self.events: list[dict[str, Any]] = []
        self.error: BaseException | None = None
        self.url = f"{serve.base}/api/runs/{run_id}/stream?token={serve.token}"  # as EventSource does
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            with httpx.stream("GET", self.url, timeout=httpx.Timeout(60, read=None)) as r:
                assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
                for line in r.iter_lines():
                    if line.startswith("data: "):
                        self.events.append(json.loads(line[6:]))
        except BaseException as exc:  # noqa: BLE001 - surfaced by wait()
            self.error = exc

    def flows(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == "flows"]

    def wait(self, pred: Callable[[], Any], what: str, timeout_s: float = WAIT_S) -> Any:
        deadline = time.monotonic() + timeout_s
        while True:
            value = pred()
            if value:
                return value
            if self.error is not None:
                raise AssertionError(f"the stream failed: {self.error!r}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout_s} s waiting for {what}; last events: {self.events[-3:]}")
            time.sleep(0.2)


@pytest.fixture
def serve(tmp_path: Any) -> Any:
    s = Serve(tmp_path)
    yield s
    s.close()


def test_live_twin_streams_pauses_and_switches(serve: Serve) -> None:
    http = serve.http
    r = http.post("/api/runs", json={"home": example("cape-town"), "days": 2, "mode": "live", "speed": 600,
                                     "window": 10})
    assert r.status_code == 202, r.text
    run_id = r.json()["id"]
    stream = Stream(serve, run_id)
    try:
        flows = stream.wait(lambda: len(stream.flows()) >= 5 and stream.flows(), "five windows of flows")
        # JSON numbers, a window after another, the home's load = what its loads took
        for a, b in zip(flows, flows[1:]):
            assert b["i0"] >= a["i0"] + a["k"] + 1 or b["i0"] == a["i0"] + a["k"] + 1
        f = flows[-1]
        assert all(isinstance(v, float) for v in f["power_w"]["load"]) and len(f["time"]) == f["k"] + 1
        loads = [k for k in f["power_w"] if k.startswith("el.") and k[3:] in {"oven", "tv", "kettle", "lights", "fridge",
                                                                              "geyser", "house"}]
        for j in range(f["k"] + 1):
            taken = -sum(f["power_w"][k][j] for k in loads)
            assert taken == pytest.approx(f["power_w"]["load"][j], rel=1e-9, abs=1e-6)
        assert len({round(v, 3) for e in flows for v in e["power_w"]["load"]}) > 1, "the flows do not change"
        hot = [e["temps"]["geyser"]["temp_water"] for e in flows if "geyser" in e["temps"]]
        assert hot and all(40 <= t <= 70 for t in hot), hot  # a 60 °C tank with a 5 K band, kept warm

        # pause: simulated time stands still
        r = http.post(f"/api/runs/{run_id}/clock", json={"op": "pause"})
        assert r.status_code == 200 and r.json()["clock"]["state"] == "paused", r.text
        def quiet() -> bool:  # the windows in flight at the pause have settled: 2 s without a change
            seen = (http.get(f"/api/runs/{run_id}").json()["clock"]["sim_time"], len(stream.flows()))
            time.sleep(2)
            return seen == (http.get(f"/api/runs/{run_id}").json()["clock"]["sim_time"], len(stream.flows()))

        stream.wait(quiet, "the windows in flight at the pause to settle")  # (however loaded the machine)
        before = http.get(f"/api/runs/{run_id}").json()
        n_before = len(stream.flows())
        time.sleep(5)
        after = http.get(f"/api/runs/{run_id}").json()
        assert after["status"] == "paused" and after["clock"]["state"] == "paused"
        assert after["clock"]["sim_time"] == before["clock"]["sim_time"] and after["progress"] == before["progress"]
        assert len(stream.flows()) == n_before

        # set, validated: a bad value is refused naming the field; a good one is applied
        r = http.post(f"/api/runs/{run_id}/elements/oven/set", json={"props": {"power_w": -5}})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "props.power_w", r.text
        assert "power_w" in r.json()["detail"]
        r = http.post(f"/api/runs/{run_id}/elements/oven/set", json={"props": {"colour": "red"}})
        assert r.status_code == 422 and "not settable: colour" in r.json()["detail"]
        r = http.post(f"/api/runs/{run_id}/elements/oven/set", json={"props": {"on": True}})
        assert r.status_code == 200 and r.json()["values"] == {"on": True}, r.text
        r = http.post(f"/api/runs/{run_id}/clock", json={"op": "resume"})
        assert r.json()["clock"]["state"] == "running"
        baking = stream.wait(lambda: next((e for e in stream.flows()[n_before:]
                                           if min(e["power_w"].get("el.oven", [0])) < -0.9 * OVEN_W), None),
                             "a window with the oven on")
        assert baking["power_w"]["el.oven"][-1] == pytest.approx(-OVEN_W)

        # switch the oven off: gone from the next windows, its load with it
        r = http.post(f"/api/runs/{run_id}/elements/oven/switch", json={"on": False})
        assert r.status_code == 200 and r.json()["process"]["wanted"] is False, r.text
        with_oven = len(stream.flows())
        off = stream.wait(lambda: next((e for e in stream.flows()[with_oven:] if "oven" not in e["roster"]), None),
                          "a window without the oven")
        assert "el.oven" not in off["power_w"]
        last_on = [e for e in stream.flows() if "oven" in e["roster"]][-1]
        assert last_on["power_w"]["load"][-1] - off["power_w"]["load"][0] > 0.8 * OVEN_W
        r = http.post(f"/api/runs/{run_id}/elements/nope/switch", json={"on": False})
        assert r.status_code == 404 and "nope" in r.json()["detail"]

        # stop: the run ends, its steps are kept
        r = http.delete(f"/api/runs/{run_id}")
        assert r.json()["status"] == "stopped"
        stream.wait(lambda: any(e["type"] == "end" for e in stream.events), "the end event")
        k = http.get(f"/api/runs/{run_id}/kpis").json()
        assert k["complete"] is False and k["kpis"]["load_kwh"] > 0
    except BaseException:
        print("\n".join(serve.lines[-80:]))
        try:
            print("\n".join(http.get(f"/api/runs/{run_id}/log").json().get("lines", [])[-80:]))
        except httpx.HTTPError as exc:
            print(f"(no log: {exc!r}; serve exited with {serve.proc.poll()})")
        raise
