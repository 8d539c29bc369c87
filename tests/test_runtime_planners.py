"""Inverter strategies under ``hometwin up``: the prepare stage, remote element proxies, planner RPCs.

    clock ─Tick─▶ sun ─▶ weather, grid ─Signals─▶ inverter: prepare(w, signals) ──RPC──▶ battery.flexibility
                                                     │  (executor thread; proxies)  ──RPC──▶ heat-pump.flexibility/command(HeatPlan)
                                                     │                              ──RPC──▶ water-heater.command(TankPlan), washer.command(DeferTo) …
                                                     └─Signals{plan_ready}─▶ plannable loads ─EnergyRequest─▶ inverter ─▶ …

Two homes run over a real Crossbar router and in-process and must give the same flows
(≤ 1e-9 J; they are bit-identical): cape-town-lp (the battery LP that grid-charges before
announced outages, its geyser's thermostat load forecast, the smart dishwasher deferred) and trondheim-spot
(joint MPC of battery, heat pump with integral action, the water heater's legionella plan,
smart washer and dishwasher).  Each test also shows the plans acted — against the same home
without its strategy — so it cannot pass with the planners silently off.

The trondheim run pauses on day 2 to compare the remote elements, seen through
:class:`~hometwin.runtime.proxies.RemoteElement` from this process, with the in-process
models at the same step (their flexibility, the heat pump's COP and capacity curve evaluated
from it, appliance starts, snapshots with the plans they were sent), and to send malformed
``plan_ready`` signals and bad commands: each is answered with an error naming the field,
counted in /metrics, and the run's results do not change.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import yaml
from autobahn.wamp.exception import ApplicationError

from hometwin import flex as fx
from hometwin.runtime import messages as m
from hometwin.element import Role
from hometwin.engine import Engine
from hometwin.runtime import prepare as pp
from hometwin.runtime import proxies as px
from hometwin.runtime.metrics import ServiceMetrics
from hometwin.runtime.wamp import component, plain, stop_component
from hometwin.studies.compare import with_strategy
from hometwin.spec import load_home
from runtime_support import REALMS, Up, free_ports, max_diff, wait_until  # noqa: F401
from conftest import EXAMPLES, WAIT_S

pytestmark = pytest.mark.timeout(400)
DAYS = 2


def planner_home(src: Path, tmp: Path, cut: bool = True) -> Path:
    """``src`` as a home the session router serves (realm ``hometwin.cape-town``), data paths absolute;
    DAYS long when ``cut`` (else the spec's own duration, and the run is cut with ``--until``)."""
    doc = yaml.safe_load(src.read_text())
    doc["metadata"]["name"] = REALMS[0].split(".", 1)[1]
    if cut:
        doc["spec"]["clock"]["duration"] = f"{DAYS * 86400}s"
    for el in doc["spec"]["elements"]:
        tariff = (el.get("config") or {}).get("tariff") or {}
        if "file" in tariff:
            tariff["file"] = str((src.parent / tariff["file"]).resolve())
    out = tmp / src.name
    out.write_text(yaml.safe_dump(doc, sort_keys=False))
    return out



def grid_charged_steps(frame: Any) -> int:
    """Steps where the battery charged while the home imported: charging from the grid."""
    return int(((frame["grid_import_j"] > 1.0) & (frame["battery_charge_j"] > 1.0)).sum())


def same_tree(a: Any, b: Any, path: str = "") -> None:
    if isinstance(a, dict):
        assert isinstance(b, dict) and sorted(a) == sorted(b), (path, sorted(a), sorted(b) if isinstance(b, dict) else b)
        for k in a:
            same_tree(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple, np.ndarray)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            same_tree(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and np.isnan(a):
        assert isinstance(b, float) and np.isnan(b), path
    else:
        assert a == b and type(a) is type(b), (path, a, b)


class Wamp:
    """A WAMP session of this test process on its own event loop thread (RemoteElement's host)."""

    def __init__(self, url: str, realm: str, home: Any, credentials: Any = None):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        joined: concurrent.futures.Future = concurrent.futures.Future()
        self.comp = component(url, realm, credentials=credentials)

        @self.comp.on_join
        async def _joined(session: Any, details: Any) -> None:
            joined.set_result(session)

        self.loop.call_soon_threadsafe(lambda: self.comp.start(self.loop))
        self.session = joined.result(WAIT_S)
        self.timeout_s = 10.0
        self.metrics = ServiceMetrics("test")
        self.rejections = m.Rejections()
        self.prepare_epoch = 0
        self.element = SimpleNamespace(home=home)

    def call(self, uri: str, *args: Any, **kwargs: Any) -> Any:
        async def rpc() -> Any:
            return await self.session.call(uri, *args, **kwargs)

        return asyncio.run_coroutine_threadsafe(rpc(), self.loop).result(WAIT_S)

    def publish(self, uri: str, payload: Any) -> None:
        self.loop.call_soon_threadsafe(self.session.publish, uri, payload)

    def proxy(self, name: str) -> px.RemoteElement:
        d = m.Describe.model_validate(self.call(m.element_uri(name, "describe")))
        return px.RemoteElement(self, d)

    def close(self) -> None:
        try:  # leave without the reconnect autobahn starts after a plain leave()
            asyncio.run_coroutine_threadsafe(stop_component(self.comp), self.loop).result(5)
        except Exception:
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture(scope="module")
def homes(tmp_path_factory: Any) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("planner-homes")
    # cape-town-lp keeps its year and is cut by `hometwin up --until`: every service must get the run's
    # length (the planner's horizon stops at the end of the run), not only the clock
    return {"cape-town-lp": planner_home(EXAMPLES / "cape-town-lp.yaml", tmp, cut=False),
            "trondheim-spot": planner_home(EXAMPLES / "trondheim-spot.yaml", tmp)}


# -- over the router ------------------------------------------------------------------------------

UNTIL = DAYS * 86400  # [s] the cape-town-lp run, cut from its year
SET_AT, OFF_AT = 2400, 2700  # day 2, 16:00 and 21:00 local: replanning boundaries (hourly)


def _cape_town_actions(eng: Engine) -> Engine:
    eng.at(SET_AT, lambda e: e.set("dishwasher", max_delay_h=2.0))  # the strategy must see the new limit
    eng.at(OFF_AT, lambda e: e.remove("geyser"))  # a plannable element leaves: the roster follows
    return eng


def test_cape_town_lp_up_equals_run(router, homes):  # type: ignore[no-untyped-def]
    """The battery LP (grid-charging before load-shedding) and the deferred dishwasher, 2 days, automatic windows;
    on day 2 the dishwasher's max_delay_h is set over RPC and the geyser (waiting for plans) is switched off."""
    spec = homes["cape-town-lp"]
    up = Up(router, spec=spec, pause_at=SET_AT, until_s=UNTIL).start()
    with up.driving():
        up.wait_paused_at(SET_AT, timeout_s=180)
        assert up.call("hometwin.element.dishwasher.set", max_delay_h=2.0)["values"] == {"max_delay_h": 2.0}
        up.call("hometwin.clock.run_until", OFF_AT)
        up.wait_paused_at(OFF_AT)
        up.call("hometwin.launcher.off", "geyser")
        wait_until(lambda: "geyser" not in up.call("hometwin.roster.get")["elements"], WAIT_S, "the geyser to leave")
        up.call("hometwin.clock.resume")
    eng = _cape_town_actions(Engine(load_home(spec), until_s=UNTIL))
    ref = eng.run()
    res = up.join(240)
    assert len(res.frame) == DAYS * 1440
    assert max_diff(res.frame, ref.frame) <= 1e-9
    assert res.kpis()["max_ledger_residual_j"] <= 1e-6
    assert not [line for line in up.logs if "rejected message" in line or "prepare failed" in line]
    assert not res.frame["el.geyser_j"].to_numpy()[OFF_AT:].any() and res.frame["el.geyser_j"].to_numpy()[:OFF_AT].any()
    # the plans acted: the battery was charged from the grid before outages, the dishwasher moved …
    assert grid_charged_steps(res.frame) >= 10
    moved = {k: v for k, v in eng.inverter.strategy.appliance_scheduler().decisions.items() if k[1] != v}
    assert any(name == "dishwasher" for name, _ in moved), moved
    bare = _cape_town_actions(Engine(with_strategy(load_home(spec), None), until_s=UNTIL)).run().frame
    assert grid_charged_steps(bare) == 0
    h = load_home(spec)
    inv = next(e for e in h.spec.elements if e.kind == "inverter")
    inv.config.strategy = inv.config.strategy.model_copy(update={"defer_appliances": False})
    no_defer = _cape_town_actions(Engine(h, until_s=UNTIL)).run().frame
    assert not np.array_equal(res.frame["el.dishwasher_j"], no_defer["el.dishwasher_j"])
    assert res.frame["el.dishwasher_j"].sum() == pytest.approx(no_defer["el.dishwasher_j"].sum(), rel=1e-9)
    # … within the limit set at SET_AT (the proxies refreshed the dishwasher's config), which changed the plan
    later = {k: v for k, v in moved.items() if k[0] == "dishwasher" and v >= int(eng.ctx.epoch_s(SET_AT, 1)[0])}
    assert later and all(v - k[1] <= 2 * 3600 for k, v in later.items()), later
    unset = Engine(load_home(spec), until_s=UNTIL)
    unset.at(OFF_AT, lambda e: e.remove("geyser"))
    assert not np.array_equal(unset.run().frame["el.dishwasher_j"], res.frame["el.dishwasher_j"])


@pytest.fixture(scope="module")
def trondheim(router, homes):  # type: ignore[no-untyped-def]
    """trondheim-spot over the router, paused on day 2 for comparisons and bad input, then to the end."""
    spec = homes["trondheim-spot"]
    pause = 288 + 8 * 12  # day 2, 08:00 UTC: a replanning boundary (hourly, 5-min steps)
    up = Up(router, spec=spec, pause_at=pause, metrics_port=free_ports(32)).start()
    eng = Engine(load_home(spec))
    from hometwin.results import Recorder

    rec = Recorder(eng)
    eng.on_window.append(rec.add)
    while eng.i < pause:
        eng.step_window()
    info: dict[str, Any] = {"engine": eng, "pause": pause, "spec": spec}
    with up.driving():
        up.wait_paused_at(pause, timeout_s=240)
        wamp = Wamp(router.url, up.realm, eng.ctx, credentials=router.credentials("element.inverter"))
        try:
            info["remote"] = compare_remote(wamp, eng)
            info["bad_rpcs"] = bad_rpcs(wamp)
            info["sent_plan_ready"] = bad_plan_ready(wamp, pause // 12 - 1)
        finally:
            wamp.close()
        info.update(up.scrape("water-heater", "heat-pump", "washer", "inverter"))
        up.call("hometwin.clock.resume")
    info["result"] = up.join(300)
    while eng.i < eng.ctx.n_steps:
        eng.step_window()
    info["ref"] = rec.result()
    info["logs"] = up.logs
    return info


def same_flex(want: Any, got: Any, path: str) -> None:
    """Two contract values are the same, field for field (arrays of the same dtype, bit for bit)."""
    assert type(got) is type(want), (path, want, got)
    same_tree(px.encode(fx.to_wire(want)), px.encode(fx.to_wire(got)), path)
    for key in ("a_c", "b_c"):
        if hasattr(want, key):
            assert isinstance(getattr(got, key), np.ndarray) and getattr(got, key).dtype == getattr(want, key).dtype


def compare_remote(w: Wamp, eng: Engine) -> dict[str, Any]:
    """Every element through a RemoteElement against the in-process model at the same step."""
    out: dict[str, Any] = {}
    temps = np.linspace(-25.0, 15.0, 17)
    for name, el in eng.elements.items():
        if el.role == Role.converter:
            continue
        p = w.proxy(name)
        out[name] = p
        assert (p.name, p.kind, p.role, p.settle_on_shortfall) == (el.name, el.kind, el.role, el.settle_on_shortfall)
        assert p.describe() == el.describe()
        want, got = el.flexibility(), p.flexibility()
        if want is None:
            assert got is None, name
        else:
            same_flex(want, got, f"{name}.flexibility")
        # the plans the strategy sent are the same in both: the whole state, plan included
        same_tree(plain(el.snapshot()), w.call(m.element_uri(name, "snapshot")), f"{name}.snapshot")
    hp, wh, washer = eng.elements["heat-pump"], eng.elements["water-heater"], eng.elements["washer"]
    # the heat pump's curves and gains, evaluated from the data that crossed, are the model's
    remote_hp = out["heat-pump"].flexibility()
    assert np.array_equal(remote_hp.heat_max_w(temps), hp.max_heat_w(temps))
    assert np.array_equal(remote_hp.cop(temps), hp.params()["cop"](temps))
    src, want_src = remote_hp.source(temps), hp.source(temps, np.full(len(temps), hp.config.comfort_c))
    assert np.array_equal(src.cop, want_src.cop) and np.array_equal(src.heat_max_w, want_src.heat_max_w)
    assert src.backup_w == want_src.backup_w
    sig = {"ghi": np.full(4, 300.0), "dni": np.full(4, 200.0), "dhi": np.full(4, 100.0),
           "apparent_zenith": np.full(4, 70.0), "azimuth": np.full(4, 180.0)}
    assert all(np.array_equal(a, b) for a, b in zip(remote_hp.gains(sig, 4), hp.building.gains(sig, 4)))
    ep = eng.ctx.epoch_s(eng.i, 288)
    t0, t1 = float(ep[0]) - 86400, float(ep[-1])
    starts = out["washer"].command(fx.UpcomingStarts(t0, t1))
    assert starts and starts == washer.command(fx.UpcomingStarts(t0, t1))
    assert all(isinstance(c, fx.Start) for c in starts)
    assert hp.state["plan"] is not None and "heat_w" in hp.state["plan"]  # the MPC's heat plan reached it
    assert wh.state["plan"] is not None and "setpoint_c" in wh.state["plan"]  # so did the geyser's
    assert washer.state.get("moves"), "a washer cycle is deferred at the pause"
    return out


def _error(w: Wamp, uri: str, *args: Any, **kwargs: Any) -> ApplicationError:
    with pytest.raises(ApplicationError) as exc:
        w.call(uri, *args, **kwargs)
    return exc.value


def _cmd(kind: str, **fields: Any) -> dict[str, Any]:
    """A command's wire form, written by hand (as a buggy or hostile caller might)."""
    return {"__flex__": kind, **fields}


def bad_rpcs(w: Wamp) -> dict[str, int]:
    """Bad commands: each refused with a message naming the field; nothing changes."""
    obj = {"__ndarray__": {"dtype": "|O", "shape": [1], "data": [1]}}
    cases = [
        ("water-heater", px.COMMAND, (_cmd("TankPlan", i0=-1, setpoint_c=[50.0]),), {}, "tank_plan: i0: must be a run step"),
        ("water-heater", px.COMMAND, (_cmd("TankPlan", i0=5, setpoint_c=["hot"]),), {},
         "tank_plan: setpoint_c: every item must be a number"),
        ("water-heater", px.COMMAND, (_cmd("TankPlan", setpoint_c=[50.0]),), {}, "missing 1 required positional argument: 'i0'"),
        ("water-heater", px.COMMAND, (_cmd("TankPlan", i0=5, heat_w=[1.0]),), {}, "TankPlan: unknown field(s) ['heat_w']"),
        ("water-heater", px.COMMAND, (_cmd("TankPlan", i0=5, setpoint_c=[150.0]),), {}, "setpoint_c must be within 0-100"),
        ("water-heater", px.COMMAND, (_cmd("TankPlan", i0=5, setpoint_c=obj),), {}, "setpoint_c: dtype object is not allowed"),
        ("water-heater", px.COMMAND, (_cmd("HeatPlan", i0=5, heat_w=[1.0]),), {}, "water-heater takes no heat_plan"),
        ("heat-pump", px.COMMAND, (_cmd("HeatPlan", i0=5, heat_w=[-1.0]),), {}, "heat_plan: set_plan: heat_w must be >= 0"),
        ("heat-pump", px.COMMAND, (_cmd("HeatPlan", i0=5, heat_w=[float("inf")]),), {}, "heat_plan: heat_w: infinite values"),
        ("heat-pump", px.COMMAND, (_cmd("Nope"),), {}, "not a contract type: 'Nope'"),
        ("heat-pump", px.COMMAND, ({"i0": 5},), {}, "command: not a command"),
        ("heat-pump", px.COMMAND, (), {"cmd": 1}, "command: takes one command"),
        ("washer", px.COMMAND, (_cmd("DeferTo", start_epoch_s="soon", new_start_epoch_s=5.0),), {},
         "defer_to: start_epoch_s: must be a finite number"),
        ("washer", px.COMMAND, (_cmd("DeferTo", start_epoch_s=1.0e9, new_start_epoch_s=1.0e9 + 60),), {},
         "no cycle was drawn to start at epoch 1000000000"),
        ("washer", px.COMMAND, (_cmd("UpcomingStarts", t0_epoch_s=0.0),), {},
         "missing 1 required positional argument: 't1_epoch_s'"),
        ("washer", px.COMMAND, (_cmd("UpcomingStarts", t0_epoch_s=0.0, t1_epoch_s=1.0e10),), {},
         "upcoming_starts: t1_epoch_s - t0_epoch_s: must be within"),
        ("washer", pp.PLAN_STAGE, (), {"inverter": "Not A Name!"}, "plan_stage: inverter: not an element name"),
        ("washer", pp.PLAN_STAGE, (), {"inverter": "inverter", "wait": "yes"}, "plan_stage: wait: must be true or false"),
    ]
    counts: dict[str, int] = {}
    for name, op, args, kwargs, text in cases:
        err = _error(w, m.element_uri(name, op), *args, **kwargs)
        assert err.error == px.INVALID_ARGUMENT, (name, op, err)
        assert text in str(err.args[0]), (name, op, err.args)
        counts[f"{name}.{op}"] = counts.get(f"{name}.{op}", 0) + 1
    return counts


def bad_plan_ready(w: Wamp, seq: int) -> int:
    """Malformed plan_ready signals for the waiting elements (seq: the last settled window)."""
    ones = np.ones(12).tobytes()
    payloads = [
        {"seq": seq + 1, "element": "sun", "n": 12, "arrays": {pp.PLAN_READY: ones}},  # not from the sun
        {"seq": seq + 1, "element": "inverter", "n": 12, "arrays": {pp.PLAN_READY: np.full(12, 0.5).tobytes()}},
        {"seq": seq + 1, "element": "inverter", "n": 12, "arrays": {pp.PLAN_READY: ones, "ghi": ones}},
        {"seq": seq, "element": "inverter", "n": 12, "arrays": {pp.PLAN_READY: ones}},  # a second one for a window
        {"seq": 0, "element": "inverter", "n": 12, "arrays": {pp.PLAN_READY: ones}},  # long gone
        {"seq": seq + 1, "element": "inverter", "n": 12, "arrays": {pp.PLAN_READY: b"\x00" * 7}},  # not float64
    ]
    for p in payloads:
        w.publish(m.SIGNALS, p)
    return len(payloads)


def _rejected(metrics: dict[str, float], element: str, uri: str, reason: str) -> float:
    return metrics.get(f'hometwin_messages_rejected_total{{element="{element}",reason="{reason}",uri="{uri}"}}', 0.0)


def test_trondheim_spot_mpc_up_equals_run(trondheim):  # type: ignore[no-untyped-def]
    """Joint MPC (battery, heat pump, water heater, smart washer/dishwasher), 2 days, automatic windows."""
    res, ref, eng = trondheim["result"], trondheim["ref"], trondheim["engine"]
    assert len(res.frame) == DAYS * 288
    assert max_diff(res.frame, ref.frame) <= 1e-9
    assert res.kpis()["max_ledger_residual_j"] <= 1e-6
    assert eng.inverter.strategy.plans == DAYS * 24
    # every plan made is an event of the run (the recorder's too), at the step it was made for
    made = [(e["step"], e["args"]["plan"]) for e in res.events if e["action"] == "plan"]
    assert made == [(d["step"], d["plan"]) for d in eng.inverter.strategy.made] and len(made) == DAYS * 24
    assert [s for s, _ in made] == [12 * h for h in range(DAYS * 24)]  # hourly replans of 5-minute steps
    # the plans acted: against the same home on thermostats and self-use, the planned elements differ
    bare = Engine(with_strategy(load_home(trondheim["spec"]), None)).run().frame
    for col in ("el.heat-pump_j", "el.water-heater_j", "el.washer_j", "el.battery_j"):
        assert not np.allclose(res.frame[col], bare[col]), col
    moved = {k: v for k, v in eng.inverter.strategy.appliance_scheduler().decisions.items() if k[1] != v}
    assert "washer" in {name for name, _ in moved}, moved


def test_remote_elements_are_the_models(trondheim):  # type: ignore[no-untyped-def]
    """At the pause every remote element, through a RemoteElement, answered exactly as the in-process model
    (see compare_remote): the flexibility the inverter's strategy reads is the model's, curves included."""
    remote = trondheim["remote"]

    def of(kind: type) -> set[str]:
        return {n for n, p in remote.items() if isinstance(p.flexibility(), kind)}

    assert of(fx.ThermalFlex) == {"heat-pump"} and of(fx.TankFlex) == {"water-heater"}
    assert of(fx.DeferrableFlex) == {"washer", "dishwasher"} and of(fx.BatteryFlex) == {"battery"}
    assert {n for n, p in remote.items() if px.COMMAND in p.rpcs} == {"heat-pump", "water-heater", "washer", "dishwasher"}
    # the inverter told exactly the plannable elements to wait, and published one plan_ready per window
    inv = trondheim["inverter"]
    windows = trondheim["pause"] // 12
    assert inv[f'hometwin_messages_total{{direction="out",element="inverter",uri="{m.SIGNALS}"}}'] == windows
    for name in ("heat-pump", "water-heater", "washer", "dishwasher"):
        assert inv[f'hometwin_messages_total{{direction="out",element="inverter",uri="{m.element_uri(name, pp.PLAN_STAGE)}"}}'] == 1
    assert not any("plan_stage" in k and ("battery" in k or "roof" in k) for k in inv)


def test_bad_planner_rpcs_and_plan_ready_rejected_and_counted(trondheim):  # type: ignore[no-untyped-def]
    """Every bad argument was refused naming its field (bad_rpcs) and counted by the element; malformed
    plan_ready signals were counted by the elements that wait for plans; the results did not change (above)."""
    for name, key in (("water-heater", px.COMMAND), ("heat-pump", px.COMMAND), ("washer", px.COMMAND),
                      ("washer", pp.PLAN_STAGE)):
        want = trondheim["bad_rpcs"][f"{name}.{key}"]
        got = _rejected(trondheim[name], name, m.element_uri(name, key), "invalid_argument")
        assert got == want, (name, key, got, want)
    for name in ("water-heater", "washer"):  # no inputs: they subscribe to signals only to wait for plans
        met = trondheim[name]
        # naming the sun, but published by the inverter's principal (this test's session)
        assert _rejected(met, name, m.SIGNALS, "forged") == 1
        assert _rejected(met, name, m.SIGNALS, "invalid") >= 3  # 0.5s, an extra key, not float64
        assert _rejected(met, name, m.SIGNALS, "duplicate") == 1
        assert _rejected(met, name, m.SIGNALS, "stale_seq") == 1
    logs = trondheim["logs"]
    assert not [line for line in logs if "prepare failed" in line or "Traceback" in line]


# -- without a router --------------------------------------------------------------------------------

def test_codec_round_trip_is_exact():
    x = np.array([0.1, -0.0, 1e-310, np.nan, np.inf, -np.inf, 2.0**-1074, 1.0 / 3.0])
    value = {"a": x, "b": np.arange(6, dtype=np.int64).reshape(2, 3), "c": np.array([True, False]),
             "d": (np.float64(1.5), [1, "x", None]), "e": {"f": np.int32(7)}}
    import msgpack

    wire = msgpack.unpackb(msgpack.packb(px.encode(value)))
    back = px.decode(wire)
    assert back["a"].dtype == np.float64 and back["a"].tobytes() == x.tobytes()  # bit for bit, -0.0 and NaN too
    assert back["b"].dtype == np.int64 and back["b"].shape == (2, 3) and (back["b"] == value["b"]).all()
    assert back["c"].dtype == bool and back["d"] == (1.5, [1, "x", None]) and back["e"] == {"f": 7}
    with pytest.raises(TypeError, match=r"value.f: a builtin_function_or_method cannot cross WAMP"):
        px.encode({"f": len})  # functions do not cross: the contract is data
    for bad, text in (({"__ndarray__": {"dtype": "<f8", "shape": [3], "data": [1.0]}}, "data must be a list of 3 values"),
                      ({"__ndarray__": {"dtype": "<U3", "shape": [1], "data": ["a"]}}, "is not allowed"),
                      ({"__ndarray__": [1, 2]}, "needs exactly dtype, shape and data")):
        with pytest.raises(ValueError, match=text):
            px.decode(bad, "setpoint_c")


def test_signals_allow_unlimited_limits_only():
    inf = np.array([np.inf, 5.0])
    ok = m.Signals(seq=0, element="grid", n=2, arrays={"import_limit_w": inf, "export_limit_w": inf})
    assert np.isinf(ok.arrays["import_limit_w"][0])
    with pytest.raises(ValueError, match="ghi"):
        m.Signals(seq=0, element="sun", n=2, arrays={"ghi": inf})
    with pytest.raises(ValueError, match="not finite"):
        m.Signals(seq=0, element="grid", n=2, arrays={"import_limit_w": np.array([-np.inf, 1.0])})
    with pytest.raises(ValueError, match="not finite"):
        m.Signals(seq=0, element="grid", n=2, arrays={"import_limit_w": np.array([np.nan, 1.0])})


def test_contract_values_round_trip_exactly():
    """Flexibility and commands cross msgpack as the same frozen values (arrays bit for bit)."""
    import msgpack

    eng = Engine(load_home(EXAMPLES / "trondheim-spot.yaml"), until_s=86400)
    values = [el.flexibility() for el in eng.elements.values() if el.flexibility() is not None]
    values += [fx.HeatPlan(3, heat_w=np.array([0.1, 1e-310, 2.0])), fx.TankPlan(4, setpoint_c=np.array([np.nan, 55.0])),
               fx.ClearPlan(), fx.DeferTo(1.7e9, 1.7e9 + 900.0), fx.UpcomingStarts(1.7e9, 1.7e9 + 3600.0)]
    assert {type(v).__name__ for v in values} >= {"BatteryFlex", "ThermalFlex", "TankFlex", "DeferrableFlex"}
    for v in values:
        back = fx.from_wire(px.decode(msgpack.unpackb(msgpack.packb(px.encode(fx.to_wire(v))))))
        same_flex(v, back, type(v).__name__)
    hp = eng.elements["heat-pump"].flexibility()
    assert isinstance(hp.curve, fx.HeatPumpCurve) and isinstance(hp.gains, fx.Gains)
    with pytest.raises(ValueError, match="not a contract type"):
        fx.from_wire({"__flex__": "Building"})


def test_plans_refused_inside_a_window_and_ports_only_where_the_model_has_them():
    """Plans land before a window's request or between windows; inside one (request out, not settled)
    they are refused and counted.  Ports and RPCs are exactly the model's."""
    from hometwin.runtime.balancer import Balancer
    from hometwin.runtime.service import ElementService

    eng = Engine(load_home(EXAMPLES / "trondheim-spot.yaml"), until_s=86400)
    svc = ElementService(eng.elements["water-heater"])
    assert svc.ports == [px.FLEXIBILITY, px.COMMAND] and svc.plannable
    rpcs = svc.describe_msg().rpcs
    assert {px.FLEXIBILITY, px.COMMAND, pp.PLAN_STAGE} <= set(rpcs)
    assert not {"set_plan", "params", "call_param", "draw_heat_w", "defer_to"} & set(rpcs)  # no per-method ports

    def send(cmd: Any) -> Any:
        return svc.rpc_command(px.encode(fx.to_wire(cmd)))

    assert send(fx.TankPlan(3, setpoint_c=np.array([55.0, 56.0]))) is None
    assert eng.elements["water-heater"].state["plan"]["i0"] == 3
    svc.win.published, svc.win.settled = True, False  # between its request and its settlement
    with pytest.raises(ApplicationError) as exc:
        send(fx.TankPlan(4, setpoint_c=np.array([50.0])))
    assert exc.value.error == px.STALE and "request is already published" in exc.value.args[0]
    with pytest.raises(ApplicationError) as exc:
        send(fx.ClearPlan())
    assert exc.value.error == px.STALE
    assert eng.elements["water-heater"].state["plan"]["i0"] == 3
    assert svc.rejections.counts[(m.element_uri("water-heater", px.COMMAND), "stale_seq")] == 2
    got = fx.from_wire(px.decode(svc.rpc_flexibility()))  # reading is always fine
    assert isinstance(got, fx.TankFlex) and got.temp_max_c == 65.0
    washer = ElementService(eng.elements["washer"])
    washer.win.published, washer.win.settled = True, False  # a query inside a window is fine
    assert isinstance(fx.from_wire(px.decode(washer.rpc_command(px.encode(fx.to_wire(
        fx.UpcomingStarts(float(eng.ctx.epoch_s(0, 1)[0]), float(eng.ctx.epoch_s(0, 1)[0]) + 86400.0)))))), tuple)
    assert ElementService(eng.elements["house"]).ports == [] and not ElementService(eng.elements["house"]).plannable
    assert ElementService(eng.elements["battery"]).ports == [px.FLEXIBILITY]
    assert not ElementService(eng.elements["battery"]).plannable
    # the balancer has a prepare stage only with a strategy
    assert Balancer(eng.inverter, list(eng.elements)).prepare_stage
    plain_home = Engine(load_home(EXAMPLES / "cape-town.yaml"), until_s=86400)
    bal = Balancer(plain_home.inverter, list(plain_home.elements))
    assert not bal.prepare_stage and bal.prep == "none" and plain_home.inverter.roster is bal.proxies
