"""Home spec validation: good files pass, every bad value gives a clear one-line error."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from hometwin.cli import app
from hometwin.spec import SpecError, json_schema, load_home, parse_home
from conftest import EXAMPLES
from homes import INVERTER, PV, SUN, WEATHER, battery, grid, home_doc, load

runner = CliRunner()
LINE = re.compile(r"^[\w\[\].()-]+(\.[\w\[\]]+)*: .+")


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_validates(path):
    home = load_home(path)
    assert home.kind == "Home" and home.apiVersion == "hometwin.io/v1alpha1"


def doc_with_battery(**cfg):
    return home_doc([SUN, WEATHER, PV, battery(**cfg), INVERTER, grid(), load()])


def test_error_names_index_field_bound_and_value():
    with pytest.raises(SpecError) as exc:
        parse_home(doc_with_battery(capacity_kwh=-5))
    assert exc.value.errors == ["elements[3].config.capacity_kwh: must be > 0 and <= 10000 (got -5)"]


def test_all_problems_are_reported_at_once():
    doc = doc_with_battery(capacity_kwh=-5, charge_efficiency=1.4, bogus=1)
    doc["spec"]["location"]["latitude"] = 123
    doc["spec"]["elements"].append({"name": "Bad_Name", "kind": "oven"})
    doc["spec"]["elements"].append({"name": "x", "kind": "toaster"})
    with pytest.raises(SpecError) as exc:
        parse_home(doc)
    text = "\n".join(exc.value.errors)
    assert "location.latitude: must be >= -90 and <= 90 (got 123)" in text
    assert "elements[3].config.capacity_kwh: must be > 0" in text
    assert "elements[3].config.charge_efficiency: must be > 0 and <= 1 (got 1.4)" in text
    assert re.search(r"elements\[3\]\.config\.bogus: unknown field \(allowed: capacity_kwh, soc_min", text)
    assert "elements[7].name: string should match pattern" in text
    assert re.search(r"elements\[8\]\.kind: unknown kind 'toaster' \(allowed: .*battery.*oven", text)
    assert len(exc.value.errors) >= 6


def test_cross_field_and_roster_problems():
    doc = home_doc([SUN, PV, dict(INVERTER), dict(INVERTER), grid(), load(), load()])
    with pytest.raises(SpecError) as exc:
        parse_home(doc)
    text = "\n".join(exc.value.errors)
    assert "duplicate name 'inverter'" in text
    assert "duplicate name 'house'" in text
    assert "at most one element of kind 'inverter'" in text
    assert re.search(r"a 'pv' needs signals .* no element of this home provides \(add: weather\)", text)


def test_clock_needs_end_or_duration_and_a_real_timezone():
    doc = home_doc([SUN, WEATHER, INVERTER, grid(), load()])
    doc["spec"]["clock"].pop("duration")
    doc["spec"]["location"]["timezone"] = "Mars/Olympus"
    with pytest.raises(SpecError) as exc:
        parse_home(doc)
    text = "\n".join(exc.value.errors)
    assert "give exactly one of clock.end or clock.duration" in text
    assert "unknown time zone 'Mars/Olympus'" in text


def test_yaml_syntax_error_names_line(tmp_path: Path):
    p = tmp_path / "bad.yaml"
    p.write_text("apiVersion: hometwin.io/v1alpha1\nkind: Home\nmetadata: {name: x\n")
    with pytest.raises(SpecError) as exc:
        load_home(p)
    assert re.match(rf"{re.escape(str(p))}:\d+:\d+: YAML syntax error", exc.value.errors[0])


def test_cli_validate_exits_2_with_every_problem_and_runs_nothing(tmp_path: Path):
    doc = doc_with_battery(capacity_kwh=-5, soc_min=2)
    p = tmp_path / "home.yaml"
    p.write_text(yaml.safe_dump(doc))
    out = tmp_path / "out"
    for args in (["validate", "-f", str(p)], ["run", "-f", str(p), "--out", str(out), "-q"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        assert "elements[3].config.capacity_kwh: must be > 0" in result.output
        assert "elements[3].config.soc_min: must be >= 0 and < 1 (got 2)" in result.output
        assert "Traceback" not in result.output
    assert not out.exists()


def test_schema_command_exports_json_schema():
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0
    schema = json.loads(result.output)
    assert schema == json.loads(json.dumps(json_schema()))
    assert schema["title"] == "Home"
    assert "battery" in json.dumps(schema)


# -- property-based: any out-of-range value in any numeric field gives one clear line ----------------

def _numeric_fields():
    """(kind, field, lower-bound-violating value, upper-bound-violating value) from the real models."""
    from hometwin.registry import KINDS, element_class

    out = []
    for kind in sorted(KINDS):
        for fname, info in element_class(kind).Config.model_fields.items():
            bounds = {}
            for meta in info.metadata:
                for attr in ("gt", "ge", "lt", "le"):
                    if getattr(meta, attr, None) is not None:
                        bounds[attr] = getattr(meta, attr)
            if bounds:
                out.append((kind, fname, bounds))
    return out


NUMERIC = _numeric_fields()


def test_there_are_many_bounded_fields():
    assert len(NUMERIC) > 30


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(NUMERIC), st.floats(min_value=1e-6, max_value=1e6), st.booleans())
def test_out_of_range_value_gives_clear_error_never_a_traceback(field, excess, above):
    kind, fname, bounds = field
    if above and ("lt" in bounds or "le" in bounds):
        value = (bounds.get("lt", bounds.get("le"))) + excess
    elif "gt" in bounds or "ge" in bounds:
        value = (bounds.get("gt", bounds.get("ge"))) - excess
    else:
        value = (bounds.get("lt", bounds.get("le"))) + excess
    elements = [SUN, WEATHER, INVERTER, grid(), {"name": "dut", "kind": kind, "config": {fname: value}}]
    if kind == "inverter":
        elements = [SUN, WEATHER, {"name": "dut", "kind": kind, "config": {fname: value}}, grid()]
    if kind == "grid":
        elements = [SUN, WEATHER, INVERTER, {"name": "dut", "kind": kind, "config": {fname: value}}]
    with pytest.raises(SpecError) as exc:
        parse_home(home_doc(elements))
    ours = [e for e in exc.value.errors if f".config.{fname}" in e]
    assert ours, exc.value.errors
    assert re.search(r": must be (an integer |a number )?[<>]=? ", ours[0]), ours[0]
    assert "got" in ours[0]


@settings(max_examples=60, deadline=None)
@given(st.one_of(st.text(max_size=8), st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)))
def test_wrong_types_give_errors_not_tracebacks(value):
    doc = doc_with_battery(capacity_kwh=value)
    try:
        parse_home(doc)
    except SpecError as exc:
        assert any(e.startswith("elements[3].config.capacity_kwh: ") for e in exc.errors), exc.errors


def test_nested_union_tags_are_not_part_of_the_path():
    doc = home_doc([SUN, WEATHER, INVERTER,
                    grid(tariff={"type": "series", "unit": "per_mwh", "bogus": 1},
                         export_tariff={"type": "flat", "price_per_kwh": "cheap"}),
                    {"name": "w2", "kind": "weather", "config": {"source": {"type": "stochastic", "cloud_cover_mean": 2}}}])
    with pytest.raises(SpecError) as exc:
        parse_home(doc)
    text = "\n".join(exc.value.errors)
    assert "elements[3].config.tariff.file: required field is missing" in text
    assert re.search(r"elements\[3\]\.config\.tariff\.bogus: unknown field \(allowed: type, file, ", text)
    assert "elements[3].config.export_tariff.price_per_kwh: must be a number >= -100000.0 and <= 100000.0 (got 'cheap')" in text
    assert "elements[4].config.source.cloud_cover_mean: must be >= 0.05 and <= 0.95 (got 2)" in text
    assert ".series." not in text and ".stochastic." not in text and ".flat." not in text


def test_runtime_set_errors_use_the_same_format():
    from hometwin.element import InvalidProperty
    from hometwin.services.battery.model import Battery
    from conftest import make_ctx

    b = Battery("battery", {}, make_ctx())
    with pytest.raises(InvalidProperty) as exc:
        b.set(charge_power_kw=-1)
    assert exc.value.errors == ["charge_power_kw: must be > 0 and <= 10000 (got -1)"]
    with pytest.raises(InvalidProperty, match=r"capacity_kwh: not a settable property \(allowed: "):
        b.set(capacity_kwh=3)


def _float_fields():
    """(kind, field) of every element config field that takes a number with a fraction."""
    import types
    import typing

    from hometwin.registry import KINDS, element_class

    def takes_float(ann) -> bool:  # float, or float | None (not a list of them)
        return ann is float or (typing.get_origin(ann) in (typing.Union, types.UnionType) and float in typing.get_args(ann))

    return [(kind, fname) for kind in sorted(KINDS)
            for fname, info in element_class(kind).Config.model_fields.items() if takes_float(info.annotation)]


FLOATS = _float_fields()


def test_there_are_many_float_fields():
    assert len(FLOATS) > 50


@pytest.mark.parametrize("text", [".inf", "-.inf", ".nan"])
@pytest.mark.parametrize("kind,fname", FLOATS, ids=lambda v: str(v))
def test_inf_and_nan_are_refused_in_every_number_field(kind, fname, text):
    """A YAML ``.inf``/``.nan`` in any element's number field (all of them): one line naming the field."""
    dut = {"name": "dut", "kind": kind, "config": {fname: "@"}}
    elements = {"inverter": [SUN, WEATHER, dut, grid()], "grid": [SUN, WEATHER, INVERTER, dut]}.get(
        kind, [SUN, WEATHER, INVERTER, grid(), dut])
    doc = yaml.safe_dump(home_doc(elements)).replace("'@'", text)  # YAML's own spelling, as a user types it
    with pytest.raises(SpecError) as exc:
        parse_home(yaml.safe_load(doc))
    where = f"elements[{elements.index(dut)}].config.{fname}: "
    ours = [e for e in exc.value.errors if e.startswith(where)]
    assert ours and "must be a finite number" in ours[0] and "got" in ours[0], exc.value.errors


def test_inf_is_refused_in_nested_models_and_runtime_sets():
    from hometwin.element import InvalidProperty
    from hometwin.services.battery.model import Battery
    from conftest import make_ctx

    doc = home_doc([SUN, WEATHER, INVERTER, grid(tariff={"type": "flat", "price_per_kwh": float("inf")})])
    with pytest.raises(SpecError) as exc:
        parse_home(doc)
    assert "elements[3].config.tariff.price_per_kwh: must be a finite number" in "\n".join(exc.value.errors)
    b = Battery("battery", {}, make_ctx())
    with pytest.raises(InvalidProperty, match=r"soc_min: must be a finite number .*\(got nan\)"):
        b.set(soc_min=float("nan"))
