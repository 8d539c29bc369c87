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
