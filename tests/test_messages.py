"""Wire messages: exact float64 round trip through msgpack, validation, counting, the docs table."""

from __future__ import annotations

from pathlib import Path

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from hometwin.runtime import messages as m

DOC = Path(__file__).resolve().parents[1] / "docs" / "runtime.md"


def roundtrip(msg: m.Message) -> dict:
    return msgpack.unpackb(msgpack.packb(msg.wire(), use_bin_type=True), raw=False)


def test_arrays_exact_to_the_bit() -> None:
    x = np.array([-0.0, 1e-300, np.pi, -123456.789e10, 5e-324])
    back = m.decode(m.EnergyRequest, roundtrip(m.EnergyRequest(seq=3, element="oven", role="load", n=5,
                                                                joules=-np.abs(x))), m.REQUEST, m.Rejections())
    assert back is not None and back.joules.tobytes() == (-np.abs(x)).tobytes()


def test_json_lists_accepted() -> None:
    r = m.decode(m.Signals, {"seq": 0, "element": "sun", "n": 2, "arrays": {"ghi": [1, 2.5]}}, m.SIGNALS, m.Rejections())
    assert r is not None and r.arrays["ghi"].tolist() == [1.0, 2.5]


@pytest.mark.parametrize("model,payload,reason", [
    (m.EnergyRequest, {"seq": 0, "element": "oven", "role": "load", "n": 1, "joules": [5.0]}, "sign"),
    (m.EnergyRequest, {"seq": 0, "element": "roof", "role": "source", "n": 1, "joules": [-5.0]}, "sign"),
    (m.EnergyRequest, {"seq": 0, "element": "oven", "role": "load", "n": 2, "joules": [-5.0]}, "length"),
    (m.Signals, {"seq": 0, "element": "sun", "n": 1, "arrays": {"ghi": [float("nan")]}}, "finite"),
    (m.Signals, {"seq": 0, "element": "sun", "n": 1, "arrays": {"ghi": b"\x00" * 7}}, "bytes"),
    (m.Tick, {"seq": -1, "i0": 0, "n": 1, "dt_s": 60, "t0": 0}, "seq"),
    (m.Tick, {"seq": 0, "i0": 0, "n": 1, "dt_s": 60, "t0": 0, "extra": 1}, "extra"),
    (m.Tick, {"seq": 0, "i0": 0, "n": 2, "dt_s": 60, "t0": 0, "windows": 3}, "run of long windows"),
    (m.Tick, {"seq": 0, "i0": 0, "n": 1, "dt_s": 60, "t0": 0, "windows": 0}, "no windows"),
    (m.Tick, {"seq": 0, "i0": 0, "n": 1, "dt_s": 60, "t0": 0, "windows": m.MAX_RUN_WINDOWS + 1}, "run too long"),
    (m.TickDone, {"seq": 0, "windows": 16, "i0": 5, "next_step": 5}, "nothing done"),
    (m.TickDone, {"seq": 0, "windows": 1, "i0": 5}, "where next"),
    (m.DispatchRequest, {"seq": 0, "dt_s": 60, "n": 1, "charge_j": [-1.0], "discharge_j": [0.0]}, "sign"),
    (m.DispatchRequest, {"seq": 0, "dt_s": 60, "n": 1, "charge_j": [0.0], "discharge_j": [0.0], "soc_floor": [1.5]}, "range"),
    (m.Settle, {"seq": 0, "i0": 0, "n": 2, "k": 2, "served": {}, "participants": []}, "k"),
    (m.Flows, {"seq": 0, "i0": 0, "n": 1, "k": 0, "dt_s": 60, "flows": {}, "served": {}, "roles": {}}, "keys"),
    (m.Describe, {"element": "Bad Name", "kind": "oven", "role": "load"}, "name"),
])
def test_bad_messages_rejected_and_counted(model, payload, reason) -> None:  # type: ignore[no-untyped-def]
    seen: list[tuple[str, str]] = []
    rej = m.Rejections(lambda uri, why: seen.append((uri, why)))
    assert m.decode(model, payload, "hometwin.x", rej) is None
    assert rej.total == 1 and seen == [("hometwin.x", "invalid")]


def test_non_map_payload_is_malformed() -> None:
    rej = m.Rejections()
    assert m.decode(m.Tick, [1, 2], m.TICK, rej) is None
    assert rej.counts[(m.TICK, "malformed")] == 1


def test_docs_topics_table_is_current() -> None:
    """docs/runtime.md carries the generated table verbatim (regenerate: python -m hometwin.runtime.messages)."""
    assert m.topics_table() in DOC.read_text()


# -- packed array maps (Settle.served, Flows.flows/served) -----------------------------------------

_names = st.lists(st.from_regex(r"[a-z][a-z0-9]{0,8}", fullmatch=True), min_size=0, max_size=6, unique=True)


@settings(max_examples=60, deadline=None)
@given(names=_names, length=st.integers(1, 5), data=st.data())
def test_settle_served_packed_round_trip_is_bit_exact(names, length, data) -> None:  # type: ignore[no-untyped-def]
    """One float64 buffer on the wire, rows in name order; every value (−0.0, subnormals) comes back
    bit for bit, under the same names, from msgpack."""
    vals = st.floats(allow_nan=False, allow_infinity=False, width=64)
    served = {n: np.array(data.draw(st.lists(vals, min_size=length, max_size=length))) for n in names}
    msg = m.Settle(seq=1, i0=0, n=length, k=length - 1, served=served, participants=list(names))
    wire = roundtrip(msg)
    assert isinstance(wire["served"], list) and wire["served"][0] == list(names)  # packed, not a map
    back = m.decode(m.Settle, wire, m.SETTLE, m.Rejections())
    assert back is not None and list(back.served) == list(names)
    for n in names:
        assert back.served[n].tobytes() == served[n].tobytes()


@settings(max_examples=60, deadline=None)
@given(names=_names.filter(bool), length=st.integers(1, 4), where=st.integers(0, 100),
       bad=st.sampled_from([np.nan, np.inf, -np.inf]))
def test_a_non_finite_value_anywhere_in_a_packed_map_is_refused(names, length, where, bad) -> None:  # type: ignore[no-untyped-def]
    flat = np.zeros(len(names) * length)
    flat[where % len(flat)] = bad
    payload = {"seq": 0, "i0": 0, "n": length, "k": length - 1, "participants": list(names),
               "served": [list(names), flat.astype("<f8").tobytes()]}
    rej = m.Rejections()
    assert m.decode(m.Settle, payload, m.SETTLE, rej) is None
    assert rej.counts[(m.SETTLE, "invalid")] == 1


@pytest.mark.parametrize("served,why", [
    ([["a", "b"], np.zeros(3).tobytes()], "equal arrays"),     # 3 values do not split in two
    ([["a", "a"], np.zeros(2).tobytes()], "unique"),
    ([["a"], b"\x00" * 12], "multiple of 8"),
    ([[], np.zeros(1).tobytes()], "no names"),
    ([["a"]], "packed"),
    ([[1], np.zeros(1).tobytes()], "strings"),
    ({"a": [1.0], "b": [float("inf")]}, "b: array"),           # the map form names the entry
])
def test_malformed_packed_maps_name_the_problem(served, why) -> None:  # type: ignore[no-untyped-def]
    seen: list[str] = []
    rej = m.Rejections(lambda uri, reason: seen.append(reason))
    payload = {"seq": 0, "i0": 0, "n": 1, "k": 0, "served": served, "participants": []}
    assert m.decode(m.Settle, payload, m.SETTLE, rej) is None and seen == ["invalid"]
    with pytest.raises(ValidationError, match=why):
        m.Settle.model_validate(payload)


def test_flows_arrays_of_one_message_share_a_length() -> None:
    flows = {k: np.zeros(2) for k in m.FLOW_KEYS}
    flows["cost"] = np.zeros(3)
    with pytest.raises(Exception, match="length"):
        m.Flows(seq=0, i0=0, n=3, k=1, dt_s=60, flows=flows, served={}, roles={})


def test_settle_next_is_the_window_after_the_one_settled():
    """``Settle.next`` carries the next window's tick: seq + 1, from the step after k — nothing else."""
    tick = dict(dt_s=60, t0=1.7e9, n=1)
    ok = m.Settle(seq=4, i0=10, n=3, k=1, served={}, participants=[], next=m.Tick(seq=5, i0=12, **tick))
    assert m.Settle.model_validate(ok.wire()).next == ok.next
    rej = m.Rejections()
    for seq, i0 in ((6, 12), (5, 13), (5, 11), (4, 12)):
        bad = dict(ok.wire(), next=dict(seq=seq, i0=i0, **tick))
        assert m.decode(m.Settle, bad, m.SETTLE, rej) is None
    assert rej.counts[(m.SETTLE, "invalid")] == 4
    # a run of windows is the inverter's to open: the next window is one window
    assert m.decode(m.Settle, dict(ok.wire(), next=dict(seq=5, i0=12, windows=2, **tick)), m.SETTLE, rej) is None



def test_settle_then_and_confirmed_speak_of_the_next_window():
    """``Settle.then`` is the window after ``next``; ``confirmed`` names participants, and only with a
    ``next`` (their speculative packets are for it)."""
    tick = dict(dt_s=60, t0=1.7e9, n=1)
    ok = m.Settle(seq=4, i0=10, n=1, k=0, served={}, participants=["geyser", "battery"],
                  next=m.Tick(seq=5, i0=11, **tick), then=m.Tick(seq=6, i0=12, **tick), confirmed=["geyser"])
    back = m.Settle.model_validate(roundtrip(ok))
    assert (back.then, back.confirmed) == (ok.then, ["geyser"])
    wire = ok.wire()
    rej = m.Rejections()
    bad = [
        dict(wire, then=dict(seq=7, i0=12, **tick)),  # not the window after next
        dict(wire, then=dict(seq=6, i0=13, **tick)),
        dict(wire, then=dict(seq=6, i0=12, windows=4, **tick)),  # a run
        dict(wire, next=None, confirmed=[]),  # then without next
        dict(wire, next=None, then=None),  # confirmed without next
        dict(wire, confirmed=["oven"]),  # not a participant
    ]
    for payload in bad:
        assert m.decode(m.Settle, payload, m.SETTLE, rej) is None, payload
    assert rej.counts[(m.SETTLE, "invalid")] == len(bad)
    # the packets that may go out ahead carry the mark; it is a boolean
    req = m.EnergyRequest(seq=5, element="geyser", role="load", n=1, joules=np.array([-1.0]), speculative=True)
    assert m.EnergyRequest.model_validate(roundtrip(req)).speculative
    assert m.decode(m.EnergyRequest, dict(req.wire(), speculative="maybe"), m.REQUEST, rej) is None

@settings(max_examples=50, deadline=None)
@given(seq=st.integers(0, 10**6), i0=st.integers(0, 10**6), windows=st.integers(1, m.MAX_RUN_WINDOWS))
def test_a_run_splits_into_its_windows(seq: int, i0: int, windows: int) -> None:
    """``Tick.split``: ``windows`` single steps, seq and step + 1 each, at their own start time."""
    t0 = 1.7e9 + 60 * i0
    run = m.Tick.model_validate(roundtrip(m.Tick(seq=seq, i0=i0, n=1, dt_s=60, t0=t0, windows=windows)))
    parts = run.split()
    assert [(w.seq, w.i0, w.n, w.windows) for w in parts] == [(seq + j, i0 + j, 1, 1) for j in range(windows)]
    assert all(w.t0 == 1.7e9 + 60 * (i0 + j) for j, w in enumerate(parts))
