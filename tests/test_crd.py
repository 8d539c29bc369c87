"""The CRD: structural (what the API server demands) and in agreement with the pydantic spec."""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any, Iterator

import jsonschema
import kubernetes_validate
import pytest
import yaml
from typer.testing import CliRunner

from hometwin.cli import app
from hometwin.operator.crd import MAX_ELEMENTS, PRESERVE, RULES, crd, crd_yaml, openapi_schema
from hometwin.registry import KINDS, element_class
from hometwin.spec import SpecError, json_schema, parse_home

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples" / "homes").glob("*.yaml"))
BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength",
          "minItems", "maxItems", "pattern", "enum")


def walk(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, child in (node.get("properties") or {}).items():
        yield from walk(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}{{}}")


def test_crd_is_valid_and_structural() -> None:
    kubernetes_validate.validate(crd(), kubernetes_validate.latest_version(), strict=True)
    version = crd()["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"]] == ["Phase", "Ready", "Simulated", "Net W", "Age"]
    for path, node in walk(openapi_schema()):
        # Structural schema rules (apiextensions v1): a type everywhere, unless int-or-string
        # or preserve-unknown-fields; no references, junctors or JSON-Schema-only keywords.
        assert node.get("type") or node.get("x-kubernetes-int-or-string") or node.get(PRESERVE), path
        assert not {"$ref", "$defs", "anyOf", "oneOf", "allOf", "not", "const", "patternProperties",
                    "propertyNames", "discriminator", "prefixItems"} & set(node), path
        assert not ("properties" in node and "additionalProperties" in node), path
        assert node.get("additionalProperties") is not False, path
        for key in ("exclusiveMinimum", "exclusiveMaximum"):
            assert node.get(key, True) is True, path  # OpenAPI 3.0: booleans
        if "default" in node:
            assert node["default"] is not None, path


def _pydantic_nodes() -> dict[str, dict[str, Any]]:
    """Every pydantic schema node by path, refs resolved, ``null`` options removed (config skipped)."""
    schema = json_schema()
    defs = schema.pop("$defs")

    def resolve(node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            node = defs[node["$ref"].rsplit("/", 1)[-1]] | {k: v for k, v in node.items() if k != "$ref"}
        if "anyOf" in node:
            options = [resolve(o) for o in node["anyOf"] if o.get("type") != "null"]
            if len(options) == 1:
                node = options[0] | {k: v for k, v in node.items() if k != "anyOf"}
        return node

    out: dict[str, dict[str, Any]] = {}

    def visit(node: dict[str, Any], path: str) -> None:
        node = resolve(node)
        out[path] = node
        if "oneOf" in node:  # the element union: every variant's common fields
            variants = [resolve(v) for v in node["oneOf"]]
            out[path] = {"type": "object", "variants": variants, "required": variants[0].get("required", [])}
            for name, child in variants[0]["properties"].items():
                if name not in ("config", "kind"):
                    visit(child, f"{path}.{name}")
            return
        for name, child in (node.get("properties") or {}).items():
            visit(child, f"{path}.{name}")
        if isinstance(node.get("items"), dict):
            visit(node["items"], f"{path}[]")
        for child in (node.get("patternProperties") or {}).values():
            visit(child, f"{path}{{}}")

    visit(schema["properties"]["spec"], ".spec")
    return out


def test_crd_and_pydantic_schema_agree() -> None:
    crd_nodes = dict(walk(openapi_schema()["properties"]["spec"], ".spec"))
    py_nodes = _pydantic_nodes()
    crd_paths = {p for p in crd_nodes if not p.startswith(".spec.elements[].config") and p != ".spec.elements[].kind"}
    assert crd_paths == set(py_nodes)
    for path, py in py_nodes.items():
        ours = crd_nodes[path]
        if "anyOf" in py:  # a real union (e.g. str | int duration)
            types = {o.get("type") for o in py["anyOf"] if o.get("type") != "null"}
            assert types == {"string", "integer"} and ours.get("x-kubernetes-int-or-string"), path
            continue
        assert ours.get("type") == py.get("type"), path
        assert set(ours.get("required", [])) == set(py.get("required", [])), path
        for bound in BOUNDS:
            expected = py.get(bound)
            if path == ".spec.elements" and bound == "maxItems":
                expected = min(expected or MAX_ELEMENTS, MAX_ELEMENTS)  # the CRD's bound until the spec has its own
            if bound == "enum" and "const" in py:
                expected = [py["const"]]
            if bound.startswith("exclusive") and bound in py:
                assert ours[bound] is True and ours["minimum" if "Min" in bound else "maximum"] == py[bound], path
                continue
            assert ours.get(bound) == expected, f"{path}: {bound}"
        if py.get("description"):
            assert ours.get("description") == py["description"], path
    # The element union: every registered kind; config is checked below.
    item = crd_nodes[".spec.elements[]"]
    assert item["properties"]["kind"]["enum"] == [v["properties"]["kind"]["const"] for v in py_nodes[".spec.elements[]"]["variants"]]
    assert set(item["properties"]["kind"]["enum"]) == set(KINDS)
    assert crd_nodes[".spec.elements"]["maxItems"] == MAX_ELEMENTS


#: The CRD's schema, built once (openapi_schema() builds it from the pydantic models at each call):
#: the tests only read it.
SCHEMA = openapi_schema()


@functools.cache
def _crd_validator() -> jsonschema.Draft4Validator:
    return jsonschema.Draft4Validator(SCHEMA)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_example_passes_both_schemas(path: Path) -> None:
    doc = json.loads(json.dumps(yaml.safe_load(path.read_text()), default=str))
    parse_home(doc)
    assert list(_crd_validator().iter_errors(doc)) == []


@pytest.mark.parametrize("edit", [
    lambda d: d["spec"]["location"].update(latitude=123),
    lambda d: d["spec"]["clock"].update(step_s=0),
    lambda d: d["spec"]["elements"][0].update(kind="toaster"),
    lambda d: d["spec"]["elements"][0].update(name="Bad_Name"),
    lambda d: d["spec"].update(deployment={"resources": {"limits": {"cpu": "lots"}}}),
], ids=["latitude", "step", "kind", "name", "quantity"])
def test_what_the_crd_refuses_pydantic_refuses_too(edit: Any) -> None:
    doc = json.loads(json.dumps(yaml.safe_load(EXAMPLES[0].read_text()), default=str))
    edit(doc)
    assert list(_crd_validator().iter_errors(doc))
    with pytest.raises(SpecError):
        parse_home(copy.deepcopy(doc))


def test_hometwin_crd_prints_the_crd() -> None:
    result = CliRunner().invoke(app, ["crd"])
    assert result.exit_code == 0, result.output
    assert result.output == crd_yaml()
    assert yaml.safe_load(result.output) == crd()


# -- what the API server checks: the schema, its CEL rules, strict field validation -------------------

ITEM = SCHEMA["properties"]["spec"]["properties"]["elements"]["items"]


@functools.cache
def _cel(rule: str) -> Any:
    import celpy

    env = celpy.Environment()
    return env.program(env.compile(rule))


#: (rule, the value as JSON) → whether the rule holds.  CEL is a pure function of ``self``: the
#: examples, the bad configs (each cape-town with one edit) and the kinds' configs share most of
#: their elements, and cel-python's interpreter is slow (~5,400 evaluations of a few ms per run
#: before this memo): each distinct element meets each rule once.
_CEL_HOLDS: dict[tuple[str, str], bool] = {}


def _cel_holds(rule: str, value: Any, as_json: str) -> bool:
    import celpy

    key = (rule, as_json)
    if key not in _CEL_HOLDS:
        try:
            result = _cel(rule).evaluate({"self": celpy.json_to_cel(value)})
        except celpy.CELEvalError as exc:  # e.g. a required tag missing: the API server refuses too
            result = exc
        _CEL_HOLDS[key] = isinstance(result, celpy.celtypes.BoolType) and bool(result)
    return _CEL_HOLDS[key]


def cel_failures(schema: dict[str, Any], value: Any, path: str = "") -> list[str]:
    """Every ``x-kubernetes-validations`` rule on the way down ``value``, evaluated as the API
    server does (``self`` = the value at the rule's node); the messages of those that fail."""
    out = []
    rules = schema.get(RULES, [])
    as_json = json.dumps(value) if rules else ""  # (key order kept: distinct orders evaluated apart)
    for rule in rules:
        if not _cel_holds(rule["rule"], value, as_json):
            out.append(f"{path}: {rule['message']}")
    if isinstance(value, dict):
        for name, child in value.items():
            sub = (schema.get("properties") or {}).get(name) or schema.get("additionalProperties")
            if isinstance(sub, dict):
                out += cel_failures(sub, child, f"{path}.{name}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, child in enumerate(value):
            out += cel_failures(schema["items"], child, f"{path}[{i}]")
    return out


def unknown_fields(schema: dict[str, Any], value: Any, path: str = "") -> list[str]:
    """Fields the schema does not declare (the API server prunes them; kubectl's strict field
    validation, its default, refuses the object naming them)."""
    out = []
    if isinstance(value, dict) and not schema.get(PRESERVE):
        props = schema.get("properties")
        for name, child in value.items():
            if props is not None and name not in props:
                out.append(f"{path}.{name}: unknown field")
            elif props is not None:
                out += unknown_fields(props[name], child, f"{path}.{name}")
            elif isinstance(schema.get("additionalProperties"), dict):
                out += unknown_fields(schema["additionalProperties"], child, f"{path}.{name}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, child in enumerate(value):
            out += unknown_fields(schema["items"], child, f"{path}[{i}]")
    return out


def _with_null(node: Any) -> Any:
    """OpenAPI's ``nullable: true`` as JSON Schema (``type: [t, "null"]``), for jsonschema."""
    if isinstance(node, list):
        return [_with_null(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: v if k == "enum" else _with_null(v) for k, v in node.items()}
    if node.get("nullable") is True and isinstance(node.get("type"), str):
        out["type"] = [node["type"], "null"]
        if "enum" in node:
            out["enum"] = [*node["enum"], None]
    return out


_NULLABLE_VALIDATORS: dict[int, tuple[Any, jsonschema.Draft4Validator]] = {}


def _nullable_validator(schema: dict[str, Any]) -> jsonschema.Draft4Validator:
    """The validator of ``_with_null(schema)``, built once per schema (the whole CRD or its element)."""
    hit = _NULLABLE_VALIDATORS.get(id(schema))
    if hit is None or hit[0] is not schema:
        hit = _NULLABLE_VALIDATORS[id(schema)] = (schema, jsonschema.Draft4Validator(_with_null(schema)))
    return hit[1]


def refusals(schema: dict[str, Any], doc: Any) -> list[str]:
    """What the API server (with kubectl's strict field validation) says about ``doc``."""
    errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
              for e in _nullable_validator(schema).iter_errors(doc)]
    return errors + unknown_fields(schema, doc) + cel_failures(schema, doc)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_example_passes_the_api_server_checks(path: Path) -> None:
    doc = json.loads(json.dumps(yaml.safe_load(path.read_text()), default=str))
    assert refusals(SCHEMA, doc) == []


def _union_variants(annotation: Any) -> list[type]:
    """The pydantic models a (possibly optional) discriminated union field may hold."""
    import typing

    from pydantic import BaseModel

    out: list[type] = []
    for arg in typing.get_args(annotation) or ():
        if isinstance(arg, type) and issubclass(arg, BaseModel) and "type" in arg.model_fields:
            out.append(arg)
        else:
            out += _union_variants(arg)
    return out


def _configs(kind: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """A kind's full default config (every field written out), and one per variant of each of its
    tagged unions (tariffs, strategies, weather sources) that has defaults for all its fields."""
    from pydantic import ValidationError

    config_cls = element_class(kind).Config
    base = config_cls().model_dump(mode="json")
    yield "defaults", base
    for name, info in config_cls.model_fields.items():
        for variant in _union_variants(info.annotation):
            try:
                value = variant().model_dump(mode="json")
            except ValidationError:
                continue  # needs a field without default (a file): the examples cover those
            yield f"{name}={value['type']}", base | {name: value}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kinds_full_config_passes_the_crd(kind: str) -> None:
    """The merged config admits each kind's every field at its default, for each union variant:
    the CRD never refuses what the kind's model accepts."""
    seen = 0
    for label, config in _configs(kind):
        element_class(kind).Config.model_validate(config)  # what the pods accept
        element = {"name": "x", "kind": kind, "config": config}
        assert refusals(ITEM, element) == [], f"{kind} {label}"
        seen += 1
    assert seen >= 1


CAPE_TOWN = Path(__file__).resolve().parents[1] / "examples" / "homes" / "cape-town.yaml"
_KINDS_THERE = [e["kind"] for e in yaml.safe_load(CAPE_TOWN.read_text())["spec"]["elements"]]
BATTERY, GRID = _KINDS_THERE.index("battery"), _KINDS_THERE.index("grid")


@pytest.mark.parametrize("edit, says", [
    (lambda d: d["spec"]["elements"][BATTERY]["config"].update(power_w=100),
     "config.power_w is a field of kind scheduled_load, oven, tv, kettle, lights, fridge, base_load only"),
    (lambda d: d["spec"]["elements"][BATTERY]["config"].update(capacity_kwh="ten"), "'ten' is not of type 'number'"),
    (lambda d: d["spec"]["elements"][BATTERY]["config"].update(capacity_kwhh=10), "capacity_kwhh: unknown field"),
    (lambda d: d["spec"]["elements"][BATTERY]["config"].update(capacity_kwh=-1), "-1 is less than or equal to the minimum of 0"),
    (lambda d: d["spec"]["elements"][GRID]["config"]["tariff"].update(file="prices.csv"),
     "file is a field of type series only"),
    (lambda d: d["spec"]["elements"][GRID]["config"]["tariff"].update(type="nordpool"), "'nordpool' is not one of"),
    (lambda d: d["spec"]["elements"][GRID]["config"]["tariff"].pop("type"), "'type' is a required property"),
    (lambda d: d["spec"]["elements"][GRID].update(kind="battery"),
     "config.tariff is a field of kind grid only"),
], ids=["foreign-field", "wrong-type", "unknown-field", "out-of-range", "foreign-variant-field", "unknown-tag",
        "no-tag", "wrong-kind"])
def test_the_crd_refuses_a_bad_config_and_so_does_the_operator(edit: Any, says: str) -> None:
    doc = json.loads(json.dumps(yaml.safe_load(CAPE_TOWN.read_text()), default=str))
    edit(doc)
    found = refusals(SCHEMA, doc)
    assert any(says in line for line in found), found
    with pytest.raises(SpecError):  # the operator's own check (pydantic) refuses it too
        parse_home(copy.deepcopy(doc))


def test_the_crd_bounds_the_element_count() -> None:
    doc = json.loads(json.dumps(yaml.safe_load(CAPE_TOWN.read_text()), default=str))
    template = doc["spec"]["elements"][-1]
    doc["spec"]["elements"] += [dict(template, name=f"extra-{i}") for i in range(MAX_ELEMENTS)]
    assert [e.message for e in _crd_validator().iter_errors(doc)] == \
        [f"{doc['spec']['elements']!r} is too long"]
    doc["spec"]["elements"] = doc["spec"]["elements"][:MAX_ELEMENTS]
    assert list(_crd_validator().iter_errors(doc)) == []


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_the_merged_config_is_never_tighter_than_a_kinds_own(kind: str) -> None:
    """Field by field: the CRD's type, range and enum admit everything the kind's model admits
    (e.g. power_w: the oven needs > 0, base_load admits 0, so the CRD's bound is minimum 0)."""
    schema = element_class(kind).Config.model_json_schema()
    merged = ITEM["properties"]["config"]["properties"]
    for name, prop in schema["properties"].items():
        options = [o for o in prop.get("anyOf", [prop]) if o.get("type") != "null"]
        ours = merged[name]
        if "type" not in ours or len(options) != 1:
            continue  # untyped (admits anything) or a union checked through the examples
        (py,) = options
        if "type" not in py:
            continue  # a $ref: an object, checked by test_every_kinds_full_config_passes_the_crd
        assert ours["type"] == py["type"] or {ours["type"], py["type"]} == {"number", "integer"}, name
        for bound, loose in (("minimum", min), ("maximum", max)):
            if bound in ours:
                exclusive = "exclusiveMinimum" if bound == "minimum" else "exclusiveMaximum"
                theirs = py.get(bound, py.get(exclusive))
                assert theirs is not None and loose(ours[bound], theirs) == ours[bound], f"{name}: {bound}"
                if ours.get(exclusive):
                    assert exclusive in py and py[exclusive] == ours[bound], f"{name}: {exclusive}"
        if "enum" in ours:
            assert set(py.get("enum", [py.get("const")])) <= set(ours["enum"]), name
    power = merged["power_w"]
    assert power["minimum"] == 0 and "exclusiveMinimum" not in power  # base_load admits 0 W
