"""The router's realm as the services need it: only the topics whose packets name their sender
disclose the publisher (the services check it, tests/test_security.py); every other event and call
carries none.

Disclosure costs Crossbar work on every event: the do-nothing ceiling of single-step windows rose
~15-25 % without it (``bench/bench_runtime.py``), so it is on only where an identity is checked.
"""

from __future__ import annotations

import asyncio
from typing import Any

from autobahn.wamp.types import PublishOptions, SubscribeOptions

from hometwin import auth
from hometwin.runtime import messages as m
from hometwin.runtime.wamp import component, stop_component
from conftest import WAIT_S


def _events(router: Any, publisher: str, uri: str, payload: Any) -> Any:
    """What a subscriber asking for details learns of one event ``publisher`` sends on ``uri``."""

    async def main() -> Any:
        sub = component(router.unix_url, "hometwin.cape-town", credentials=router.credentials("element.inverter"))
        pub = component(router.unix_url, "hometwin.cape-town", credentials=router.credentials(publisher))
        got: asyncio.Future = asyncio.get_running_loop().create_future()
        ready: asyncio.Future = asyncio.get_running_loop().create_future()

        @sub.on_join
        async def joined(session: Any, details: Any) -> None:
            await session.subscribe(lambda payload, details: got.done() or got.set_result(details), uri,
                                    options=SubscribeOptions(details=True))
            ready.set_result(True)

        @pub.on_join
        async def pub_joined(session: Any, details: Any) -> None:
            await ready
            session.publish(uri, payload, options=PublishOptions(acknowledge=True))

        sub.start(asyncio.get_running_loop())
        await asyncio.wait_for(ready, WAIT_S)
        pub.start(asyncio.get_running_loop())
        try:
            return await asyncio.wait_for(got, WAIT_S)
        finally:
            await stop_component(pub)
            await stop_component(sub)

    return asyncio.run(main())


def test_identified_topics_disclose_the_publisher_and_no_other(router: Any) -> None:
    request = _events(router, "element.tv", m.REQUEST, {"element": "tv"})
    assert request.publisher_authid == "element.tv" and request.publisher_authrole == "element.tv"
    # a topic no packet names its sender on: no per-event work for the router
    tick = _events(router, "clock", m.TICK, {"seq": 0})
    assert tick.publisher is None and tick.publisher_authid is None


def test_roles_are_exact_uris_or_an_elements_own_prefix() -> None:
    """Crossbar takes the longest matching permission and an exact one that is merely a prefix of a
    URI denies it: every permission is an exact URI, or a prefix ending in '.' of one element's RPCs."""
    elements = [("sun", "sun"), ("inverter", "inverter"), ("battery", "battery"), ("tv", "tv")]
    for role in auth.roles_for(elements):
        for p in role.crossbar()["permissions"]:
            if p["match"] == "prefix":
                assert p["uri"].startswith("hometwin.element.") and p["uri"].count(".") == 3, p
            else:
                assert not p["uri"].endswith("."), p


def _bare(**kw: Any) -> Any:
    from hometwin.runtime.router import Router

    return Router(realm="hometwin.ports", roles=auth.roles_for([]), secrets=auth.new_secrets(["viewer"]), **kw)


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
    r = _bare(cbdir=tmp_path / ".crossbar").start(timeout_s=90)
    try:
        assert port not in (r.port, r.rawsocket_port) and r.port != r.rawsocket_port
        wait_for_port("127.0.0.1", r.port, WAIT_S)
        wait_for_port("127.0.0.1", r.rawsocket_port, WAIT_S)
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
            _bare(port=port, rawsocket_port=port2, cbdir=tmp_path / ".crossbar").start(60)
    finally:
        held.close()
    assert err.value.port_taken and "before accepting connections; crossbar said:" in str(err.value)
    assert "listen" in str(err.value).lower()
