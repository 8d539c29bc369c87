"""The inverter strategy's view of the other elements over WAMP: remote roster entries and their codec.

In-process, :class:`hometwin.engine.Engine` binds the element models themselves as the inverter's
roster; a strategy reads each one's :meth:`~hometwin.element.Element.flexibility` (a
:mod:`hometwin.flex` value) and sends it :mod:`hometwin.flex` commands through
:meth:`~hometwin.element.Element.command`.  Over WAMP the balancer binds a :class:`RemoteElement`
per announced element instead, with the same three methods and nothing else:

- ``flexibility()``: the ``hometwin.element.<name>.flexibility`` RPC, once per prepare stage
  (``host.prepare_epoch``), decoded into the same frozen value the model returns;
- ``command(cmd)``: the ``hometwin.element.<name>.command`` RPC (one typed command; its answer,
  e.g. :class:`~hometwin.flex.Start`s, decoded);
- ``describe()``: the element's announcement with its current config (refreshed over the
  ``describe`` RPC once per prepare stage, so a ``set`` applied at the window boundary is seen
  as in-process) — what the forecaster builds its shadow models from;

plus what the element announced (``Describe``): ``name``, ``kind``, ``role``, ``inputs``,
``outputs``, ``settle_on_shortfall``.

Values cross msgpack through :func:`encode` / :func:`decode`: numpy arrays as
``{"__ndarray__": {"dtype", "shape", "data"}}`` (data a list: float64 survives msgpack bit for
bit) and tuples as ``{"__tuple__": [...]}``; contract values are plain dicts first
(:func:`hometwin.flex.to_wire`).

Proxy calls block: they run in the balancer's executor thread (where ``Inverter.prepare`` and
``Inverter.balance`` run) and the RPC is made on the event loop with
:func:`asyncio.run_coroutine_threadsafe`, like the battery's dispatch proxy.  The prepare
protocol around them is :mod:`hometwin.runtime.prepare`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import math
from typing import Any

import numpy as np
from autobahn.wamp.exception import ApplicationError

from hometwin.runtime import messages as m
from hometwin import flex
from hometwin.element import Role

#: The element's flexibility (:meth:`hometwin.element.Element.flexibility`, wire form).
FLEXIBILITY = "flexibility"
#: One :mod:`hometwin.flex` command to the element (:meth:`hometwin.element.Element.command`).
COMMAND = "command"

INVALID_ARGUMENT = "hometwin.error.invalid_argument"
STALE = "hometwin.error.stale"

_ND, _TUPLE = "__ndarray__", "__tuple__"
_KINDS = "biuf"  # bool, int, unsigned, float arrays cross; object/str arrays do not


class ElementUnavailable(RuntimeError):
    """A roster element did not answer (gone, timed out, busy settling): the plan goes on without it."""


# -- the codec ------------------------------------------------------------------------------------

def encode(value: Any, path: str = "value") -> Any:
    """A msgpack-safe form of ``value`` that :func:`decode` turns back into the same thing."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in _KINDS:
            raise TypeError(f"{path}: a {value.dtype} array cannot cross WAMP")
        return {_ND: {"dtype": value.dtype.str, "shape": list(value.shape), "data": value.ravel().tolist()}}
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    if isinstance(value, dict):
        return {str(key): encode(item, f"{path}.{key}") for key, item in value.items()}
    if isinstance(value, tuple):
        return {_TUPLE: [encode(v, f"{path}[{i}]") for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [encode(v, f"{path}[{i}]") for i, v in enumerate(value)]
    raise TypeError(f"{path}: a {type(value).__name__} cannot cross WAMP")


def decode(value: Any, path: str = "value") -> Any:
    """Inverse of :func:`encode`; malformed tagged values raise ``ValueError`` naming ``path``."""
    if isinstance(value, dict):
        if len(value) == 1 and _ND in value:
            return _decode_array(value[_ND], path)
        if len(value) == 1 and _TUPLE in value:
            items = value[_TUPLE]
            if not isinstance(items, list):
                raise ValueError(f"{path}: {_TUPLE} must be a list")
            return tuple(decode(v, f"{path}[{i}]") for i, v in enumerate(items))
        return {str(k): decode(v, f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v, f"{path}[{i}]") for i, v in enumerate(value)]
    return value


def _decode_array(spec: Any, path: str) -> np.ndarray:
    if not isinstance(spec, dict) or set(spec) != {"dtype", "shape", "data"}:
        raise ValueError(f"{path}: an array needs exactly dtype, shape and data")
    try:
        dtype = np.dtype(spec["dtype"])
    except TypeError:
        raise ValueError(f"{path}: unknown dtype {spec['dtype']!r}") from None
    if dtype.kind not in _KINDS:
        raise ValueError(f"{path}: dtype {dtype} is not allowed (bool, int or float arrays only)")
    shape, data = spec["shape"], spec["data"]
    if not isinstance(shape, list) or not all(isinstance(s, int) and s >= 0 for s in shape):
        raise ValueError(f"{path}: shape must be a list of non-negative integers")
    if not isinstance(data, list) or len(data) != math.prod(shape):
        raise ValueError(f"{path}: data must be a list of {math.prod(shape)} values (shape {shape})")
    try:
        return np.array(data, dtype=dtype).reshape(shape)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{path}: data must be numbers of dtype {dtype}") from None


# -- the caller side --------------------------------------------------------------------------------

def call_blocking(session: Any, loop: asyncio.AbstractEventLoop, uri: str, args: list[Any],
                  kwargs: dict[str, Any], timeout_s: float) -> Any:
    """``session.call(uri, *args, **kwargs)`` on ``loop`` from a worker thread; waits for the answer.

    ``hometwin.error.invalid_argument`` from the callee becomes ``ValueError`` (a bug in the
    caller, as in-process); any other failure ``ElementUnavailable``.
    """
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        raise RuntimeError(f"{uri}: a blocking proxy call on the event loop thread would deadlock")

    async def rpc() -> Any:
        return await session.call(uri, *args, **kwargs)

    fut = asyncio.run_coroutine_threadsafe(rpc(), loop)
    try:
        return fut.result(timeout_s)
    except concurrent.futures.TimeoutError:
        fut.cancel()
        raise ElementUnavailable(f"{uri}: no answer within {timeout_s:g} s") from None
    except ApplicationError as exc:
        text = exc.args[0] if exc.args else exc.error
        if exc.error == INVALID_ARGUMENT:
            raise ValueError(f"{uri}: {text}") from None
        raise ElementUnavailable(f"{uri}: {exc.error}: {text}") from None
    except Exception as exc:
        raise ElementUnavailable(f"{uri}: {exc!r}") from None


class RemoteElement:
    """An element on the balancer's roster, reached over WAMP (see the module docstring).

    ``host`` is the balancer: it provides ``session``, ``loop``, ``timeout_s``, ``metrics``,
    ``rejections``, ``rpc_counts`` and ``prepare_epoch`` (bumped at every prepare stage: flexibility
    and config are fetched once per stage).
    """

    def __init__(self, host: Any, d: m.Describe):
        self._host = host
        self.name = d.element
        self.kind = d.kind
        self.role = Role(d.role)
        self.inputs = tuple(d.inputs)
        self.outputs = tuple(d.outputs)
        self.settle_on_shortfall = bool(d.settle_on_shortfall)
        self.session = d.session
        self.rpcs = tuple(d.rpcs)
        self._config_json: dict[str, Any] = dict(d.config)
        self._epoch = getattr(host, "prepare_epoch", 0)
        self._flex: tuple[int, Any] | None = None

    def __repr__(self) -> str:
        return f"RemoteElement({self.name!r}, kind={self.kind!r})"

    def describe(self) -> dict[str, Any]:
        """As :meth:`hometwin.element.Element.describe` (config as JSON), refreshed once per prepare stage."""
        epoch = getattr(self._host, "prepare_epoch", 0)
        if epoch != self._epoch:
            self._epoch = epoch
            try:
                d = m.decode(m.Describe, self.call("describe"), m.element_uri(self.name, "describe"),
                             self._host.rejections)
            except ElementUnavailable:
                d = None  # keep what it last announced
            if d is not None and d.element == self.name and d.kind == self.kind:
                self._config_json = dict(d.config)
        return {"name": self.name, "kind": self.kind, "role": self.role.value, "inputs": list(self.inputs),
                "outputs": list(self.outputs), "settle_on_shortfall": self.settle_on_shortfall,
                "config": copy.deepcopy(self._config_json)}

    def flexibility(self) -> Any:
        """The element's :mod:`hometwin.flex` flexibility (None without one), once per prepare stage."""
        if FLEXIBILITY not in self.rpcs:
            return None
        epoch = getattr(self._host, "prepare_epoch", 0)
        if self._flex is None or self._flex[0] != epoch:
            self._flex = (epoch, flex.from_wire(decode(self.call(FLEXIBILITY), f"{self.name}.{FLEXIBILITY}")))
        return self._flex[1]

    def command(self, cmd: Any) -> Any:
        """Send one :mod:`hometwin.flex` command; its answer (None, or a query's values)."""
        if COMMAND not in self.rpcs:
            raise ValueError(f"{self.name}: a {self.kind} takes no {cmd.kind} command")
        return flex.from_wire(decode(self.call(COMMAND, flex.to_wire(cmd)), f"{self.name}.{cmd.kind}"))

    def call(self, op: str, *args: Any) -> Any:
        """The raw RPC ``hometwin.element.<name>.<op>`` (arguments encoded), blocking."""
        h = self._host
        uri = m.element_uri(self.name, op)
        out = call_blocking(h.session, h.loop, uri, [encode(a, f"args[{i}]") for i, a in enumerate(args)], {},
                            h.timeout_s)
        h.metrics.msg("out", uri)
        counts = getattr(h, "rpc_counts", None)
        if counts is not None:
            counts[op] += 1
        return out
