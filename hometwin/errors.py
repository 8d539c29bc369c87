"""Human error lines from pydantic: ``elements[3].config.capacity_kwh: must be > 0 (got -5)``."""

from __future__ import annotations

from typing import Any, Iterable

from pydantic import BaseModel, ValidationError

_OPS = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}
_CTX_KEY = {"greater_than": "gt", "greater_than_equal": "ge", "less_than": "lt", "less_than_equal": "le"}


def format_loc(loc: Iterable[Any], drop: tuple[str, ...] = ()) -> str:
    """('spec','elements',3,'battery','config','capacity_kwh') → elements[3].config.capacity_kwh.

    Discriminator tags (the kind name pydantic inserts after a list index) are
    dropped; so are leading parts named in ``drop``.
    """
    parts: list[str] = []
    items = list(loc)
    while items and items[0] in drop:
        items.pop(0)
    prev_index = False
    for item in items:
        if isinstance(item, int):
            parts.append(f"[{item}]")
            prev_index = True
            continue
        if prev_index and item not in ("name", "kind", "enabled", "config") and _looks_like_tag(item):
            prev_index = False
            continue  # discriminated-union tag
        prev_index = False
        parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "(document)"


def _looks_like_tag(item: Any) -> bool:
    from hometwin.registry import KINDS

    return isinstance(item, str) and item in KINDS


def _got(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _range_text(field_info: Any) -> str:
    """'> 0 and <= 1' from a pydantic FieldInfo's metadata, '' if unbounded."""
    if field_info is None:
        return ""
    bounds = []
    for meta in getattr(field_info, "metadata", []):
        for attr, op in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
            val = getattr(meta, attr, None)
            if val is not None:
                bounds.append(f"{op} {val}")
    return " and ".join(bounds)


def _resolve_field(root: type[BaseModel] | None, loc: tuple[Any, ...]) -> Any:
    """FieldInfo at ``loc`` inside ``root``, following lists and kind tags (best effort)."""
    import typing

    from hometwin.registry import KINDS, element_class

    model: Any = root
    info = None
    prev: Any = None
    for item in loc:
        if model is None:
            return None
        if isinstance(item, int):
            prev = item
            continue
        if isinstance(prev, int) and isinstance(item, str) and item in KINDS:
            try:
                model = _element_model(element_class(item))
            except Exception:
                return None
            prev = item
            continue
        prev = item
        fields = getattr(model, "model_fields", None)
        if not fields or item not in fields:
            return None
        info = fields[item]
        model = _model_in(info.annotation)
    return info


def _element_model(cls: Any) -> Any:
    from hometwin.spec import element_spec_model

    return element_spec_model(cls.kind)


def _model_in(annotation: Any) -> Any:
    import typing

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def format_validation_error(exc: ValidationError, root: type[BaseModel] | None = None,
                            drop: tuple[str, ...] = ()) -> list[str]:
    """One readable line per problem, all problems at once."""
    lines = []
    for err in exc.errors(include_url=False):
        loc = tuple(err.get("loc", ()))
        where = format_loc(loc, drop)
        etype = err.get("type", "")
        ctx = err.get("ctx") or {}
        value = err.get("input")
        info = _resolve_field(root, loc) if root is not None else None
        if etype in _OPS:
            rng = _range_text(info) or f"{_OPS[etype]} {ctx.get(_CTX_KEY[etype])}"
            msg = f"must be {rng} (got {_got(value)})"
        elif etype == "missing":
            msg = "required field is missing"
        elif etype == "extra_forbidden":
            parent = _resolve_field(root, loc[:-1]) if root is not None else None
            model = _model_in(parent.annotation) if parent is not None else None
            if model is None and root is not None and len(loc) == 1:
                model = root
            allowed = f" (allowed: {', '.join(model.model_fields)})" if model is not None else ""
            msg = f"unknown field{allowed}"
        elif etype == "literal_error":
            msg = f"must be one of {ctx.get('expected')} (got {_got(value)})"
        elif etype in ("union_tag_invalid", "union_tag_not_found"):
            from hometwin.registry import KINDS

            where += ".kind"
            msg = f"unknown kind {_got(ctx.get('tag', value))} (allowed: {', '.join(sorted(KINDS))})"
            if etype == "union_tag_not_found":
                msg = f"required field 'kind' is missing (allowed: {', '.join(sorted(KINDS))})"
        elif etype in ("float_parsing", "int_parsing", "float_type", "int_type", "int_from_float"):
            rng = _range_text(info)
            kind = "an integer" if etype.startswith("int") else "a number"
            msg = f"must be {kind}{' ' + rng if rng else ''} (got {_got(value)})"
        elif etype in ("finite_number",):
            msg = f"must be a finite number (got {_got(value)})"
        elif etype.startswith("value_error") or etype == "assertion_error":
            msg = str(err.get("msg", "")).removeprefix("Value error, ").removeprefix("Assertion failed, ")
        else:
            msg = f"{err.get('msg', etype)[0].lower()}{err.get('msg', etype)[1:]} (got {_got(value)})"
        lines.append(f"{where}: {msg}")
    return lines
