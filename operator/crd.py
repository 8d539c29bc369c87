"""The ``homes.hometwin.io`` CRD, generated from the pydantic Home's JSON Schema.

Kubernetes wants a *structural* OpenAPI v3 schema: no ``$ref``, a ``type`` on every
node, no types inside ``anyOf``/``oneOf``, ``nullable`` instead of ``{"type": "null"}``,
OpenAPI 3.0 boolean ``exclusiveMinimum``.  :func:`structural` translates:

* ``$ref`` → the definition, inlined (sibling ``description`` wins);
* ``anyOf [X, null]`` → ``X`` + ``nullable: true``; ``anyOf [string, integer]`` →
  ``x-kubernetes-int-or-string``; any other union → an untyped node that keeps its
  fields (``x-kubernetes-preserve-unknown-fields``), documented in the description;
* the elements' discriminated union (``oneOf`` by ``kind``) → one object with the
  common fields, ``kind`` as an enum of every registered kind, and ``config`` kept
  as-is (preserve-unknown-fields): the operator validates it with the kind's
  pydantic model and reports problems in the Home's status;
* ``const`` → one-value ``enum``; ``patternProperties`` → ``additionalProperties``;
  ``additionalProperties: false`` → dropped (the API server prunes unknown fields,
  and ``kubectl``'s strict field validation names them).

Datetimes stay plain strings: the spec allows local times without an offset, which
the API server's ``date-time`` format (RFC 3339) would refuse.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml

from hometwin.spec import API_VERSION, json_schema

GROUP, VERSION = API_VERSION.split("/")
PLURAL, SINGULAR, KIND = "homes", "home", "Home"
CRD_NAME = f"{PLURAL}.{GROUP}"
PRESERVE = "x-kubernetes-preserve-unknown-fields"
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


def _elements_item(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """The discriminated element union → one object; ``config`` is validated by the operator."""
    variants = [_resolve(o, defs) for o in node["oneOf"]]
    kinds = [v["properties"]["kind"]["const"] for v in variants]
    first = variants[0]
    props = {name: structural(schema, defs) for name, schema in first["properties"].items()
             if name not in ("kind", "config")}
    props["kind"] = {"type": "string", "enum": kinds, "description": "element kind (the model that runs it)"}
    props["config"] = {"type": "object", PRESERVE: True,
                       "description": "configuration of the element's kind; its schema per kind is in "
                                      "`hometwin schema` (validated by the operator)"}
    return {"type": "object", "description": "one element of the home (a Deployment)",
            "required": sorted(set(first.get("required", [])) | {"kind"}), "properties": props}


def structural(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """One JSON Schema node → a structural OpenAPI v3 node (see the module docstring)."""
    node = _resolve(copy.deepcopy(node), defs)
    if "anyOf" in node:
        return _union(node, defs)
    if "oneOf" in node:
        return _elements_item(node, defs)
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
