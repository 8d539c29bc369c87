"""The ``homes.hometwin.io`` CRD, generated from the pydantic Home's JSON Schema.

Kubernetes wants a *structural* OpenAPI v3 schema: no ``$ref``, a ``type`` on every
node, no types inside ``anyOf``/``oneOf``, ``nullable`` instead of ``{"type": "null"}``,
OpenAPI 3.0 boolean ``exclusiveMinimum``.  :func:`structural` translates:

* ``$ref`` → the definition, inlined (sibling ``description`` wins);
* ``anyOf [X, null]`` → ``X`` + ``nullable: true``; ``anyOf [string, integer]`` →
  ``x-kubernetes-int-or-string``; any other union → an untyped node that keeps its
  fields (``x-kubernetes-preserve-unknown-fields``), documented in the description;
* a discriminated union (``oneOf`` by ``type``: tariffs, strategies, weather sources)
  → one object holding every variant's fields, each as loose as the loosest variant
  that has it (:func:`merge`), the tag an enum, and CEL rules
  (``x-kubernetes-validations``) for what a structural schema cannot say: a field
  belongs to these tags only, a tag requires these fields;
* the elements' union (``oneOf`` by ``kind``, the variant part under ``config``) the
  same way, one level up: ``config`` holds the fields of every kind's config, and each
  element carries a rule per field naming the kinds that have it
  (``!has(self.config.capacity_kwh) || self.kind in ['battery']``) and per required
  field.  The API server so refuses a wrong type, a value out of every kind's range,
  or another kind's field; it prunes (or, with kubectl's strict field validation,
  refuses) a field no kind has.  The exact per-kind check stays the operator's (the
  pydantic model), which fails the Home with the reason in its status;
* ``elements`` bounded by ``maxItems`` (:data:`MAX_ELEMENTS`);
* ``const`` → one-value ``enum``; ``patternProperties`` → ``additionalProperties``;
  ``prefixItems`` (a tuple) → ``items`` admitting any of its places;
  ``additionalProperties: false`` → dropped (the API server prunes unknown fields,
  and ``kubectl``'s strict field validation names them).

Datetimes stay plain strings: the spec allows local times without an offset, which
the API server's ``date-time`` format (RFC 3339) would refuse.  Defaults inside a merged
union are dropped (the API server would apply one variant's default to another's
object); the services apply them when they read the spec.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml

from hometwin.spec import API_VERSION, json_schema

try:  # the spec's own bound, once it has one; the CRD must not admit more than the spec
    from hometwin.spec import MAX_ELEMENTS
except ImportError:  # pragma: no cover - until hometwin.spec defines it
    MAX_ELEMENTS = 200  # elements per Home: each is a Deployment (a pod) of its own

GROUP, VERSION = API_VERSION.split("/")
PLURAL, SINGULAR, KIND = "homes", "home", "Home"
CRD_NAME = f"{PLURAL}.{GROUP}"
PRESERVE = "x-kubernetes-preserve-unknown-fields"
RULES = "x-kubernetes-validations"
_DROP = {"title", "$id", "$schema", "discriminator", "propertyNames", "format"}

STATUS_SCHEMA: dict[str, Any] = {
    "type": "object",
    PRESERVE: True,  # kopf keeps its own progress under status.kopf
    "properties": {
        "phase": {"type": "string", "enum": ["Pending", "Running", "Degraded", "Failed"]},
        "ready": {"type": "string", "description": "elements ready / elements enabled, e.g. '9/13'"},
        "readyElements": {"type": "integer"},
        "totalElements": {"type": "integer"},
        "simulatedTime": {"type": "string", "description": "simulated time of the last settled window"},
        "netPowerW": {"type": "number", "description": "[W] net grid power, import positive"},
        "observedGeneration": {"type": "integer"},
        "lastError": {"type": "string"},
        "elements": {
            "type": "object",
            "description": "per service (elements, router, clock): enabled, desired and ready replicas",
            "additionalProperties": {
                "type": "object",
                "properties": {"enabled": {"type": "boolean"}, "replicas": {"type": "integer"},
                               "readyReplicas": {"type": "integer"}, "ready": {"type": "boolean"}},
            },
        },
        "conditions": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["type", "status"],
                "properties": {"type": {"type": "string"}, "status": {"type": "string"},
                               "reason": {"type": "string"}, "message": {"type": "string"},
                               "lastTransitionTime": {"type": "string"}},
            },
        },
    },
}

PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Ready", "type": "string", "jsonPath": ".status.ready", "description": "elements ready/enabled"},
    {"name": "Simulated", "type": "string", "jsonPath": ".status.simulatedTime"},
    {"name": "Net W", "type": "number", "jsonPath": ".status.netPowerW", "description": "net grid power [W]"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Inline a ``$ref`` (keeping sibling keys such as ``description``)."""
    while "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        node = copy.deepcopy(target) | {k: v for k, v in node.items() if k != "$ref"}
    return node


def _union(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    options = [_resolve(o, defs) for o in node.pop("anyOf")]
    nullable = any(o.get("type") == "null" for o in options)
    options = [o for o in options if o.get("type") != "null"]
    out: dict[str, Any]
    if len(options) == 1:
        out = structural(options[0] | node, defs)
    elif {o.get("type") for o in options} == {"string", "integer"}:
        out = {k: v for k, v in node.items() if k not in _DROP and k != "default"}
        out["x-kubernetes-int-or-string"] = True
    else:
        kinds = ", ".join(str(o.get("type") or o.get("title") or "object") for o in options)
        out = {"description": f"{node.get('description', '')} (one of: {kinds})".strip(), PRESERVE: True}
    if nullable:
        out["nullable"] = True
        if out.get("default", 0) is None:
            out.pop("default")
    return out


def _strip_defaults(node: Any) -> Any:
    """A copy without ``default`` anywhere (see the module docstring)."""
    if isinstance(node, dict):
        return {k: _strip_defaults(v) for k, v in node.items() if k != "default"}
    if isinstance(node, list):
        return [_strip_defaults(v) for v in node]
    return node


def _loosest(nodes: list[dict[str, Any]], key: str, pick: Any) -> Any:
    values = [n.get(key) for n in nodes]
    return None if any(v is None for v in values) else pick(values)


def merge(nodes: list[dict[str, Any]]) -> dict[str, Any]:
    """Structural nodes of one field in several variants → one node that admits what any of them
    admits (never less): the same type, the loosest bounds, the union of enums and of object
    fields.  Fields of different types (an object in one kind, a string in another) become an
    untyped node that keeps any value (and no CEL rule may name it)."""
    first = nodes[0]
    if all(n == first for n in nodes):
        return first
    types = {n.get("type") for n in nodes}
    if types == {"number", "integer"}:
        types = {"number"}
    out: dict[str, Any] = {}
    if any(n.get("nullable") for n in nodes):
        out["nullable"] = True
    descriptions = list(dict.fromkeys(n["description"] for n in nodes if n.get("description")))
    if all(n.get("x-kubernetes-int-or-string") for n in nodes):
        return out | {"x-kubernetes-int-or-string": True} | ({"description": descriptions[0]} if descriptions else {})
    if len(types) != 1 or None in types:
        kinds = ", ".join(sorted(str(t) for t in types))
        return out | {"description": f"{descriptions[0] if descriptions else ''} (by kind: {kinds})".strip(),
                      PRESERVE: True}
    (out["type"],) = types
    if descriptions:
        out["description"] = descriptions[0]
    if out["type"] == "object":
        names = list(dict.fromkeys(name for n in nodes for name in n.get("properties", {})))
        if names:
            out["properties"] = {name: merge([n["properties"][name] for n in nodes if name in n.get("properties", {})])
                                 for name in names}
            required = set.intersection(*(set(n.get("required", [])) for n in nodes))
            if required:
                out["required"] = sorted(required)
        elif all("additionalProperties" in n for n in nodes):
            out["additionalProperties"] = merge([n["additionalProperties"] for n in nodes])
        if any(n.get(PRESERVE) for n in nodes):
            out[PRESERVE] = True
        rules = [r for r in first.get(RULES, []) if all(r in n.get(RULES, []) for n in nodes)]
        if rules:
            out[RULES] = rules
    elif out["type"] == "array":
        out["items"] = merge([n["items"] for n in nodes])
        for key, pick in (("minItems", min), ("maxItems", max)):
            if (value := _loosest(nodes, key, pick)) is not None:
                out[key] = value
    else:
        for key, pick in (("minimum", min), ("maximum", max), ("minLength", min), ("maxLength", max)):
            if (value := _loosest(nodes, key, pick)) is not None:
                out[key] = value
        for key, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
            # the loosest bound is exclusive only if every variant with that bound excludes it
            if bound in out and all(n.get(key) for n in nodes if n.get(bound) == out[bound]):
                out[key] = True
        if (enum := _loosest(nodes, "enum", lambda es: list(dict.fromkeys(v for e in es for v in e)))) is not None:
            out["enum"] = enum
        for key in ("pattern", "x-kubernetes-int-or-string"):
            if all(n.get(key) == first.get(key) for n in nodes) and key in first:
                out[key] = first[key]
    return out


def _cel_list(values: list[str]) -> str:
    return "[" + ", ".join(f"'{v}'" for v in values) + "]"


def variant_rules(tag: str, variants: dict[str, dict[str, Any]], merged: dict[str, Any],
                  at: str = "self", guard: str = "") -> list[dict[str, str]]:
    """CEL rules for a merged union: each field names the tags that have it, each tag its required
    fields.  ``at`` is where the variant's fields are (``self`` or ``self.config``), ``guard`` a
    condition under which the fields are absent anyway (``!has(self.config) || ``)."""
    rules = []
    where = "" if at == "self" else at.removeprefix("self.") + "."
    for name, node in merged.get("properties", {}).items():
        having = [t for t, v in variants.items() if name in v.get("properties", {})]
        if len(having) == len(variants) or name == tag or "type" not in node:
            continue  # everyone's field, the tag itself, or untyped (invisible to CEL)
        rules.append({"rule": f"{guard}!has({at}.{name}) || self.{tag} in {_cel_list(having)}",
                      "message": f"{where}{name} is a field of {tag} {', '.join(having)} only",
                      "reason": "FieldValueForbidden", "fieldPath": f".{where}{name}"})
    for t, v in variants.items():
        for name in v.get("required", []):
            if name != tag and name not in merged.get("required", []):
                present = f"has({at}) && has({at}.{name})" if guard else f"has({at}.{name})"
                rules.append({"rule": f"self.{tag} != '{t}' || {present}",
                              "message": f"{where}{name} is required for {tag} {t}",
                              "reason": "FieldValueRequired", "fieldPath": f".{where}{name}"})
    return rules


def _one_of(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """A discriminated union → one object of every variant's fields, the tag an enum, CEL rules."""
    tag = node["discriminator"]["propertyName"]
    if tag == "kind":
        return _elements_item(node, defs)
    variants = {}
    for option in node["oneOf"]:
        variant = _strip_defaults(structural(option, defs))
        (value,) = variant["properties"][tag]["enum"]
        variants[value] = variant
    merged = merge(list(variants.values()))
    merged["properties"][tag] = {"type": "string", "enum": list(variants), "description": f"which {tag}"}
    merged["required"] = sorted(set(merged.get("required", [])) | {tag})
    if node.get("description"):
        merged["description"] = node["description"]
    rules = merged.get(RULES, []) + variant_rules(tag, variants, merged)
    if rules:
        merged[RULES] = rules
    return merged


def _elements_item(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """The element union → one object: the common fields, ``kind`` an enum, ``config`` the merged
    configs of every kind, and per element the CEL rules that tell the kinds' configs apart."""
    variants = [_resolve(o, defs) for o in node["oneOf"]]
    kinds = [v["properties"]["kind"]["const"] for v in variants]
    first = variants[0]
    props = {name: structural(schema, defs) for name, schema in first["properties"].items()
             if name not in ("kind", "config")}
    props["kind"] = {"type": "string", "enum": kinds, "description": "element kind (the model that runs it)"}
    configs = {kind: _strip_defaults(structural(v["properties"]["config"], defs)) for kind, v in zip(kinds, variants)}
    config = merge(list(configs.values()))
    config["description"] = ("configuration of the element's kind (`hometwin schema` has each kind's); the "
                             "fields of every kind, each allowed for the kinds that have it")
    props["config"] = config
    return {"type": "object", "description": "one element of the home (a Deployment)",
            "required": sorted(set(first.get("required", [])) | {"kind"}), "properties": props,
            RULES: variant_rules("kind", configs, config, at="self.config", guard="!has(self.config) || ")}


def structural(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """One JSON Schema node → a structural OpenAPI v3 node (see the module docstring)."""
    node = _resolve(copy.deepcopy(node), defs)
    if "anyOf" in node:
        return _union(node, defs)
    if "oneOf" in node:
        return _one_of(node, defs)
    out: dict[str, Any] = {}
    for name, value in node.items():
        if name in _DROP:
            continue
        if name == "const":
            out["enum"] = [value]
        elif name == "default":
            if value is not None and not isinstance(value, (dict, list)):
                out["default"] = value
        elif name == "properties":
            out["properties"] = {k: structural(v, defs) for k, v in value.items()}
        elif name == "items":
            out["items"] = structural(value, defs)
        elif name == "prefixItems":  # a tuple (its length is min/maxItems): items as loose as any place
            out["items"] = merge([structural(v, defs) for v in value])
        elif name == "patternProperties":
            (schema,) = value.values()
            out["additionalProperties"] = structural(schema, defs)
        elif name == "additionalProperties":
            if value is True:
                out[PRESERVE] = True
            elif isinstance(value, dict):
                out["additionalProperties"] = structural(value, defs)
        elif name in ("exclusiveMinimum", "exclusiveMaximum"):
            out["minimum" if name == "exclusiveMinimum" else "maximum"] = value
            out[name] = True
        else:
            out[name] = value
    if "properties" in out and "additionalProperties" in out:
        out.pop("additionalProperties")
    return out


def openapi_schema() -> dict[str, Any]:
    """The CRD's ``openAPIV3Schema`` for the Home document."""
    schema = json_schema()
    defs = schema.pop("$defs")
    spec = structural(schema["properties"]["spec"], defs)
    elements = spec["properties"]["elements"]
    elements["maxItems"] = min(MAX_ELEMENTS, elements.get("maxItems", MAX_ELEMENTS))
    return {
        "type": "object",
        "description": "A home's energy system: location, clock and elements (one Deployment each).",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": STATUS_SCHEMA,
        },
    }


def crd() -> dict[str, Any]:
    """The ``homes.hometwin.io`` CustomResourceDefinition."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD_NAME, "labels": {"app.kubernetes.io/name": "hometwin",
                                                  "app.kubernetes.io/part-of": "hometwin"}},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"plural": PLURAL, "singular": SINGULAR, "kind": KIND, "shortNames": ["hm"],
                      "categories": ["hometwin"]},
            "versions": [{
                "name": VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": PRINTER_COLUMNS,
                "schema": {"openAPIV3Schema": openapi_schema()},
            }],
        },
    }


def crd_yaml() -> str:
    """The CRD as YAML (what ``hometwin crd`` prints and the Helm chart ships)."""
    header = "# Generated by `hometwin crd` from the pydantic Home spec; do not edit by hand.\n"
    return header + yaml.safe_dump(crd(), sort_keys=False, width=120)
