"""The live-twin routes (``/api/runs/{id}/stream``, ``/clock``, ``/elements/{name}/switch|set``).

(No ``from __future__ import annotations``: FastAPI reads the body models from the annotations,
and they are this function's arguments.)"""

import asyncio
import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from hometwin.api.runs import ApiError, Runs

#: A comment line on an idle stream this often, so proxies and the browser keep it open.
KEEPALIVE_S = 15.0


def add(api: APIRouter, runs: Runs, ClockBody: Any, SwitchBody: Any, SetBody: Any) -> None:
    from hometwin.api.live import LiveRun

    def live(run_id: str) -> LiveRun:
        run = runs.get(run_id)
        if not isinstance(run, LiveRun):
            raise ApiError(409, f"run {run_id} is an in-process run, not a live twin (start one with mode \"live\")")
        return run

    @api.get("/runs/{run_id}/stream", summary="live twin: Server-Sent Events (flows, clock, event, end) as JSON",
             response_class=StreamingResponse)
    async def stream(run_id: str, request: Request) -> StreamingResponse:
        run = live(run_id)
        queue = run.listen()

        async def events() -> Any:
            try:
                while True:
                    try:
                        event = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                    except asyncio.TimeoutError:
                        if await request.is_disconnected():
                            return
                        yield ": keep-alive\n\n"
                        continue
                    yield f"event: {event['type']}\ndata: {json.dumps(event, allow_nan=False, default=_nan)}\n\n"
                    if event["type"] == "end":
                        return
            finally:
                run.unlisten(queue)

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @api.post("/runs/{run_id}/clock", summary="live twin: pause, resume or set the speed")
    async def clock(run_id: str, body: ClockBody) -> Any:
        return await live(run_id).clock_op(body.op, body.speed)  # an ApiError: its 4xx

    @api.post("/runs/{run_id}/elements/{name}/switch", summary="live twin: switch an element's process on or off")
    async def switch(run_id: str, name: str, body: SwitchBody) -> Any:
        return await live(run_id).switch(name, body.on)  # an ApiError: its 4xx

    @api.post("/runs/{run_id}/elements/{name}/set", summary="live twin: change element properties (validated)")
    async def set_props(run_id: str, name: str, body: SetBody) -> Any:
        return await live(run_id).set(name, body.props)  # an ApiError: its 4xx

    @api.get("/runs/{run_id}/log", summary="live twin: the services' last log lines")
    def run_log(run_id: str) -> dict[str, Any]:
        return {"lines": list(live(run_id).logs)}


def _nan(value: Any) -> Any:
    raise TypeError(f"not JSON: {type(value).__name__}")
