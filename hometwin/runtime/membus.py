"""A WAMP router in memory for services hosted in one process: protocol tests and handler benches.

:class:`MemoryBus` stands in for Crossbar where many windows must run in a second: every payload
goes through msgpack as on the wire, events reach every subscriber but their publisher in publish
order, RPCs call the endpoint directly, and :meth:`MemoryBus.leave` drops a session and reports it
on ``wamp.session.on_leave`` as the router does.  :meth:`MemoryBus.run` is where every delivery and
RPC runs a host's code (``bench/bench_handlers.py`` charges time there).  The router itself is
tested over Crossbar (``tests/test_runtime_*``).
"""

from __future__ import annotations

import asyncio
import collections
import functools
from typing import Any, Callable

import msgpack

from hometwin.runtime import messages as m


def _wire(value: Any) -> Any:
    return msgpack.unpackb(msgpack.packb(value, use_bin_type=True), raw=False)


class MemoryBus:
    """Publish/subscribe and RPC between the hosts of one process, deliveries in publish order."""

    def __init__(self) -> None:
        self.subs: dict[str, list[tuple[int, Callable[..., Any]]]] = collections.defaultdict(list)
        self.rpcs: dict[str, tuple[int, Callable[..., Any]]] = {}
        self.queue: collections.deque = collections.deque()
        self.pumping = False
        self.deliveries = 0
        self.received: collections.Counter = collections.Counter()  # (session, uri) → events delivered
        self.authids: dict[int, str] = {}  # session → principal (hometwin.auth)

    def session(self, session_id: int, authid: str | None = None) -> "BusSession":
        """A session; ``authid``: the principal it joined as (disclosed to subscribers that ask,
        as the router discloses the publisher on the topics whose packets name their sender)."""
        if authid is not None:
            self.authids[session_id] = authid
        return BusSession(self, session_id)

    def run(self, session_id: int, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` as a wake-up of ``session_id`` (a delivery or an RPC)."""
        return fn(*args, **kwargs)

    def publish(self, sender: int, uri: str, args: tuple[Any, ...], eligible: list[int] | None = None) -> None:
        data = msgpack.packb(list(args), use_bin_type=True)
        for sid, fn in list(self.subs[uri]):
            # WAMP's default: a publisher does not get its own event; ``eligible``: only those sessions
            if sid != sender and (eligible is None or sid in eligible):
                if getattr(fn, "wants_details", False):
                    fn = functools.partial(fn, details=EventDetails(self.authids.get(sender)))
                self.queue.append((sid, uri, fn, data))
        if self.pumping:
            return
        self.pumping = True
        try:
            while self.queue:
                sid, uri, fn, data = self.queue.popleft()
                self.deliveries += 1
                self.received[(sid, uri)] += 1
                self.run(sid, fn, *msgpack.unpackb(data, raw=False))
        finally:
            self.pumping = False

    def leave(self, session_id: int) -> None:
        """The session is gone: its subscriptions and registrations too, and ``on_leave`` says so."""
        for uri in list(self.subs):
            self.subs[uri] = [(sid, fn) for sid, fn in self.subs[uri] if sid != session_id]
        self.rpcs = {u: (sid, fn) for u, (sid, fn) in self.rpcs.items() if sid != session_id}
        self.publish(0, m.SESSION_ON_LEAVE, (session_id,))


class EventDetails:
    """What a subscriber asking for details learns of an event: who published it."""

    def __init__(self, publisher_authid: str | None):
        self.publisher_authid = publisher_authid


class _WithDetails:
    wants_details = True

    def __init__(self, fn: Callable[..., Any]):
        self.fn = fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)


class BusSession:
    """The part of autobahn's ``ApplicationSession`` the hosts use."""

    def __init__(self, bus: MemoryBus, session_id: int):
        self.bus, self._session_id = bus, session_id

    async def subscribe(self, fn: Callable[..., Any], uri: str, options: Any = None) -> None:
        if getattr(options, "details", False):
            fn = _WithDetails(fn)
        self.bus.subs[uri].append((self._session_id, fn))

    async def register(self, fn: Callable[..., Any], uri: str, options: Any = None) -> None:
        self.bus.rpcs[uri] = (self._session_id, fn)

    def publish(self, uri: str, *args: Any, options: Any = None) -> None:
        self.bus.publish(self._session_id, uri, args, getattr(options, "eligible", None))

    async def call(self, uri: str, *args: Any, **kwargs: Any) -> Any:
        sid, fn = self.bus.rpcs[uri]
        wire_args, wire_kwargs = _wire([list(args), kwargs])
        result = self.bus.run(sid, fn, *wire_args, **wire_kwargs)
        if asyncio.iscoroutine(result):
            result = await result
        return _wire(result)
