"""The inverter strategy's view of the other elements over WAMP: remote element proxies.

In-process, :meth:`hometwin.engine.Engine` binds the element models themselves as the
inverter's roster; a strategy reads them (``role``, ``kind``, ``config``, ``describe()``,
``params()``) and sends them plans (``set_plan``, ``defer_to``, ``apply_plan``).  Over
WAMP the balancer binds a :class:`RemoteElement` per announced element instead.  A
proxy has

- what the element announced (``Describe``): ``name``, ``kind``, ``role`` (a
  :class:`~hometwin.element.Role`), ``inputs``, ``outputs``, ``settle_on_shortfall``;
- ``config`` rebuilt with the element class's pydantic ``Config`` and ``describe()`` in
  the shape of :meth:`Element.describe` — refreshed over the ``describe`` RPC once per
  prepare stage, so a ``set`` applied at the window boundary is seen as in-process;
- exactly the *port methods* the remote element has (:data:`PORT_METHODS`, listed in its
  ``Describe.rpcs``), each a blocking RPC ``hometwin.element.<name>.<method>`` — so
  ``hasattr(proxy, "set_plan")`` is as truthful as on the model;
- the config-derived attributes of :data:`SHADOW_ATTRS` (``building``), taken from a
  shadow model built from the announced config exactly as the element builds its own
  in ``setup()`` (no element lets ``set`` change the fields they derive from).

Values cross msgpack through :func:`encode` / :func:`decode`: numpy arrays as
``{"__ndarray__": {"dtype", "shape", "data"}}`` (data a list: float64 survives msgpack
bit for bit), tuples as ``{"__tuple__": [...]}``, and a callable among ``params()``'s
values (the heat pump's ``cop(temp_air)``) as ``{"__callable__": key}``: the proxy turns
it into a function that evaluates it on the element (``call_param`` RPC).

Proxy calls block: they run in the balancer's executor thread (where
``Inverter.prepare`` and ``Inverter.balance`` run) and the RPC is made on the event loop
with :func:`asyncio.run_coroutine_threadsafe`, like the battery's dispatch proxy.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import inspect
import json
import math
from typing import Any, Callable

import numpy as np
from autobahn.wamp.exception import ApplicationError

from hometwin.runtime import messages as m
from hometwin.element import Role

#: Methods a strategy calls on roster elements (``services/inverter/strategies``): served as RPCs
#: ``hometwin.element.<name>.<method>`` by every element that has them.
PORT_METHODS = ("params", "set_plan", "clear_plan", "defer_to", "upcoming_starts", "apply_plan",
                "max_heat_w", "draw_heat_w")
#: Port methods through which a plan changes an element: such an element is *plannable* and, in a
#: home whose inverter has a strategy, computes its request only after the window's plan is in place.
PLAN_METHODS = ("set_plan", "defer_to", "apply_plan")
#: Evaluates a callable value of ``params()`` (``call_param(key, *args)``).
CALL_PARAM = "call_param"
#: The balancer tells a plannable element to wait for its ``plan_ready`` (``plan_stage(inverter, on)``).
PLAN_STAGE = "plan_stage"
#: The inverter's ``Signals`` key that says "this window's plan is in place" (one 1.0 per step).
PLAN_READY = "plan_ready"
#: Attributes an element derives from its config alone (in ``setup()``); a proxy derives them the same way.
SHADOW_ATTRS = ("building",)

INVALID_ARGUMENT = "hometwin.error.invalid_argument"
STALE = "hometwin.error.stale"

_ND, _TUPLE, _CALLABLE = "__ndarray__", "__tuple__", "__callable__"
_KINDS = "biuf"  # bool, int, unsigned, float arrays cross; object/str arrays do not


class ElementUnavailable(RuntimeError):
    """A roster element did not answer (gone, timed out, busy settling): the plan goes on without it."""


# -- the codec ------------------------------------------------------------------------------------

def encode(value: Any, path: str = "value", callables: dict[str, Callable[..., Any]] | None = None) -> Any:
    """A msgpack-safe form of ``value`` that :func:`decode` turns back into the same thing.

    ``callables``: where given, a callable at the top level of a dict is stored there under its key
    and sent as ``{"__callable__": key}``; anywhere else a callable is an error.
    """
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in _KINDS:
            raise TypeError(f"{path}: a {value.dtype} array cannot cross WAMP")
        return {_ND: {"dtype": value.dtype.str, "shape": list(value.shape), "data": value.ravel().tolist()}}
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if callables is not None and callable(item) and not isinstance(item, type):
                callables[str(key)] = item
                out[str(key)] = {_CALLABLE: str(key)}
            else:
                out[str(key)] = encode(item, f"{path}.{key}")
        return out
    if isinstance(value, tuple):
        return {_TUPLE: [encode(v, f"{path}[{i}]") for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [encode(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if callable(value):
        raise TypeError(f"{path}: a function cannot cross WAMP (only the top-level values of params() may be functions)")
    raise TypeError(f"{path}: a {type(value).__name__} cannot cross WAMP")


def decode(value: Any, path: str = "value", on_callable: Callable[[str], Any] | None = None) -> Any:
    """Inverse of :func:`encode`; malformed tagged values raise ``ValueError`` naming ``path``."""
    if isinstance(value, dict):
        if len(value) == 1 and _ND in value:
            return _decode_array(value[_ND], path)
        if len(value) == 1 and _TUPLE in value:
            items = value[_TUPLE]
            if not isinstance(items, list):
                raise ValueError(f"{path}: {_TUPLE} must be a list")
            return tuple(decode(v, f"{path}[{i}]", on_callable) for i, v in enumerate(items))
        if len(value) == 1 and _CALLABLE in value:
            if on_callable is None:
                raise ValueError(f"{path}: a function cannot be an argument")
            return on_callable(str(value[_CALLABLE]))
        return {str(k): decode(v, f"{path}.{k}", on_callable) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v, f"{path}[{i}]", on_callable) for i, v in enumerate(value)]
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


# -- argument checks (element side) -----------------------------------------------------------------

def _array(name: str, value: Any, finite: bool) -> np.ndarray:
    if isinstance(value, (str, bytes, dict)) or np.ndim(value) != 1:
        raise ValueError(f"{name}: must be a one-dimensional array of numbers")
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: every item must be a number") from None
    if len(arr) > m.MAX_STEPS:
        raise ValueError(f"{name}: at most {m.MAX_STEPS} values (got {len(arr)})")
    if finite and not np.isfinite(arr).all():
        raise ValueError(f"{name}: {int((~np.isfinite(arr)).sum())} value(s) are not finite")
    if not finite and np.isinf(arr).any():
        raise ValueError(f"{name}: infinite values (NaN means 'no opinion', inf is not allowed)")
    return arr


def _number(name: str, value: Any, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name}: must be a finite number (got {value!r})")
    if positive and value <= 0:
        raise ValueError(f"{name}: must be > 0 (got {value!r})")
    return float(value)


def _step(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not float(value).is_integer() or value < 0:
        raise ValueError(f"{name}: must be a run step (an integer >= 0, got {value!r})")
    return int(value)


#: Unix seconds a port call may name (years 1900-2300): an int64 cast of anything beyond wraps silently.
EPOCH_RANGE = (-2_208_988_800, 10_413_792_000)


def _epoch(name: str, value: Any) -> float:
    v = _number(name, value)
    if not EPOCH_RANGE[0] <= v <= EPOCH_RANGE[1]:
        raise ValueError(f"{name}: unix seconds within {EPOCH_RANGE[0]}..{EPOCH_RANGE[1]} (got {value!r})")
    return v


def _epochs(name: str, value: Any) -> np.ndarray:
    arr = _array(name, value, finite=True)
    if not np.array_equal(arr, np.round(arr)):
        raise ValueError(f"{name}: epoch seconds must be whole numbers")
    if arr.size and (arr.min() < EPOCH_RANGE[0] or arr.max() > EPOCH_RANGE[1]):
        raise ValueError(f"{name}: unix seconds within {EPOCH_RANGE[0]}..{EPOCH_RANGE[1]}")
    return np.asarray(value, dtype=np.int64) if isinstance(value, np.ndarray) and value.dtype.kind in "iu" \
        else arr.astype(np.int64)


def _mapping(name: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{name}: must be a map")
    return value


def _key(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name}: must be the name of a params() value")
    return value


#: Parameter name (of the port methods) → its check; parameters not listed pass as decoded.
ARG_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "i0": _step,
    "setpoint_c": lambda n, v: _array(n, v, finite=False),  # NaN = no opinion (the geyser's plan)
    "heat_w": lambda n, v: _array(n, v, finite=False),
    "on": lambda n, v: _array(n, v, finite=False),
    "temp_out": lambda n, v: _array(n, v, finite=True),
    "epoch_s": _epochs,
    "dt_s": lambda n, v: _number(n, v, positive=True),
    "start_epoch_s": _epoch, "new_start_epoch_s": _epoch, "t0_epoch_s": _epoch, "t1_epoch_s": _epoch,
    "plan": _mapping,
    "key": _key,
}


def bind_args(method: str, fn: Callable[..., Any], args: Any, kwargs: Any) -> inspect.BoundArguments:
    """Decode and check the wire arguments of ``method`` against ``fn``'s signature.

    Raises ``ValueError`` naming the argument (``"set_plan: heat_w: …"``).
    """
    try:
        a = [decode(v, f"args[{i}]") for i, v in enumerate(args)]
        kw = {str(k): decode(v, str(k)) for k, v in kwargs.items()}
        bound = inspect.signature(fn).bind(*a, **kw)
    except TypeError as exc:
        raise ValueError(f"{method}: {exc}") from None
    except ValueError as exc:
        raise ValueError(f"{method}: {exc}") from None
    for name, value in list(bound.arguments.items()):
        check = ARG_CHECKS.get(name)
        if check is not None and value is not None:
            try:
                bound.arguments[name] = check(name, value)
            except ValueError as exc:
                raise ValueError(f"{method}: {exc}") from None
    return bound


def call_arg(i: int, value: Any) -> Any:
    """An argument of ``call_param``: a number or a one-dimensional array of finite numbers."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _number(f"args[{i}]", value)
    return _array(f"args[{i}]", value, finite=True)


def port_methods(element: Any) -> list[str]:
    """The port methods ``element`` has (what its service serves and its proxy gets)."""
    return [name for name in PORT_METHODS if callable(getattr(element, name, None))]


def plannable(element: Any) -> bool:
    """True when a strategy can change ``element``'s requests through a plan."""
    return any(callable(getattr(element, name, None)) for name in PLAN_METHODS)


def plannable_describe(d: m.Describe) -> bool:
    """True when an announced element takes plans and can be told to wait for them."""
    return PLAN_STAGE in d.rpcs and any(name in d.rpcs for name in PLAN_METHODS)


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
    ``prepare_epoch`` (bumped at every prepare stage: the config is refreshed once per stage)
    and ``element.home`` (the home the shadows live in).
    """

    def __init__(self, host: Any, d: m.Describe):
        self._host = host
        self._d = d
        self.name = d.element
        self.kind = d.kind
        self.role = Role(d.role)
        self.inputs = tuple(d.inputs)
        self.outputs = tuple(d.outputs)
        self.settle_on_shortfall = bool(d.settle_on_shortfall)
        self.session = d.session
        self.rpcs = tuple(d.rpcs)
        self._config_json: dict[str, Any] = dict(d.config)
        self._config: Any = None
        self._epoch = getattr(host, "prepare_epoch", 0)
        self._shadow: tuple[str, Any] | None = None
        for name in PORT_METHODS:
            if name in self.rpcs:
                setattr(self, name, self._params if name == "params" else self._method(name))

    def __repr__(self) -> str:
        return f"RemoteElement({self.name!r}, kind={self.kind!r}, ports={[p for p in PORT_METHODS if p in self.rpcs]})"

    # -- what it is ---------------------------------------------------------------------------------
    def _refresh(self) -> None:
        """Once per prepare stage: the element's current config (a ``set`` applies at window boundaries)."""
        epoch = getattr(self._host, "prepare_epoch", 0)
        if epoch == self._epoch:
            return
        self._epoch = epoch
        try:
            payload = self.call("describe")
        except ElementUnavailable:
            return  # keep what it last announced
        d = m.decode(m.Describe, payload, m.element_uri(self.name, "describe"), self._host.rejections)
        if d is not None and d.element == self.name and d.kind == self.kind and d.config != self._config_json:
            self._config_json = dict(d.config)
            self._config = None

    @property
    def config(self) -> Any:
        self._refresh()
        if self._config is None:
            from hometwin.registry import element_class

            self._config = element_class(self.kind).Config.model_validate(self._config_json)
        return self._config

    def describe(self) -> dict[str, Any]:
        """As :meth:`hometwin.element.Element.describe` (config as JSON)."""
        self._refresh()
        return {"name": self.name, "kind": self.kind, "role": self.role.value, "inputs": list(self.inputs),
                "outputs": list(self.outputs), "settle_on_shortfall": self.settle_on_shortfall,
                "config": copy.deepcopy(self._config_json)}

    def __getattr__(self, attr: str) -> Any:
        if attr in SHADOW_ATTRS:
            value = getattr(self._shadow_model(), attr, None)
            if value is not None:
                return value
        raise AttributeError(f"{type(self).__name__} {self.__dict__.get('name', '?')!r} has no attribute {attr!r}")

    def _shadow_model(self) -> Any:
        """A model built from the last known config (no refresh: the :data:`SHADOW_ATTRS` derive from
        config fields no element lets ``set`` change at run time, such as the heat pump's building)."""
        from hometwin.registry import element_class

        key = json.dumps(self._config_json, sort_keys=True)
        if self._shadow is None or self._shadow[0] != key:
            model = element_class(self.kind)(self.name, self._config_json, self._host.element.home)
            self._shadow = (key, model)
        return self._shadow[1]

    # -- calls --------------------------------------------------------------------------------------
    def call(self, op: str, *args: Any, **kwargs: Any) -> Any:
        """The raw RPC ``hometwin.element.<name>.<op>`` (arguments encoded), blocking."""
        h = self._host
        uri = m.element_uri(self.name, op)
        out = call_blocking(h.session, h.loop, uri, [encode(a, f"args[{i}]") for i, a in enumerate(args)],
                            {k: encode(v, k) for k, v in kwargs.items()}, h.timeout_s)
        h.metrics.msg("out", uri)
        counts = getattr(h, "rpc_counts", None)
        if counts is not None:
            counts[op] += 1
        return out

    def _method(self, name: str) -> Callable[..., Any]:
        def method(*args: Any, **kwargs: Any) -> Any:
            return decode(self.call(name, *args, **kwargs), f"{self.name}.{name}")

        method.__name__ = name
        method.__qualname__ = f"RemoteElement.{name}"
        return method

    def _params(self) -> dict[str, Any]:
        return decode(self.call("params"), f"{self.name}.params", self._remote_param)

    def _remote_param(self, key: str) -> Callable[..., Any]:
        def fn(*args: Any) -> Any:
            return decode(self.call(CALL_PARAM, key, *args), f"{self.name}.params.{key}")

        fn.__name__ = key
        fn.__qualname__ = f"{self.name}.params.{key}"
        return fn
