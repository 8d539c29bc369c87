"""The recorder reads only ``Flows`` (issue 22, part 1): ``hometwin up``'s recorder
(:class:`hometwin.results.Recorder` with the spec's :class:`~hometwin.results.RunInfo`) and
``hometwin record``'s (:class:`hometwin.recording.service.LiveRecorder`), fed the wire form of an
in-process run's windows, give that run's frame, meta and KPIs bit for bit — without one element
model built for them.  No router, no process: the windows are made in-process and put on the wire
as the WAMP inverter puts them (runtime/balancer.py: roles as strings, the run's largest residual).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from hometwin.element import Element
from hometwin.engine import Engine
from hometwin.results import FLOW_COLUMNS, Recorder, RunInfo
from hometwin.runtime import messages as m
from hometwin.spec import home_context, load_home
from conftest import EXAMPLES

DAY = 86400


def _run_and_wire(example: str, window: int) -> tuple[Any, Any, list[m.Flows]]:
    """An in-process run of two days, and each of its windows as a ``Flows`` message."""
    home = load_home(EXAMPLES / example)
    eng = Engine(home, window=window, until_s=2 * DAY)
    wire: list[m.Flows] = []
    worst = [0.0]

    def publish(rec: Any) -> None:  # as the balancer's Commit: Flows, the decoded message the recorder gets
        worst[0] = max(worst[0], rec.residual_j)
        f = m.Flows(seq=rec.window.seq, i0=rec.i0, n=rec.n, k=rec.k, dt_s=rec.window.dt_s, flows=rec.flows,
                    served=rec.served, roles={n: r.value for n, r in rec.roles.items()}, soc=rec.soc,
                    stale=list(rec.stale), max_residual_j=worst[0])
        wire.append(m.decode(m.Flows, f.wire(), m.FLOWS, m.Rejections()))

    eng.on_window.append(publish)
    return home, eng.run(), wire


def refuse_models(monkeypatch: pytest.MonkeyPatch) -> None:
    """Building an element model from here on fails the test."""
    def refuse(self: Any, *a: Any, **k: Any) -> None:
        raise AssertionError(f"an element model was built: {type(self).__name__}")

    monkeypatch.setattr(Element, "__init__", refuse)


def test_flow_keys_are_the_flow_columns() -> None:
    assert m.FLOW_KEYS is FLOW_COLUMNS  # one list: the wire's keys are the results' columns
    assert len(FLOW_COLUMNS) == 15 and len(set(FLOW_COLUMNS)) == 15


@pytest.mark.parametrize("example, window", [("cape-town.yaml", 60), ("trondheim-spot.yaml", 1)])
def test_the_recorder_reads_flows_alone_and_gives_the_engines_result(example: str, window: int,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    home, ref, wire = _run_and_wire(example, window)
    ctx = home_context(home, 2 * DAY)
    refuse_models(monkeypatch)
    rec = Recorder(RunInfo.of_spec(home, ctx))
    for f in wire:
        rec.add(f)
    res = rec.result()
    pd.testing.assert_frame_equal(res.frame, ref.frame, check_exact=True)
    got, want = dict(res.meta), dict(ref.meta)
    got.pop("wall_s"), want.pop("wall_s")
    assert got == want
    assert _same_kpis(res.kpis(), ref.kpis())
    assert len(wire) == want["windows"] > 1
    # the figures the KPIs need came from the spec: the numbers are the home's, not defaults
    assert want["pv_kwp"] > 0 and want["currency"] and want["elements"]
    assert rec.max_residual_j == ref.meta["max_ledger_residual_j"]


def _same_kpis(a: dict[str, float], b: dict[str, float]) -> bool:
    """Equal, NaN equal to NaN (self-consumption of a home without PV …)."""
    return a.keys() == b.keys() and all(x == y or (np.isnan(x) and np.isnan(y)) for x, y in
                                        ((a[k], b[k]) for k in a))


def test_live_recorder_kpis_from_flows_equal_the_engines(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from hometwin.recording.service import LiveRecorder

    home, ref, wire = _run_and_wire("cape-town.yaml", 60)
    ctx = home_context(home, 2 * DAY)
    refuse_models(monkeypatch)
    live = LiveRecorder(home, ctx, f"sqlite:///{tmp_path / 'h.db'}", "cape-town-test")
    try:
        for f in wire:
            live.add_flows(f)
        assert live.next_missing() == ctx.n_steps
        assert _same_kpis(live.kpis(), ref.kpis())
        assert live.kpis()["pv_kwh"] > 0 and live.kpis()["battery_cycles"] > 0
    finally:
        live.store.close()
