"""The runtime's settings (hometwin.runtime.settings): one typed object, checked, read by the commands."""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import pytest

from hometwin.runtime.settings import DEFAULTS, RuntimeSettings, describe


@pytest.mark.parametrize("field,value,message", [
    ("ahead_steps", 0, r"^ahead_steps: must be >= 1 \(got 0\)$"),
    ("in_flight", 0, r"^in_flight: must be >= 1 \(got 0\)$"),
    ("run_windows", 1025, r"^run_windows: must be in \[1, 1024\] \(got 1025\)$"),
    ("timeout_s", 0.0, r"^timeout_s: must be > 0 \(got 0.0\)$"),
    ("retick_s", 0.05, r"^retick_s: must be >= 0.1 \(got 0.05\)$"),
    ("clock_nice", 20, r"^clock_nice: must be in \[0, 19\] \(got 20\)$"),
    ("state_interval_s", -1.0, r"^state_interval_s: must be >= 0 \(got -1.0\)$"),
    ("ahead_steps", "60", r"^ahead_steps: a number in steps \(got '60'\)$"),
])
def test_a_setting_out_of_range_is_refused_naming_it_and_its_range(field: str, value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RuntimeSettings(**{field: value})


def test_the_settings_are_frozen_and_each_says_its_unit_and_why() -> None:
    assert (DEFAULTS.timeout_s, DEFAULTS.ahead_steps, DEFAULTS.in_flight, DEFAULTS.run_windows, DEFAULTS.retick_s,
            DEFAULTS.clock_nice, DEFAULTS.state_interval_s) == (10.0, 60, 2, 16, 60.0, 10, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        DEFAULTS.timeout_s = 1.0  # type: ignore[misc]
    assert RuntimeSettings(state_interval_s=0.0).state_interval_s == 0.0  # 0: every settle
    for f in dataclasses.fields(RuntimeSettings):
        d = describe(f.name)
        assert d["unit"] and len(d["why"]) > 40, f.name


def test_the_commands_flags_keep_their_defaults_and_ranges() -> None:
    from hometwin.runtime import cli
    from hometwin.runtime.launcher import Launcher

    def flags(fn: Any) -> dict[str, tuple[Any, Any, Any]]:
        return {n: (p.default.default, p.default.min, p.default.max)
                for n, p in inspect.signature(fn).parameters.items()}

    up, service, clock = flags(cli.up), flags(cli.service), flags(cli.clock)
    assert up["timeout"] == service["timeout"] == (10.0, None, None)
    assert up["ahead_steps"] == service["ahead_steps"] == (60, 1, None)
    assert up["in_flight"] == clock["in_flight"] == (2, 1, None)
    assert up["run_windows"] == clock["run_windows"] == (16, 1, 1024)
    assert up["retick"] == (None, 0.1, None) and clock["retick"] == (60.0, 0.1, None)
    assert up["clock_nice"] == (10, 0, 19) and clock["nice"] == (0, 0, 19)
    assert up["state_interval"] == service["state_interval"] == (None, 0, None)
    launcher = {f.name: f.default for f in dataclasses.fields(Launcher)}
    assert (launcher["timeout_s"], launcher["ahead_steps"], launcher["in_flight"], launcher["run_windows"],
            launcher["clock_nice"]) == (10.0, 60, 2, 16, 10)
