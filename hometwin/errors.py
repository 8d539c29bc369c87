"""Human error lines from pydantic: ``elements[3].config.capacity_kwh: must be > 0 (got -5)``."""

from __future__ import annotations

import reprlib
import types
import typing
from typing import Any, Iterable

from pydantic import BaseModel, ValidationError

_OPS = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}
_CTX_KEY = {"greater_than": "gt", "greater_than_equal": "ge", "less_than": "lt", "less_than_equal": "le"}


def format_loc(loc: Iterable[Any], drop: tuple[str, ...] = (), root: Any = None) -> str:
    """('spec','elements',3,'battery','config','capacity_kwh') → elements[3].config.capacity_kwh.

    With ``root`` (the pydantic model validated), the tags pydantic inserts for
    discriminated unions (an element's kind, a tariff's type …) are dropped;
    leading parts named in ``drop`` are dropped too.
    """
    parts, _ = _walk(root, tuple(loc), drop)
    return "".join(parts) or "(document)"


def _walk(root: Any, loc: tuple[Any, ...], drop: tuple[str, ...] = ()) -> tuple[list[str], Any]:
    """Follow ``loc`` through the models from ``root``: display parts and the FieldInfo reached."""
    parts: list[str] = []
    ann: Any = root
    info = None
    for pos, item in enumerate(loc):
        members = _union_models(ann)
        if members and isinstance(item, str):
            member = _tagged_member(members, item)
            if member is not None:  # a discriminated-union tag: not part of the user's path
                ann = member
                continue
        if isinstance(item, int):
            parts.append(f"[{item}]")
            ann = _item_type(ann)
            continue
        model = _model_of(ann)
        if not parts and pos < len(drop) + 1 and item in drop:
            info = model.model_fields.get(item) if model is not None else None
            ann = info.annotation if info is not None else None
            continue
        parts.append(("." if parts else "") + str(item))
        if model is not None and item in model.model_fields:
            info = model.model_fields[item]
            ann = info.annotation
        else:
            info, ann = None, None
    return parts, info


def _strip(ann: Any) -> Any:
    while typing.get_origin(ann) is typing.Annotated:
        ann = typing.get_args(ann)[0]
    return ann


def _union_models(ann: Any) -> list[Any]:
    ann = _strip(ann)
    if typing.get_origin(ann) not in (typing.Union, types.UnionType):
        return []
    models = [_strip(a) for a in typing.get_args(ann) if a is not type(None)]
    return models if len(models) > 1 and all(_is_model(m) for m in models) else []


def _tagged_member(members: list[Any], tag: str) -> Any:
    for m in members:
        if m.__name__ == tag:
            return m
        for f in m.model_fields.values():
            if typing.get_origin(f.annotation) is typing.Literal and tag in typing.get_args(f.annotation):
                return m
    return None


def _union_tags(ann: Any, disc: str) -> list[str]:
    """The tags a discriminated union (``ann``, or a list of one) allows for its field ``disc``."""
    members = _union_models(ann) or _union_models(_item_type(ann))
    tags: list[str] = []
    for m in members:
        f = m.model_fields.get(disc)
        if f is not None and typing.get_origin(f.annotation) is typing.Literal:
            tags.extend(str(t) for t in typing.get_args(f.annotation))
    return sorted(tags)


def _item_type(ann: Any) -> Any:
    ann = _strip(ann)
    for arg in typing.get_args(ann):
        if arg is not type(None):
            inner = _strip(arg)
            if typing.get_origin(inner) in (list, tuple, dict):
                args = typing.get_args(inner)
                return args[-1] if args else None
    args = typing.get_args(ann)
    if typing.get_origin(ann) in (list, tuple, dict) and args:
        return args[-1]
    return None


def _is_model(ann: Any) -> bool:
    return isinstance(ann, type) and issubclass(ann, BaseModel)


def _model_of(ann: Any) -> Any:
    ann = _strip(ann)
    if _is_model(ann):
        return ann
    models = [m for m in (_strip(a) for a in typing.get_args(ann)) if _is_model(m)]
    return models[0] if len(models) == 1 else None


_REPR = reprlib.Repr()
_REPR.maxstring = 50
_REPR.maxother = 50
_REPR.maxlong = 40
_REPR.maxlevel = 2
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 4


def clip(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, ``...`` marking the cut."""
    return text if len(text) <= limit else text[:limit - 3] + "..."


def bounded_repr(value: Any) -> str:
    """``repr(value)`` at most 60 characters, bounded before formatting (see :func:`_got`)."""
    return _got(value)


def _got(value: Any) -> str:
    """The offending value, bounded *before* it is formatted: ``reprlib`` looks at a few items of
    a few levels, so a value of a billion nested items (a YAML alias bomb) costs microseconds."""
    return clip(_REPR.repr(value), 60)


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


def format_validation_error(exc: ValidationError, root: type[BaseModel] | None = None,
                            drop: tuple[str, ...] = (), kinds: Iterable[str] = ()) -> list[str]:
    """One readable line per problem, all problems at once.  ``kinds``: the element kinds to name
    for an unknown ``kind`` where the model's union does not list them (the caller passes the
    registry's, so that this module imports nothing of hometwin: no import cycle, issue 22)."""
    lines = []
    for err in exc.errors(include_url=False):
        loc = tuple(err.get("loc", ()))
        parts, info = _walk(root, loc, drop)
        where = "".join(parts) or "(document)"
        etype = err.get("type", "")
        ctx = err.get("ctx") or {}
        value = err.get("input")
        if etype in _OPS:
            rng = _range_text(info) or f"{_OPS[etype]} {ctx.get(_CTX_KEY[etype])}"
            msg = f"must be {rng} (got {_got(value)})"
        elif etype == "missing":
            msg = "required field is missing"
        elif etype == "extra_forbidden":
            model = _parent_model(root, loc[:-1], drop)
            allowed = f" (allowed: {', '.join(model.model_fields)})" if model is not None else ""
            msg = f"unknown field{allowed}"
        elif etype == "literal_error":
            msg = f"must be one of {ctx.get('expected')} (got {_got(value)})"
        elif etype in ("union_tag_invalid", "union_tag_not_found"):
            # an element's kind, or the tag of a union inside a config (a weather source's type …)
            disc = str(ctx.get("discriminator", "'kind'")).strip("'")
            tags = _union_tags(info.annotation if info is not None else None, disc)
            if not tags and disc == "kind":
                tags = sorted(kinds)
            where += f".{disc}"
            msg = f"unknown {disc} {_got(ctx.get('tag', value))} (allowed: {', '.join(tags)})"
            if etype == "union_tag_not_found":
                msg = f"required field '{disc}' is missing (allowed: {', '.join(tags)})"
        elif etype in ("float_parsing", "int_parsing", "float_type", "int_type", "int_from_float"):
            rng = _range_text(info)
            kind = "an integer" if etype.startswith("int") else "a number"
            msg = f"must be {kind}{' ' + rng if rng else ''} (got {_got(value)})"
        elif etype == "finite_number":
            rng = _range_text(info)
            msg = f"must be a finite number{' ' + rng if rng else ''} (got {_got(value)})"
        elif etype.startswith("value_error") or etype == "assertion_error":
            msg = str(err.get("msg", "")).removeprefix("Value error, ").removeprefix("Assertion failed, ")
            msg = "\n".join(clip(m, 300) for m in msg.split("\n")[:50])  # a validator's
            # own text may quote a long value: one bounded line per problem
        else:
            msg = f"{err.get('msg', etype)[0].lower()}{err.get('msg', etype)[1:]} (got {_got(value)})"
        lines.append(f"{where}: {msg}")
    return lines


def _parent_model(root: Any, loc: tuple[Any, ...], drop: tuple[str, ...]) -> Any:
    """The model that holds the last field of ``loc`` (for 'unknown field' messages)."""
    if root is None:
        return None
    if not loc:
        return _model_of(root)
    parts, info = _walk(root, loc, drop)
    if info is None:
        return None
    ann = info.annotation
    members = _union_models(ann)
    if members and isinstance(loc[-1], str):
        return _tagged_member(members, loc[-1])
    return _model_of(ann)
