"""The state file of ``hometwin service --state-dir`` (hometwin/runtime/state.py).

* any snapshot of the element kinds that keep state round-trips exactly through the file
  (hypothesis: values of each kind's own state shape, plus numpy arrays, numpy scalars,
  tuples, bytes, maps with non-string keys; NaN, ±inf, -0.0, subnormals, huge ints);
* a home restored from its elements' files at a window boundary continues bit-identically;
* corrupt, foreign and mismatching files are refused with a log line, moved aside, ignored;
* writes are spaced (``interval_s``, or automatically) with a trailing write of the last settle.
"""

from __future__ import annotations

import asyncio
import json
import os
import logging
import math
from functools import cache
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from hometwin.engine import Engine
from hometwin.results import Recorder
from hometwin.runtime import state as sf
from hometwin.spec import load_home
from conftest import EXAMPLES

STATEFUL_HOMES = ("cape-town.yaml", "trondheim-spot.yaml", "smarthjem.yaml")


@cache
def stateful_elements() -> dict[str, Any]:
    """One element per kind that keeps state, after a day of running (plans, moves, counters set)."""
    out: dict[str, Any] = {}
    for home in STATEFUL_HOMES:
        eng = Engine(load_home(EXAMPLES / home), until_s=86400)
        eng.run()
        for el in eng.elements.values():
            key = el.kind + ("+strategy" if getattr(el, "strategy", None) is not None else "")
            if el.state and key not in out:
                out[key] = el
    return out


def test_the_kinds_with_state_are_covered():
    kinds = set(stateful_elements())
    assert {"geyser", "battery", "heat_pump", "space_heater", "grid", "pv", "inverter", "inverter+strategy", "oven",
            "washing_machine"} <= kinds, kinds
    strategy = stateful_elements()["inverter+strategy"].snapshot()["strategy"]
    assert isinstance(strategy["plan"]["charge_w"], np.ndarray)  # the planner's state holds numpy arrays


# -- exact equality: types and bits ---------------------------------------------------------------

def same(a: Any, b: Any, path: str = "$") -> None:
    assert type(a) is type(b), f"{path}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, float):
        assert (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b)), \
            f"{path}: {a!r} != {b!r}"
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, f"{path}: {a.dtype}{a.shape} != {b.dtype}{b.shape}"
        if a.dtype.hasobject:
            for i, (x, y) in enumerate(zip(a.ravel(), b.ravel())):
                same(x, y, f"{path}[{i}]")
        else:
            assert a.tobytes() == b.tobytes(), f"{path}: array bits differ"
    elif isinstance(a, np.generic):
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), f"{path}: {a!r} != {b!r}"
    elif isinstance(a, dict):
        assert list(a) == list(b), f"{path}: keys {list(a)} != {list(b)}"
        for k in a:
            same(a[k], b[k], f"{path}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{path}: length {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, f"{path}[{i}]")
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


# -- strategies -----------------------------------------------------------------------------------

floats = st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True) | st.sampled_from(
    [0.0, -0.0, 5e-324, -5e-324, 1.7976931348623157e308, 0.1 + 0.2, 1 / 3])
ints = st.integers() | st.integers(min_value=-(2 ** 200), max_value=2 ** 200)
scalars = st.none() | st.booleans() | ints | floats | st.text(max_size=8)
dtypes = st.sampled_from([np.dtype(t) for t in ("<f8", "<f4", "<i8", "<i4", "<u2", "|b1", "<c16", ">f8", "<M8[s]")])
arrays = dtypes.flatmap(lambda dt: hnp.arrays(dt, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)))
np_scalars = st.builds(lambda x: np.float64(x), floats) | st.builds(lambda x: np.int32(x), st.integers(-2**31, 2**31 - 1)) \
    | st.builds(np.bool_, st.booleans())
keys = st.text(max_size=6) | st.integers(-5, 5) | st.sampled_from(["$t", "__ndarray__"]) \
    | st.tuples(st.integers(0, 3), st.text(max_size=2))
anything = st.recursive(
    scalars | arrays | np_scalars | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner)
    | st.dictionaries(st.text(max_size=6), inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=12)


def like(value: Any) -> st.SearchStrategy:
    """Values shaped like ``value`` (the shape a kind's state has), with extreme numbers."""
    if isinstance(value, bool):
        return st.booleans()
    if isinstance(value, int):
        return ints
    if isinstance(value, float):
        return floats
    if value is None:
        return st.none() | floats
    if isinstance(value, list):
        return st.lists(like(value[0]) if value else anything, max_size=max(4, len(value)))
    if isinstance(value, dict):
        return st.fixed_dictionaries({k: like(v) for k, v in value.items()})
    if isinstance(value, np.ndarray):
        return hnp.arrays(value.dtype, value.shape)
    if isinstance(value, tuple):
        return st.tuples(*(like(v) for v in value))
    return st.just(value)


@st.composite
def snapshots(draw: Any) -> tuple[Any, dict[str, Any]]:
    kind = draw(st.sampled_from(sorted(stateful_elements())))
    el = stateful_elements()[kind]
    snap = el.snapshot()
    out = dict(snap)
    for key, value in snap.items():  # state (and the inverter's strategy): values of the same shape
        if key not in ("kind", "name", "config"):
            out[key] = draw(like(value))
    out["state"].update(draw(st.dictionaries(st.text(min_size=1, max_size=6).map(lambda s: "x_" + s), anything,
                                             max_size=3)))
    return el, out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(snapshots())
def test_any_snapshot_round_trips_exactly_through_the_file(tmp_path_factory, drawn):
    el, snap = drawn
    path = tmp_path_factory.mktemp("state") / f"{el.name}.json"
    fp = sf.fingerprint(el)
    sf.write_atomic(path, sf.dumps(sf.envelope(el, fp, seq=7, i0=420, k=59, snapshot=sf.encode(snap))))
    doc = sf.read(path, el, fp)
    same(doc["snapshot"], snap)
    assert (doc["seq"], doc["i0"], doc["k"], doc["step"]) == (7, 420, 59, 480)
    json.loads(path.read_text())  # the file is JSON (Python's: NaN/Infinity as its json writes them)


@settings(max_examples=200, deadline=None)
@given(anything)
def test_the_tree_encoding_round_trips_any_value_exactly(value):
    same(sf.decode(sf.loads(sf.dumps(sf.encode(value)))), value)


def test_a_restored_element_has_the_snapshot_it_was_written_with(tmp_path):
    for kind, el in stateful_elements().items():
        keeper = sf.StateKeeper(tmp_path, el, interval_s=0)
        keeper.committed(seq=3, i0=100, k=19)
        fresh = _fresh(el)
        assert sf.StateKeeper(tmp_path, fresh).restore(), kind
        same(fresh.snapshot(), el.snapshot(), kind)


def test_the_keeper_observes_commits_and_leaves_the_model_alone(tmp_path):
    """An explicit hook (``Element.on_commit``), not a wrapped ``settle``: every window the engine
    commits reaches the keeper of each element (the inverter's after it remembers the window),
    with the window's own seq, i0 and k; a plain ``settle`` (a speculative packet's) does not."""
    eng = Engine(load_home(EXAMPLES / "cape-town.yaml"), window=60, until_s=3 * 3600)
    keepers = {name: sf.StateKeeper(tmp_path, el, interval_s=3600).attach() for name, el in eng.elements.items()}
    seen: list[tuple[int, int, int]] = []
    eng.elements["geyser"].on_commit.append(lambda *window: seen.append(window))
    records = []
    eng.on_window.append(records.append)
    eng.run()
    for name, el in eng.elements.items():
        assert "settle" not in vars(el) and "remember" not in vars(el), name  # nothing patched on the instance
        assert keepers[name].commits == len(records) == 3, name
    assert seen == [(r.window.seq, r.window.i0, r.k) for r in records] == [(0, 0, 59), (1, 60, 59), (2, 120, 59)]
    assert keepers["inverter"].pending[:3] == (2, 120, 59)
    geyser = eng.elements["geyser"]
    geyser.settle(records[-1].window, 0, np.zeros(1))  # settled only as assumed: not a commit
    assert keepers["geyser"].commits == 3 and len(seen) == 3


# -- restart at a window boundary continues exactly -------------------------------------------------

def _run_on(eng: Engine, until: int | None = None) -> Recorder:
    rec = Recorder(eng)
    eng.on_window.append(rec.add)
    while eng.i < (until or eng.ctx.n_steps):
        eng.step_window()
    eng.on_window.remove(rec.add)
    return rec


@pytest.mark.parametrize("example", ["cape-town.yaml", "trondheim-spot.yaml"])  # the second: planners, heat pump
@pytest.mark.slow  # a long run: closed-loop optimisation over days, 2-16 s at load 6 (docs/testing.md)
def test_a_home_restored_from_its_files_continues_bit_identically(tmp_path, example):
    home = load_home(EXAMPLES / example)
    a = Engine(home, window=60, until_s=2 * 86400)
    keepers = [sf.StateKeeper(tmp_path, el, interval_s=0).attach() for el in a.elements.values()]
    cut = (a.ctx.n_steps // 2 // a.window + 1) * a.window  # into day 2 (Cape Town: after the load-shedding)
    _run_on(a, until=cut)
    cut = a.i
    assert all(k.writes == k.commits > 0 for k in keepers)
    docs = {p.stem: json.loads(p.read_text()) for p in tmp_path.glob("*.json")}
    assert set(docs) == set(a.elements) and {d["step"] for d in docs.values()} == {cut}

    b = Engine(home, window=60, until_s=2 * 86400)  # "the restarted processes": configs only …
    for el in b.elements.values():
        assert sf.StateKeeper(tmp_path, el).restore(), el.name  # … then their files
    b.i, b.seq = a.i, a.seq
    ra, rb = _run_on(a), _run_on(b)
    assert ra.windows == rb.windows > 0
    for name, arr in ra.elements.items():
        np.testing.assert_array_equal(rb.elements[name][cut:], arr[cut:], err_msg=name)
    for col, arr in ra.cols.items():
        np.testing.assert_array_equal(rb.cols[col][cut:], arr[cut:], err_msg=col)
    for name, el in a.elements.items():
        same(b.elements[name].snapshot(), el.snapshot(), name)


# -- refusals ----------------------------------------------------------------------------------------

@pytest.fixture
def geyser() -> Any:
    return stateful_elements()["geyser"]


def _fresh(el: Any, **changes: Any) -> Any:
    return type(el)(el.name, dict(el.config.model_dump(), **changes), el.home)


def _good_file(tmp_path: Any, el: Any) -> Any:
    keeper = sf.StateKeeper(tmp_path, el, interval_s=0)
    keeper.committed(seq=1, i0=0, k=59)
    return keeper.path


def _edit(text: str, change: Any) -> str:
    doc = json.loads(text)
    change(doc)
    return json.dumps(doc)


@pytest.mark.parametrize("damage, why", [
    (lambda text: text[: len(text) // 2], "corrupt: not JSON"),
    (lambda text: "", "corrupt: not JSON"),
    (lambda text: "\x00\xff garbage", "corrupt: not JSON"),
    (lambda text: json.dumps([1, 2, 3]), "not a hometwin.state/1 file"),
    (lambda text: text.replace(sf.FORMAT, "hometwin.state/0"), "not a hometwin.state/1 file"),
    (lambda text: text.replace('"element":"geyser"', '"element":"boiler"'), "written by 'boiler'"),
    (lambda text: text.replace('"step":60', '"step":"60"'), "corrupt: step is not an int"),
    (lambda text: _edit(text, lambda d: d["snapshot"]["state"].update(temps={"$t": "nope"})), "corrupt: unknown tag"),
    (lambda text: _edit(text, lambda d: d["snapshot"]["state"].update(temps={"$t": "ndarray", "dtype": "<f8",
                                                                              "shape": [3], "data": "AAAA"})),
     "corrupt: buffer"),
    (lambda text: _edit(text, lambda d: d["snapshot"].pop("state")), "corrupt: no snapshot state"),
    (lambda text: _edit(text, lambda d: d["snapshot"]["state"].update(temps={"$t": "bytes", "data": 123})),
     "corrupt: AttributeError"),
    (lambda text: "[" * 100_000 + "]" * 100_000, "nested deeper than Python's recursion limit"),
])
def test_a_damaged_file_is_refused_logged_moved_aside_and_ignored(tmp_path, caplog, geyser, damage, why):
    path = _good_file(tmp_path, geyser)
    path.write_text(damage(path.read_text()))
    fresh = _fresh(geyser)
    before = fresh.snapshot()
    with caplog.at_level(logging.INFO, logger="hometwin.state"):
        assert sf.StateKeeper(tmp_path, fresh).restore() is False
    (rec,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "geyser: state file" in rec.getMessage() and "refused" in rec.getMessage()
    assert why in rec.getMessage(), rec.getMessage()
    assert "starting from the config" in rec.getMessage()
    same(fresh.snapshot(), before)  # untouched
    assert not path.exists() and path.with_name("geyser.json.refused").exists()


def test_a_file_for_another_config_or_home_is_refused(tmp_path, caplog, geyser):
    path = _good_file(tmp_path, geyser)
    text = path.read_text()
    for other in (_fresh(geyser, setpoint_c=55.0), type(geyser)(geyser.name, geyser.config,
                                                               _shifted(geyser.home))):
        path.write_text(text)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="hometwin.state"):
            assert sf.StateKeeper(tmp_path, other).restore() is False
        assert "written for another config or home" in caplog.text
    # the same config, started again: restored (the fingerprint is of the startup config, so a
    # runtime set() before the snapshot does not stop the restore — the file carries the set config)
    path.write_text(text)
    assert sf.StateKeeper(tmp_path, _fresh(geyser)).restore() is True


def _shifted(ctx: Any) -> Any:
    from dataclasses import replace

    return replace(ctx, seed=ctx.seed + 1)


def test_a_snapshot_that_does_not_fit_the_model_rolls_back(tmp_path, caplog, geyser):
    fp = sf.fingerprint(geyser)
    snap = dict(geyser.snapshot(), config={"tank_volume_l": -5})  # invalid config inside a valid file
    sf.write_atomic(tmp_path / "geyser.json", sf.dumps(sf.envelope(geyser, fp, 0, 0, 0, sf.encode(snap))))
    fresh = _fresh(geyser)
    before = fresh.snapshot()
    with caplog.at_level(logging.INFO, logger="hometwin.state"):
        assert sf.StateKeeper(tmp_path, fresh).restore() is False
    assert "restore failed: ValidationError" in caplog.text
    same(fresh.snapshot(), before)


def test_no_file_starts_from_the_config(tmp_path, caplog, geyser):
    with caplog.at_level(logging.INFO, logger="hometwin.state"):
        assert sf.StateKeeper(tmp_path, _fresh(geyser)).restore() is False
    assert "no state file" in caplog.text and "ERROR" not in caplog.text


def test_an_unstorable_state_is_logged_once_and_the_element_goes_on(tmp_path, caplog, geyser):
    el = _fresh(geyser)
    keeper = sf.StateKeeper(tmp_path, el, interval_s=0)
    el.state["oops"] = {1, 2}  # a set: not a JSON-able state value
    with caplog.at_level(logging.INFO, logger="hometwin.state"):
        keeper.committed(0, 0, 0)
        keeper.committed(1, 1, 0)
    assert caplog.text.count("state not persisted") == 1 and "$.state.oops: set cannot be stored" in caplog.text
    assert keeper.writes == 0 and not keeper.path.exists()


# -- throttling ---------------------------------------------------------------------------------------

async def _until(pred: Any) -> None:
    for _ in range(500):
        await asyncio.sleep(0.02)
        if pred():
            return


def test_writes_are_off_the_settle_path_and_throttled(tmp_path, geyser):
    async def main() -> sf.StateKeeper:
        keeper = sf.StateKeeper(tmp_path, _fresh(geyser), interval_s=3600)
        for seq in range(50):  # 50 settles without a turn of the loop in between: nothing written yet …
            keeper.committed(seq, seq * 60, 59)
        assert keeper.writes == 0 and not keeper.path.exists()
        await _until(lambda: keeper.writes)  # … then one write, of the latest
        assert json.loads(keeper.path.read_text())["seq"] == 49
        for seq in range(50, 60):  # inside the interval: no write, one armed for its end
            keeper.committed(seq, seq * 60, 59)
            await asyncio.sleep(0.01)
        assert keeper.writes == 1 and keeper.pending[0] == 59 and keeper._timer is not None
        keeper.close()  # at exit: the pending one
        return keeper

    keeper = asyncio.run(main())
    assert keeper.commits == 60 and keeper.writes == 2
    assert json.loads(keeper.path.read_text())["step"] == 59 * 60 + 60
    assert not list(tmp_path.glob(".*.tmp"))


def test_automatic_spacing_and_the_last_settle_always_lands(tmp_path, geyser):
    async def main() -> sf.StateKeeper:
        keeper = sf.StateKeeper(tmp_path, _fresh(geyser))  # automatic: 50x the last write's duration, <= 1 s
        keeper.committed(0, 0, 59)
        await _until(lambda: keeper.writes == 1)
        assert 0.0 < keeper.spacing_s <= sf.AUTO_MAX_S
        keeper.committed(1, 60, 59)  # nothing after it: the trailing write brings it to the file
        await _until(lambda: keeper.writes == 2)
        return keeper

    keeper = asyncio.run(main())
    assert keeper.writes == 2 and json.loads(keeper.path.read_text())["step"] == 120


def test_a_short_write_never_replaces_the_last_whole_file(tmp_path, geyser, monkeypatch):
    """``os.write`` may write less than asked: the writer goes on until all is written; and when
    writing fails the last whole file stays and no temp file is left behind."""
    path = _good_file(tmp_path, geyser)
    good = path.read_text()
    real_write = os.write
    monkeypatch.setattr(sf.os, "write", lambda fd, data: real_write(fd, bytes(data[:7])))  # 7 bytes a call
    sf.write_atomic(path, good + " ")
    assert path.read_text() == good + " "

    def full_disk(fd, data):
        if len(data) < 40:
            raise OSError(28, "No space left on device")
        return real_write(fd, bytes(data[:40]))

    monkeypatch.setattr(sf.os, "write", full_disk)
    with pytest.raises(OSError):
        sf.write_atomic(path, "x" * 100)
    assert path.read_text() == good + " "
    assert list(tmp_path.glob(".*.tmp")) == []
