"""``hometwin up`` starts the elements while Crossbar boots, and the clock only after its recorder.

Crossbar's boot leaves a core idle for seconds, and every element process needs about a second
of CPU to import and validate the home, so the launcher starts the elements as soon as the
router's URL is known; each retries until the router listens.  The clock must wait: a tick
before the launcher's recorder has subscribed would settle a window nobody records.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from hometwin.runtime.launcher import Launcher
from runtime_support import ROOT

MINIMAL = ROOT / "examples" / "homes" / "minimal.yaml"


def test_elements_start_while_the_router_boots_and_the_clock_after_the_recorder(tmp_path: Path) -> None:
    logs: list[str] = []
    la = Launcher(spec_path=MINIMAL, window=60, until_s=6 * 3600, port=0, rawsocket_port=0, live=False,
                  out=tmp_path / "out", log_sink=lambda name, color, line: logs.append(f"[{name}] {line}"))
    res = asyncio.run(la.run())
    text = "\n".join(logs)
    assert la.failed is None, text
    elements = [p for p in la.procs.values() if p.cmd.kind != "clock"]
    (clock,) = [p for p in la.procs.values() if p.cmd.kind == "clock"]
    assert len(elements) == len(la.home.spec.elements) >= 5
    assert 0 < la.t_router_up and 0 < la.t_joined
    late = [p.cmd.name for p in elements if not 0 < p.started_at < la.t_router_up]
    assert late == [], f"started after the router was up: {late}\n{text}"
    assert clock.started_at > la.t_joined > la.t_router_up
    # nothing was missed: every window of the run was recorded, in order, from step 0
    assert (la.windows, len(res.frame), res.meta["n_steps"]) == (6, 360, 360), text
    assert res.meta.get("complete", True) is True
    assert res.meta["max_ledger_residual_j"] < 1e-6
    assert all(p.restarts == 0 for p in la.procs.values()), text
