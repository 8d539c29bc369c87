"""The router's realm as the services need it: events and calls carry no publisher or caller.

Nothing in the twin reads who published (an element names itself in its packets and
announces its session), and disclosure costs Crossbar work on every event: the do-nothing
ceiling of single-step windows rose ~15-25 % without it (``bench/bench_runtime.py``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from autobahn.wamp.types import CallOptions, PublishOptions, RegisterOptions, SubscribeOptions

from hometwin.runtime.wamp import component, stop_component
from tests.runtime_support import router  # noqa: F401  (a fixture)


def test_events_and_calls_disclose_no_session(router: Any) -> None:  # noqa: F811
    async def main() -> tuple[Any, Any]:
        comp = component(router.unix_url, "hometwin.cape-town")
        out: asyncio.Future = asyncio.get_running_loop().create_future()

        @comp.on_join
        async def joined(session: Any, details: Any) -> None:
            got: asyncio.Future = asyncio.get_running_loop().create_future()
            await session.subscribe(lambda payload, details: got.done() or got.set_result(details),
                                    "hometwin.test.disclose", options=SubscribeOptions(details_arg="details"))
            await session.register(lambda details: details.caller, "hometwin.test.who",
                                   options=RegisterOptions(details_arg="details"))
            session.publish("hometwin.test.disclose", 1, options=PublishOptions(exclude_me=False))
            event = await asyncio.wait_for(got, 10)
            caller = await session.call("hometwin.test.who", options=CallOptions())
            out.set_result((event, caller))

        comp.start(asyncio.get_running_loop())
        try:
            return await asyncio.wait_for(out, 30)
        finally:
            await stop_component(comp)

    event, caller = asyncio.run(main())
    assert event.publisher is None and event.publisher_authid is None
    assert caller is None


def _bound_port() -> tuple[Any, int]:
    """A loopback port held by a bound socket (not listening: a connection there is refused)."""
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    return s, s.getsockname()[1]


def test_a_port_taken_before_crossbar_binds_it_is_chosen_again(monkeypatch: Any, tmp_path: Any) -> None:
    """free_port's port was free a moment ago; another process can take it before crossbar binds
    (the flake this guards against: 'router exited with code 1 before accepting connections')."""
    import hometwin.runtime.router as rt
    from hometwin.runtime.router import Router, wait_for_port

    held, port = _bound_port()
    real, first = rt.free_port, [port]
    monkeypatch.setattr(rt, "free_port", lambda host="127.0.0.1": first.pop() if first else real(host))
    r = Router(realm="hometwin.ports", cbdir=tmp_path / ".crossbar").start(timeout_s=90)
    try:
        assert port not in (r.port, r.rawsocket_port) and r.port != r.rawsocket_port
        wait_for_port("127.0.0.1", r.port, 5)
        wait_for_port("127.0.0.1", r.rawsocket_port, 5)
    finally:
        r.stop()
        held.close()


def test_a_given_port_in_use_fails_with_crossbars_words(tmp_path: Any) -> None:
    import pytest

    from hometwin.runtime.router import Router, RouterExited

    held, port = _bound_port()
    other, port2 = _bound_port()
    other.close()  # a free one for the other transport
    try:
        with pytest.raises(RouterExited) as err:
            Router(realm="hometwin.ports", port=port, rawsocket_port=port2, cbdir=tmp_path / ".crossbar").start(60)
    finally:
        held.close()
    assert err.value.port_taken and "before accepting connections; crossbar said:" in str(err.value)
    assert "listen" in str(err.value).lower()
