"""Bad specs are refused fast, small and clearly (issue 18, "Confined inputs").

Every case below is a spec (or a runtime ``set``, or a CLI flag) an attacker or a typo could
give: YAML alias bombs, bools and strings for numbers, huge and non-finite values, data files
outside the spec's folder, devices, FIFOs, symlinks pointing out, huge element counts, dates
out of range, inf in a price file.  Each must be refused with one line per problem naming the
field, within 1 s of CPU time and 200 MiB of peak allocation (the issue's acceptance bound;
CPU time, not wall time, so a loaded machine does not fail it).
"""

from __future__ import annotations

import copy
import gc
import math
import os
import time
import tracemalloc
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from conftest import EXAMPLES
from hometwin.cli import app
from hometwin.datafiles import ENV_DATA_ROOT, MAX_DATA_FILE_BYTES
from hometwin.element import InvalidProperty
from hometwin.engine import build_element
from hometwin.spec import SpecError, check_setup, home_context, load_home, parse_home

CPU_S = 1.0
PEAK_B = 200 * 2**20
SETTINGS = settings(max_examples=25, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
BASE = yaml.safe_load((EXAMPLES / "minimal.yaml").read_text())
SECRET = "HOMETWIN_TEST_SECRET_7f3a"  # in the environment: /proc/self/environ would show it
os.environ.setdefault("HOMETWIN_TEST_SECRET", SECRET)
check_setup(parse_home(copy.deepcopy(BASE)))  # build models, import libraries: the first call pays


@pytest.fixture(autouse=True, scope="module")
def _frozen_heap() -> Any:
    """What the test run made before this module is set aside from the collector (gc.freeze), so
    that :func:`refused`'s gc.collect scans what this module makes, not the heap of the whole run
    (in a full run that heap made each example ~3 times slower)."""
    gc.collect()
    gc.freeze()
    yield
    gc.unfreeze()


def refused(fn: Callable[[], Any], exc_type: type[Exception] = SpecError) -> list[str]:
    """Run ``fn``, which must raise ``exc_type``; its problem lines, after checking the bounds."""
    gc.collect()
    tracemalloc.start()
    t0 = time.process_time()
    try:
        fn()
    except exc_type as exc:
        errors = list(getattr(exc, "errors", [str(exc)]))
    else:
        pytest.fail("accepted")
    finally:
        cpu = time.process_time() - t0
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert cpu < CPU_S, f"{cpu:.2f} s of CPU to refuse it"
    assert peak < PEAK_B, f"{peak / 2**20:.0f} MiB to refuse it"
    assert errors and all(e and "\n" not in e and len(e) < 500 for e in errors), errors
    return errors


def doc(**spec: Any) -> dict[str, Any]:
    d = copy.deepcopy(BASE)
    d["spec"].update(spec)
    return d


def element(d: dict[str, Any], name: str) -> dict[str, Any]:
    return next(e for e in d["spec"]["elements"] if e["name"] == name)


# -- YAML alias bombs ----------------------------------------------------------------------------

def bomb(depth: int, width: int = 8) -> str:
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, depth + 1):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return "\n".join(lines)


@SETTINGS
@given(depth=st.integers(1, 12), where=st.sampled_from(["timezone", "metadata", "config"]))
def test_alias_bombs_are_refused_where_they_stand(tmp_path: Path, depth: int, where: str) -> None:
    text = (EXAMPLES / "minimal.yaml").read_text()
    defs = "\n".join("  " + line for line in bomb(depth).splitlines())
    if where == "timezone":
        text = text.replace("timezone: Europe/Berlin", f"timezone: *a{depth}")
    elif where == "metadata":
        text = text.replace("  name: minimal", f"  name: minimal\n  extra: *a{depth}")
    else:
        text = text.replace("config: {power_w: 350}", f"config: {{power_w: 350, bogus: *a{depth}}}")
    path = tmp_path / "bomb.yaml"
    path.write_text(f"x-anchors:\n{defs}\n" + text)
    errors = refused(lambda: load_home(path))
    assert len(errors) == 1 and "aliases (*name) are not allowed" in errors[0]
    assert errors[0].startswith(f"{path}:3:")  # the first alias, line and column


def test_deep_nesting_and_huge_free_form_metadata_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("a: " + "[" * 5000 + "]" * 5000 + "\n")
    assert "YAML syntax error: nested more than 64 levels deep" in refused(lambda: load_home(path))[0]
    path.write_text("a:\n" + "".join(" " * i + "- \n" for i in range(1, 400)))
    assert "nested more than 64 levels deep" in refused(lambda: load_home(path))[0]
    d = doc()
    d["metadata"]["annotations"] = {f"k{i}": "v" for i in range(20_000)}
    assert refused(lambda: parse_home(d)) == ["metadata: metadata.annotations: more than 10000 items"]
    nested: Any = "x"
    for _ in range(30):
        nested = [nested]
    d = doc()
    d["metadata"]["extra"] = nested
    assert "nested more than 20 levels deep" in refused(lambda: parse_home(d))[0]


# -- bools, strings, huge and non-finite values for numbers ----------------------------------------

NUMBER_FIELDS = [  # (where in the document, the line's field)
    (("spec", "location", "latitude"), "location.latitude"),
    (("spec", "clock", "step_s"), "clock.step_s"),
    (("spec", "clock", "seed"), "clock.seed"),
    (("spec", "elements", 2, "config", "capacity_kwp"), "elements[2].config.capacity_kwp"),
    (("spec", "elements", 3, "config", "ac_power_kw"), "elements[3].config.ac_power_kw"),
    (("spec", "elements", 4, "config", "tariff", "price_per_kwh"), "elements[4].config.tariff.price_per_kwh"),
    (("spec", "elements", 5, "config", "power_w"), "elements[5].config.power_w"),
]


def put(d: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    node = d
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return d


@SETTINGS
@given(field=st.sampled_from(NUMBER_FIELDS),
       value=st.one_of(st.booleans(), st.sampled_from(["2400", "1e3", " 5", "0x10", "nan", "inf"]),
                       st.integers(-10**6, 10**6).map(str)))
def test_bools_and_strings_are_not_numbers(field: tuple[Any, str], value: Any) -> None:
    path, name = field
    errors = refused(lambda: parse_home(put(doc(), path, value)))
    assert len(errors) == 1 and errors[0].startswith(f"{name}: must be a") and "(got " in errors[0], errors


@SETTINGS
@given(field=st.sampled_from(NUMBER_FIELDS),
       value=st.one_of(st.sampled_from([math.inf, -math.inf, math.nan, 1e308, -1e308, 2**200]),
                       st.floats(1e10, 1e300), st.floats(-1e300, -1e10)))
def test_huge_and_non_finite_numbers_are_refused(field: tuple[Any, str], value: Any) -> None:
    path, name = field
    errors = refused(lambda: parse_home(put(doc(), path, value)))
    assert len(errors) == 1 and errors[0].startswith(f"{name}: must be"), errors


@pytest.mark.parametrize("config, line", [
    ({"power_w": 1e300}, "elements[5].config.power_w: must be >= 0 and <= 1000000.0 (got 1e+300)"),
    ({"power_w": 300, "hourly_profile_w": [1e300] * 24}, "elements[5].config: hourly_profile_w[0]: must be at most 1e+09"),
])
def test_unbounded_config_numbers_meet_the_backstop(config: dict[str, Any], line: str) -> None:
    d = doc()
    element(d, "house")["config"] = config
    assert refused(lambda: parse_home(d))[0].startswith(line)


@SETTINGS
@given(size=st.integers(10**3, 10**6), where=st.sampled_from(["timezone", "timer", "name", "currency"]))
def test_long_strings_are_refused_in_one_short_line(size: int, where: str) -> None:
    d = doc()
    if where == "timezone":
        d["spec"]["location"]["timezone"] = "Europe/" + "x" * size
    elif where == "timer":
        element(d, "house").update(kind="oven", config={"timers": [{"start": "1" * size, "end": "10:00"}]})
    elif where == "name":
        element(d, "house")["name"] = "a" * size
    else:
        element(d, "grid")["config"]["currency"] = ["EUR"] * size
    errors = refused(lambda: parse_home(d))
    assert len(errors) == 1 and len(errors[0]) < 400, errors


# -- durations, dates, run size and element counts ----------------------------------------------

@SETTINGS
@given(clock=st.one_of(
    st.builds(lambda y: {"start": f"{y:04d}-06-01T00:00:00", "duration": "2d"},
              st.one_of(st.integers(1, 1899), st.integers(2200, 9999))),
    st.sampled_from([{"duration": d} for d in ["365000d", "1000000w", "P99999999D", "51y", "nan", "1e308"]]),
    st.sampled_from([{"duration": d} for d in [10**12, 2**62, 51 * 366 * 86400]]),
    st.just({"start": "1901-01-01T00:00:00", "end": "2190-01-01T00:00:00", "duration": None}),
    st.just({"duration": f"{40 * 366}d", "step_s": 1})))
def test_durations_dates_and_run_size_are_bounded(clock: dict[str, Any]) -> None:
    d = doc()
    d["spec"]["clock"].update(clock)
    if d["spec"]["clock"].get("duration") is None:
        d["spec"]["clock"].pop("duration", None)
    errors = refused(lambda: parse_home(d))
    assert len(errors) == 1 and errors[0].startswith("clock"), errors
    assert any(word in errors[0] for word in ("years", "not a duration", "steps")), errors


@SETTINGS
@given(n=st.integers(201, 50_000))
def test_huge_element_counts_are_refused_before_validating_them(n: int) -> None:
    d = doc()
    house = element(d, "house")
    d["spec"]["elements"] += [dict(house, name=f"load-{i}") for i in range(n - len(d["spec"]["elements"]))]
    assert refused(lambda: parse_home(d)) == [f"elements: at most 200 elements in a home (got {n})"]


@pytest.mark.parametrize("days", ["nan", "inf", "1e9", "18263", "-1", "0"])
def test_cli_days_finite_and_bounded(days: str) -> None:
    result = CliRunner().invoke(app, ["run", "-f", str(EXAMPLES / "minimal.yaml"), "--days", days])
    assert result.exit_code == 2 and "--days: must be > 0 and at most" in result.output, result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("until", ["365000d", "P99999999D", "1e308s"])
def test_cli_until_bounded(until: str) -> None:
    result = CliRunner().invoke(app, ["run", "-f", str(EXAMPLES / "minimal.yaml"), "--until", until])
    assert result.exit_code == 2 and "--until: " in result.output and "Traceback" not in result.output


# -- data files: confined, regular, bounded, never echoed ------------------------------------------

OUTSIDE = ["/etc/passwd", "../../../../../../etc/passwd", "/dev/zero", "/proc/self/environ", "/etc",
           "link-out.csv", "link-zero.csv", "link-up/passwd"]


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A spec folder with a symlink out, a FIFO, a folder and an oversize (sparse) file."""
    monkeypatch.delenv(ENV_DATA_ROOT, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    (home / "link-out.csv").symlink_to("/etc/passwd")
    (home / "link-zero.csv").symlink_to("/dev/zero")
    (home / "link-up").symlink_to("/etc")
    os.mkfifo(home / "fifo.csv")
    (home / "folder.csv").mkdir()
    with open(home / "huge.csv", "wb") as fh:
        fh.truncate(MAX_DATA_FILE_BYTES + 1)
    return home


def spec_with_profile(folder: Path, file: str) -> Path:
    d = doc()
    element(d, "house")["config"] = {"power_w": 100, "profile": {"file": file}}
    path = folder / "home.yaml"
    path.write_text(yaml.safe_dump(d))
    return path


@SETTINGS
@given(file=st.sampled_from(OUTSIDE))
def test_files_outside_the_spec_folder_are_refused_unread(folder: Path, file: str) -> None:
    home = load_home(spec_with_profile(folder, file))
    errors = refused(lambda: check_setup(home))
    assert len(errors) == 1 and errors[0].startswith("elements[5].config.profile.file: "), errors
    assert "outside the spec's folder" in errors[0] and "root:" not in errors[0] and SECRET not in errors[0]


@pytest.mark.parametrize("file, rule", [("fifo.csv", "not a regular file"), ("folder.csv", "folder"),
                                        ("huge.csv", "more than the limit of 64 MiB"), ("nope.csv", "not found")])
def test_files_inside_must_be_regular_and_bounded(folder: Path, file: str, rule: str) -> None:
    home = load_home(spec_with_profile(folder, file))
    errors = refused(lambda: check_setup(home))
    assert len(errors) == 1 and errors[0].startswith("elements[5] (house): ") and rule in errors[0], errors


def test_a_data_root_allows_a_folder_outside(folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "p.csv").write_text("time,power_w\n2025-01-01 00:00,100\n2025-01-01 12:00,200\n")
    home = load_home(spec_with_profile(folder, "../data/p.csv"))
    assert "outside the spec's folder" in refused(lambda: check_setup(home))[0]
    monkeypatch.setenv(ENV_DATA_ROOT, str(data))
    check_setup(home)  # now allowed


def test_parse_errors_name_the_line_not_the_content(folder: Path) -> None:
    (folder / "bad.csv").write_text(f"time,power_w\n2025-01-01 00:00,{SECRET}\n")
    errors = refused(lambda: check_setup(load_home(spec_with_profile(folder, "bad.csv"))))
    assert "line 2, column 'power_w': the value is not a number" in errors[0] and SECRET not in errors[0]
    (folder / "bad.csv").write_text(f"time,power_w\n{SECRET},1\n")
    errors = refused(lambda: check_setup(load_home(spec_with_profile(folder, "bad.csv"))))
    assert "cannot be parsed" in errors[0] and SECRET not in errors[0]


@pytest.mark.parametrize("value, rule", [("inf", "is not finite"), ("-inf", "is not finite"),
                                         ("1e308", "is outside [-1e+08, 1e+08]")])
def test_validate_refuses_a_price_csv_with_inf(tmp_path: Path, value: str, rule: str) -> None:
    rows = [f"2025-06-{1 + h // 24:02d}T{h % 24:02d}:00:00+02:00,{value if h == 30 else 50.0}" for h in range(24 * 9)]
    (tmp_path / "prices.csv").write_text("time,price\n" + "\n".join(rows) + "\n")
    d = doc()
    element(d, "grid")["config"]["tariff"] = {"type": "series", "file": "prices.csv", "unit": "per_mwh"}
    (tmp_path / "home.yaml").write_text(yaml.safe_dump(d))
    result = CliRunner().invoke(app, ["validate", "-f", str(tmp_path / "home.yaml")])
    assert result.exit_code == 2, result.output
    lines = [line.strip() for line in result.output.splitlines() if line.startswith("  ")]
    assert len(lines) == 1 and lines[0].startswith("elements[4] (grid): price series file ")
    assert "prices.csv" in lines[0] and f"line 32, column 'price': the value {rule}" in lines[0]


def test_a_runtime_set_of_a_file_outside_is_refused_without_its_content(folder: Path) -> None:
    home = parse_home(doc())  # as load_home(folder / "home.yaml") gives it
    home._source_dir = folder
    ctx = home_context(home, 86400)
    house = build_element(home.spec.elements[5], ctx)
    for file in ["/proc/self/environ", "/etc/passwd", "../../../../etc/passwd", "/dev/zero", "link-out.csv"]:
        errors = refused(lambda: house.validated(profile={"file": file}), InvalidProperty)
        assert len(errors) == 1 and errors[0].startswith("profile: profile.file: ") and "outside" in errors[0]
        assert SECRET not in str(errors) and "root:" not in str(errors)
        with pytest.raises(InvalidProperty):
            house.set(profile={"file": file})
        assert house.config.profile is None
    grid = build_element(home.spec.elements[4], ctx)
    errors = refused(lambda: grid.validated(tariff={"type": "series", "file": "/proc/self/environ"}), InvalidProperty)
    assert errors[0].startswith("tariff: tariff.file: '/proc/self/environ' resolves to") and SECRET not in errors[0]
