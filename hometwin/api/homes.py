"""Home documents over HTTP: parse a ``{"home": …}`` or ``{"yaml": …}`` body, the problems as
structured JSON (the same lines as ``hometwin validate``, with the field path split out), the
kinds and their JSON Schemas, the bundled examples and export to YAML."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from hometwin.errors import clip
from hometwin.registry import KINDS, element_class
from hometwin.spec import SpecError, check_setup, parse_home, parse_yaml

#: A line of :class:`SpecError` that starts with a field path: ``elements[2].config.capacity_kwh: …``
#: (``elements[3] (oven): …`` from an element's setup names the element too).
_LINE = re.compile(r"^(?P<field>[A-Za-z_][\w-]*(?:\[\d+\]|\.[A-Za-z_][\w-]*)*)(?: \([^)]*\))?: (?P<message>.*)$", re.S)
_PART = re.compile(r"\[(\d+)\]|\.?([A-Za-z_][\w-]*)")

#: An icon name per kind (Material Symbols names; the UI maps them to its own set).
ICONS = {
    "sun": "sunny", "weather": "partly_cloudy_day", "pv": "solar_power", "battery": "battery_charging_full",
    "inverter": "electrical_services", "grid": "electric_meter", "scheduled_load": "schedule",
    "oven": "oven", "tv": "tv", "kettle": "kettle", "lights": "lightbulb", "fridge": "kitchen",
    "base_load": "home", "space_heater": "heat", "heat_pump": "heat_pump", "geyser": "water_heater",
    "stochastic_load": "casino", "washing_machine": "local_laundry_service", "dryer": "dry",
    "dishwasher": "dishwasher", "cooking": "skillet",
}


def error_items(errors: list[str]) -> list[dict[str, Any]]:
    """One ``{"path", "field", "message"}`` per line of a :class:`SpecError` (``path`` ``[]`` and
    ``field`` ``""`` for a problem of the whole document, such as a YAML syntax error)."""
    out = []
    for line in errors:
        match = _LINE.match(line)
        if match is None or match["field"] == "document":
            out.append({"path": [], "field": "", "message": line.removeprefix("(document): ")})
            continue
        field = match["field"]
        path: list[str | int] = [int(i) if i else name for i, name in _PART.findall(field)]
        out.append({"path": path, "field": field, "message": match["message"]})
    return out


def home_from_body(body: Any, *, base_dir: Path, setup: bool = True) -> Any:
    """The validated Home of a request body ``{"home": {...}}`` or ``{"yaml": "..."}``; its data
    files resolve against ``base_dir``.  :class:`SpecError` with every problem (``setup``: also
    the ones ``hometwin validate`` finds by setting every element up)."""
    if not isinstance(body, dict):
        raise SpecError([f"(document): the body must be a JSON object with \"home\" or \"yaml\" (got {type(body).__name__})"])
    if ("home" in body) == ("yaml" in body):
        raise SpecError(["(document): give exactly one of \"home\" (the document as JSON) or \"yaml\" (its text)"])
    if "yaml" in body:
        if not isinstance(body["yaml"], str):
            raise SpecError([f"yaml: must be a string (got {type(body['yaml']).__name__})"])
        data = parse_yaml(body["yaml"], "yaml")
    else:
        data = body["home"]
    home = parse_home(data)
    home._source_dir = Path(base_dir).resolve()
    if setup:
        check_setup(home)
    return home


def dump_home(home: Any) -> dict[str, Any]:
    """The document as JSON with the fields that were given (what a person writes), normalised:
    numbers, times and durations as the models hold them.  (Fields left at their defaults are not
    dropped: a union's tag such as ``source.type: stochastic`` is a default, and needed.)"""
    data = home.model_dump(mode="json", exclude_unset=True)
    return {"apiVersion": home.apiVersion, "kind": home.kind, **data}


def to_yaml(home: Any) -> str:
    """YAML text of a validated home that ``hometwin validate`` accepts."""
    return yaml.safe_dump(dump_home(home), sort_keys=False, allow_unicode=True, default_flow_style=False)


@cache
def kinds() -> list[dict[str, Any]]:
    """Every element kind: role, one-line description, icon and the JSON Schema of its config."""
    out = []
    for kind in KINDS:
        cls = element_class(kind)
        doc = cls.description or (cls.__doc__ or kind).strip().splitlines()[0]
        out.append({"kind": kind, "role": cls.role.value, "description": doc.strip(), "icon": ICONS.get(kind, "device_unknown"),
                    "settable": sorted(cls.Config.model_fields if cls.settable is None else cls.settable),
                    "schema": cls.Config.model_json_schema()})
    return out


def _title(text: str, fallback: str) -> str:
    """The first sentence of the file's leading comment (at most 100 characters)."""
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("# ").strip())
    words = " ".join(lines)
    first = re.split(r"(?<=[.:;])\s", words, maxsplit=1)[0].rstrip(".:;")
    return clip(first, 100) if first else fallback


@cache
def examples(folder: Path) -> dict[str, dict[str, Any]]:
    """The example homes in ``folder``: name → ``{"name", "title", "yaml", "home"}``, or for one
    that does not run here (its data files not found or not allowed) ``{"name", "problem"}``."""
    from hometwin.spec import load_home

    out: dict[str, dict[str, Any]] = {}
    for path in sorted(Path(folder).glob("*.yaml")):
        try:
            home = load_home(path)
            check_setup(home)
        except SpecError as exc:
            out[path.stem] = {"name": path.stem, "problem": clip(" ".join(exc.errors[0].split()), 300)}
            continue
        text = path.read_text()
        out[path.stem] = {"name": path.stem, "title": _title(text, home.metadata.name), "yaml": text,
                          "home": dump_home(home)}
    return out


def runnable_examples(folder: Path) -> dict[str, dict[str, Any]]:
    return {name: e for name, e in examples(folder).items() if "problem" not in e}
