"""The CRD: structural (what the API server demands) and in agreement with the pydantic spec."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Iterator

import jsonschema
import kubernetes_validate
import pytest
import yaml
from typer.testing import CliRunner

from hometwin.cli import app
from hometwin.operator.crd import PRESERVE, crd, crd_yaml, openapi_schema
from hometwin.registry import KINDS
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
            if bound == "enum" and "const" in py:
                expected = [py["const"]]
            if bound.startswith("exclusive") and bound in py:
                assert ours[bound] is True and ours["minimum" if "Min" in bound else "maximum"] == py[bound], path
                continue
            assert ours.get(bound) == expected, f"{path}: {bound}"
        if py.get("description"):
            assert ours.get("description") == py["description"], path
    # The element union: every registered kind, and config left to the kind's pydantic model.
    item = crd_nodes[".spec.elements[]"]
    assert item["properties"]["kind"]["enum"] == [v["properties"]["kind"]["const"] for v in py_nodes[".spec.elements[]"]["variants"]]
    assert set(item["properties"]["kind"]["enum"]) == set(KINDS)
    assert item["properties"]["config"][PRESERVE] is True


def _crd_validator() -> jsonschema.Draft4Validator:
    return jsonschema.Draft4Validator(openapi_schema())


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
