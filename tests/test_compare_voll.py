"""``compare-strategies --voll``: unserved energy is priced, so an outage-blind strategy is not flattered."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from conftest import EXAMPLES
from hometwin.cli import app
from hometwin.studies.compare import compare_strategies
from hometwin.spec import load_home

# R/kWh: the cost of unserved energy NERSA uses for South Africa is of this order (tens of rand per kWh);
# the exact value does not matter to the ordering asserted below, only that it dwarfs the tariff.
VOLL = 80.0


def test_lost_load_is_priced_and_reorders_an_outage_week() -> None:
    h = load_home(EXAMPLES / "cape-town-lp.yaml")
    rows = compare_strategies(h, ["self_consumption", "backup"], until_s=3 * 86400, bound=False, voll_per_kwh=VOLL)
    sc, bk = rows["self_consumption"], rows["backup"]
    for r in rows.values():
        assert math.isclose(r["cost_with_lost_load"], r["energy_cost"] + VOLL * r["unserved_kwh"], rel_tol=1e-12)
    assert sc["unserved_kwh"] > bk["unserved_kwh"]
    # backup buys more energy (it holds a reserve for the announced outages) ...
    print(f"\nenergy cost: self-consumption {sc['energy_cost']:.2f}, backup {bk['energy_cost']:.2f}; "
          f"with lost load at {VOLL:g} R/kWh: {sc['cost_with_lost_load']:.2f} vs {bk['cost_with_lost_load']:.2f}")
    # ... and once the dark hours are priced it is the cheaper way to run this house
    assert bk["cost_with_lost_load"] < sc["cost_with_lost_load"]


@settings(max_examples=25, deadline=None)
@given(st.one_of(st.floats(max_value=-1e-9, allow_nan=False), st.just(math.nan), st.just(math.inf)))
def test_bad_voll_is_refused_before_anything_runs(v: float) -> None:
    h = load_home(EXAMPLES / "minimal.yaml")
    with pytest.raises(ValueError, match="voll_per_kwh: must be >= 0"):
        compare_strategies(h, ["self_consumption"], until_s=3600, voll_per_kwh=v)


def test_cli_shows_the_lost_load_column() -> None:
    res = CliRunner().invoke(app, ["compare-strategies", "-f", str(EXAMPLES / "cape-town-lp.yaml"), "--days", "1",
                                   "-s", "self_consumption", "-s", "backup", "--voll", "80"],
                             env={"COLUMNS": "250"})
    assert res.exit_code == 0, res.output
    assert "+ lost load" in res.output
    rows = compare_strategies(load_home(EXAMPLES / "cape-town-lp.yaml"), ["self_consumption", "backup"],
                              until_s=86400, voll_per_kwh=80.0)
    for r in rows.values():  # the CLI prints each strategy's priced cost (same deterministic runs)
        assert f"{r['cost_with_lost_load']:,.2f}" in res.output
