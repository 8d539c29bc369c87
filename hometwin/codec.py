"""The core codec: trees of values (snapshots, plans) as JSON types, exactly.

One encoding for what is kept or sent as a tree: an element's snapshot in its state file
(:mod:`hometwin.runtime.state`) and an inverter strategy's plan (``Plan.to_state``, inside that
snapshot).  :func:`encode` turns a tree into JSON types and :func:`decode` turns that back into an
equal tree, types included: what plain JSON cannot hold exactly is tagged with the key ``"$t"`` —
numpy arrays (``ndarray``: dtype, shape, base64 of the raw bytes), numpy scalars (``scalar``),
tuples, bytes, and maps whose keys are not all strings (or contain ``"$t"``) as ``map`` with
``[key, value]`` pairs.  :func:`dumps` writes floats with ``repr``, so they read back to the same
bits (``NaN``/``Infinity`` as Python's json writes them).

:func:`is_plain` says whether a value is plain data (maps with string keys, lists, tuples,
numeric arrays, numbers, strings) — what a model may keep as state; :func:`copy_tree` copies such
a tree sharing nothing mutable with it.

Model layer: numpy and the standard library only.  (The WAMP messages carry arrays as typed
fields of their own, raw float64 bytes: :mod:`hometwin.runtime.messages`.)
"""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import numpy as np

TAG = "$t"


def encode(value: Any, path: str = "$") -> Any:
    """``value`` as a tree of JSON types that :func:`decode` turns back into an equal ``value``."""
    if value is None or type(value) in (bool, int, float, str):
        return value
    if isinstance(value, np.ndarray):
        return _encode_array(value, path)
    if isinstance(value, np.generic):
        if value.dtype.hasobject:
            raise TypeError(f"{path}: numpy object scalar cannot be stored")
        return {TAG: "scalar", "dtype": value.dtype.str, "data": _b64(value.tobytes())}
    if isinstance(value, dict):
        if all(type(k) is str for k in value) and TAG not in value:
            return {k: encode(v, f"{path}.{k}") for k, v in value.items()}
        return {TAG: "map", "items": [[encode(k, f"{path}<key>"), encode(v, f"{path}[{k!r}]")]
                                      for k, v in value.items()]}
    if type(value) is list:
        return [encode(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if type(value) is tuple:
        return {TAG: "tuple", "items": [encode(v, f"{path}[{i}]") for i, v in enumerate(value)]}
    if type(value) is bytes:
        return {TAG: "bytes", "data": _b64(value)}
    raise TypeError(f"{path}: {type(value).__name__} cannot be stored in a state file")


def _encode_array(a: np.ndarray, path: str) -> dict[str, Any]:
    if a.dtype.hasobject:
        flat = a.ravel(order="C")
        return {TAG: "ndarray", "dtype": "O", "shape": list(a.shape),
                "items": [encode(x, f"{path}[{i}]") for i, x in enumerate(flat.tolist())]}
    if a.dtype.kind not in "biufcmMSU" or a.dtype.fields is not None:
        raise TypeError(f"{path}: numpy dtype {a.dtype} cannot be stored in a state file")
    return {TAG: "ndarray", "dtype": a.dtype.str, "shape": list(a.shape),
            "data": _b64(np.ascontiguousarray(a).tobytes())}


def decode(tree: Any) -> Any:
    """Inverse of :func:`encode` (raises ``ValueError``/``TypeError`` on a malformed tree)."""
    if isinstance(tree, list):
        return [decode(v) for v in tree]
    if not isinstance(tree, dict):
        return tree
    tag = tree.get(TAG)
    if tag is None:
        return {k: decode(v) for k, v in tree.items()}
    if tag == "map":
        return {_hashable(decode(k)): decode(v) for k, v in tree["items"]}
    if tag == "tuple":
        return tuple(decode(v) for v in tree["items"])
    if tag == "bytes":
        return _unb64(tree["data"])
    if tag == "scalar":
        dtype = np.dtype(tree["dtype"])
        return np.frombuffer(_unb64(tree["data"]), dtype=dtype, count=1)[0]
    if tag == "ndarray":
        shape = tuple(int(s) for s in tree["shape"])
        if tree["dtype"] == "O":
            items = [decode(v) for v in tree["items"]]
            out = np.empty(len(items), dtype=object)
            for i, x in enumerate(items):
                out[i] = x
            return out.reshape(shape)
        dtype = np.dtype(tree["dtype"])
        count = int(np.prod(shape, dtype=np.int64))
        return np.frombuffer(_unb64(tree["data"]), dtype=dtype, count=count).reshape(shape).copy()
    raise ValueError(f"unknown tag {tag!r}")


def _hashable(key: Any) -> Any:
    if isinstance(key, list):
        raise ValueError("a map key decoded to a list")
    return key


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def dumps(tree: Any) -> str:
    return json.dumps(tree, separators=(",", ":"), allow_nan=True)


def loads(text: str) -> Any:
    return json.loads(text)


def is_plain(value: Any) -> bool:
    """Maps with string keys, lists, tuples, numeric arrays, numbers, strings, None — nothing else
    (no solver objects, functions or models)."""
    if value is None or isinstance(value, (bool, int, float, str, np.floating, np.integer, np.bool_)):
        return True
    if isinstance(value, np.ndarray):
        return value.dtype.kind in "biuf"
    if isinstance(value, (list, tuple)):
        return all(is_plain(x) for x in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and is_plain(x) for k, x in value.items())
    return False


_ATOMS = (float, int, bool, str, type(None))


def copy_tree(value: Any) -> Any:
    """A copy of a state tree that shares nothing mutable with it (cheaper than ``copy.deepcopy``)."""
    t = type(value)
    if t in _ATOMS:
        return value
    if t is dict:
        return {k: copy_tree(v) for k, v in value.items()}
    if t is list:
        return [v if type(v) in _ATOMS else copy_tree(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.copy()
    if t is tuple:
        return tuple(copy_tree(v) for v in value)
    return copy.deepcopy(value)
