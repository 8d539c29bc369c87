"""The FastAPI application of ``hometwin serve`` (docs/api.md): every ``/api`` route needs the
login token (``Authorization: Bearer``, or ``?token=`` where a browser cannot set a header), bodies
are at most :data:`MAX_BODY_BYTES`, every refusal is a 4xx with a one-line ``detail`` (and, for a
home, ``errors``: one per problem with its field path).  The built UI is served at ``/``."""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from hometwin.api import homes, views
from hometwin.api.runs import ApiError, InProcessRun, Run, RunNotFound, Runs, TooManyRuns, file_runs
from hometwin.errors import bounded_repr, clip
from hometwin.spec import MAX_RUN_S, SpecError, home_context, json_schema, parse_duration_s

log = logging.getLogger("hometwin.serve")

#: Largest request body (1 MiB): the biggest example home is 4 KiB, and ``hometwin validate``
#: reads no spec larger than this either (hometwin.datafiles.MAX_SPEC_BYTES).
MAX_BODY_BYTES = 2**20
#: Host names a request may name when the API runs without a token (--no-auth, on loopback).
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
#: Most steps of a run started over the API (two years at 1-minute steps): a run's results are kept
#: in memory (about 200 bytes a step), and a server keeps up to 20 runs.
MAX_API_STEPS = 1_100_000
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Settings:
    token: str | None = field(default_factory=lambda: secrets.token_hex(24))  # None: --no-auth
    base_dir: Path = field(default_factory=Path.cwd)  # relative data files of posted homes resolve here
    examples_dir: Path = REPO / "examples" / "homes"
    ui_dir: Path = REPO / "ui" / "dist" / "hometwin-ui" / "browser"
    work_dir: Path | None = None  # live twins' spec, state and credentials (None: a temporary folder)
    kube: Any = None  # a hometwin.api.kube.HomeApplier with --kubernetes
    results_dir: Path | None = None  # result folders of hometwin run --out, offered as finished runs
    max_body: int = MAX_BODY_BYTES


# -- bodies ------------------------------------------------------------------------------------

class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


#: A live twin's pace: simulated seconds per wall second (a year in under a minute at most).
Speed = Annotated[float, Field(gt=0, le=1_000_000)]


class HomeBody(_Body):
    home: dict[str, Any] | None = Field(None, description="the Home document as JSON")
    yaml: str | None = Field(None, description="or its YAML text")


class YamlBody(_Body):
    yaml: str = Field(description="a Home document's YAML text")


class RunBody(HomeBody):
    days: float | None = Field(None, gt=0, le=MAX_RUN_S / 86400,
                               description="run only this many days (default: the home's clock)")
    mode: Literal["run", "live"] = Field("run", description="run: in-process, as fast as it goes; live: a twin "
                                                            "of services, paced by the clock")
    speed: Speed | Literal["max"] = Field(60, description="live: simulated seconds per wall second, or max")
    window: int | None = Field(None, ge=1, le=10_000_000, description="steps per window (default: one day; "
                                                                      "live: one step)")


class ClockBody(_Body):
    op: Literal["pause", "resume", "set_speed"]
    speed: Speed | Literal["max"] | None = Field(None, description="set_speed: simulated seconds per wall second")


class SwitchBody(_Body):
    on: bool


class SetBody(_Body):
    props: dict[str, Any] = Field(description="config properties of the element and their new values")


# -- errors --------------------------------------------------------------------------------------

def _spec_error(exc: SpecError) -> JSONResponse:
    items = homes.error_items([" ".join(line.split()) for line in exc.errors])  # one line each
    first = items[0]["field"] + ": " + items[0]["message"] if items and items[0]["field"] else \
        (items[0]["message"] if items else "invalid home")
    more = f" (and {len(items) - 1} more)" if len(items) > 1 else ""
    return JSONResponse({"detail": clip(f"invalid home: {first}", 500) + more, "errors": items}, status_code=422)


def _request_error(exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    bad_json = next((e for e in errors if e.get("type") == "json_invalid"), None)
    if bad_json is not None:
        ctx = bad_json.get("ctx") or {}
        pos = bad_json.get("loc", [None, None])[-1]
        return JSONResponse({"detail": f"malformed JSON at character {pos}: {ctx.get('error', 'cannot parse')}"},
                            status_code=400)
    items = []
    for e in errors:
        loc = [p for p in e.get("loc", ()) if p != "body"]
        where = "".join(f"[{p}]" if isinstance(p, int) else ("." if i else "") + str(p) for i, p in enumerate(loc))
        if e.get("type") == "missing" and not loc:
            msg = "a JSON body is required"
        elif e.get("type") == "extra_forbidden":
            msg = "unknown field"
        else:
            msg = f"{e.get('msg', 'invalid')} (got {bounded_repr(e.get('input'))})"
        items.append({"path": loc, "field": where, "message": clip(msg, 300)})
    first = items[0] if items else {"field": "", "message": "invalid request"}
    detail = f"{first['field'] + ': ' if first['field'] else ''}{first['message']}"
    return JSONResponse({"detail": detail + (f" (and {len(items) - 1} more)" if len(items) > 1 else ""),
                         "errors": items}, status_code=422)


class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes is refused with 413 before it is read
    whole (by its Content-Length, or while it streams in without one); the body, at most
    ``limit`` bytes, is handed on as it came."""

    def __init__(self, app: Any, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or ()).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            return await self._refuse(send)
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self.limit:
                return await self._refuse(send)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay() -> Any:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send: Any) -> None:
        response = JSONResponse({"detail": f"request body too large: at most {self.limit} bytes "
                                           f"({self.limit // 2**10} KiB)"}, status_code=413)
        await response({"type": "http"}, _no_receive, send)


async def _no_receive() -> Any:
    return {"type": "http.disconnect"}


# -- the application -------------------------------------------------------------------------

_bearer = HTTPBearer(auto_error=False, description="the token `hometwin serve` printed (also as ?token=)")


def create_app(settings: Settings | None = None, runs: Runs | None = None) -> FastAPI:
    settings = settings or Settings()
    runs = runs or Runs()
    if settings.results_dir is not None:
        for run in file_runs(Path(settings.results_dir)):
            runs.add(run)
    app = FastAPI(title="hometwin", version="0.1.0", docs_url=None, redoc_url=None, openapi_url=None,
                  description="The HTTP API of `hometwin serve` (docs/api.md).")
    app.state.settings = settings
    app.state.runs = runs

    def require_token(request: Request, cred: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> None:
        if settings.token is None:  # --no-auth (loopback only): a page that rebinds its own name to
            host = (request.headers.get("host") or "").rsplit(":", 1)[0].strip("[]")  # 127.0.0.1 is
            if host not in LOOPBACK_NAMES:  # not served: its requests name its own host
                raise HTTPException(403, f"--no-auth serves requests to a loopback name only (Host: "
                                         f"{clip(host, 60)!r}; use 127.0.0.1 or localhost)")
            return
        given = cred.credentials if cred is not None else request.query_params.get("token")
        if not given or not secrets.compare_digest(given.encode(), settings.token.encode()):
            raise HTTPException(401, "a valid login token is required: the address hometwin serve printed "
                                     "(?token=…), or the header Authorization: Bearer <token>",
                                headers={"WWW-Authenticate": "Bearer"})

    api = APIRouter(prefix="/api", dependencies=[Depends(require_token)])

    @app.exception_handler(SpecError)
    async def _on_spec_error(_request: Request, exc: SpecError) -> JSONResponse:
        return _spec_error(exc)

    @app.exception_handler(RequestValidationError)
    async def _on_request_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return _request_error(exc)

    @app.exception_handler(RunNotFound)
    async def _on_not_found(_request: Request, exc: RunNotFound) -> JSONResponse:
        return JSONResponse({"detail": exc.args[0]}, status_code=404)

    @app.exception_handler(TooManyRuns)
    async def _on_too_many(_request: Request, exc: TooManyRuns) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=429)

    @app.exception_handler(ApiError)
    async def _on_api_error(_request: Request, exc: ApiError) -> JSONResponse:
        body: dict[str, Any] = {"detail": exc.detail}
        if exc.errors:
            body["errors"] = exc.errors
        return JSONResponse(body, status_code=exc.status)

    @app.exception_handler(Exception)
    async def _on_bug(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"detail": f"internal error ({type(exc).__name__}) in {request.method} "
                                       f"{request.url.path}; the server's log has the details"}, status_code=500)

    # -- documents ------------------------------------------------------------------------------
    @api.get("/kinds", summary="every element kind: role, description, icon, JSON Schema of its config")
    def get_kinds() -> list[dict[str, Any]]:
        return homes.kinds()

    @api.get("/schema/home", summary="JSON Schema of a Home document")
    def get_home_schema() -> dict[str, Any]:
        return json_schema()

    @api.get("/examples", summary="the bundled example homes that run here")
    def get_examples() -> list[dict[str, str]]:
        return [{"name": e["name"], "title": e["title"]} for e in homes.runnable_examples(settings.examples_dir).values()]

    @api.get("/examples/{name}", summary="one example home: its YAML text and the document as JSON")
    def get_example(name: str) -> dict[str, Any]:
        found = homes.runnable_examples(settings.examples_dir)
        if name not in found:
            raise ApiError(404, f"no example {bounded_repr(name)} (examples: {', '.join(found) or 'none'})")
        return {"yaml": found[name]["yaml"], "home": found[name]["home"], "title": found[name]["title"]}

    @api.post("/validate", summary="validate a Home (JSON or YAML) and its data files, as hometwin validate")
    def post_validate(body: HomeBody) -> dict[str, Any]:
        home = homes.home_from_body(body.model_dump(exclude_unset=True), base_dir=settings.base_dir)
        return {"ok": True, "home": homes.dump_home(home), "elements": len(home.spec.elements)}

    @api.post("/export", summary="a Home as YAML text that hometwin validate accepts")
    def post_export(body: HomeBody) -> dict[str, Any]:
        home = homes.home_from_body(body.model_dump(exclude_unset=True), base_dir=settings.base_dir, setup=False)
        return {"yaml": homes.to_yaml(home)}

    @api.post("/import", summary="a Home from YAML text")
    def post_import(body: YamlBody) -> dict[str, Any]:
        home = homes.home_from_body({"yaml": body.yaml}, base_dir=settings.base_dir, setup=False)
        return {"home": homes.dump_home(home)}

    # -- runs -----------------------------------------------------------------------------------
    @api.post("/runs", status_code=202, summary="start a run (in-process) or a live twin")
    async def post_run(body: RunBody) -> dict[str, Any]:
        def prepare() -> Run:  # checks and element set-up take seconds: not on the event loop
            fields = body.model_dump(exclude_unset=True, include={"home", "yaml"})
            home = homes.home_from_body(fields, base_dir=settings.base_dir)
            until_s = int(body.days * 86400) if body.days is not None else None
            ctx = home_context(home, until_s)
            if ctx.n_steps > MAX_API_STEPS:
                raise ApiError(422, f"days: a run over the API has at most {MAX_API_STEPS} steps (its results are "
                                    f"kept in memory); this one has {ctx.n_steps} — use hometwin run for longer ones")
            runs.check_room(body.mode)
            if body.mode == "live":
                from hometwin.api.live import LiveRun

                return LiveRun(runs.new_id(), home, until_s=until_s, speed=body.speed, window=body.window,
                               work_dir=settings.work_dir)
            return InProcessRun(runs.new_id(), home, until_s=until_s, window=body.window)

        run = await asyncio.get_running_loop().run_in_executor(None, prepare)
        runs.check_room(body.mode)  # again, with no await until it is added: two requests at once
        runs.add(run)
        try:
            await run.start()
        except BaseException:  # a twin that cannot start is not kept
            runs.discard(run.id)
            raise
        return run.summary()

    @api.get("/runs", summary="every run kept")
    def get_runs() -> list[dict[str, Any]]:
        return [r.summary() for r in runs.all()]

    @api.get("/runs/{run_id}", summary="one run; with its KPIs once it has settled steps")
    def get_run(run_id: str) -> dict[str, Any]:
        run = runs.get(run_id)
        out = run.summary()
        result = run.result
        if result is not None:
            out["kpis"] = views.kpis(result)["kpis"]
        return out

    @api.delete("/runs/{run_id}", summary="stop a run (its steps settled so far are kept)")
    async def delete_run(run_id: str) -> dict[str, Any]:
        run = runs.get(run_id)
        if run.active:
            await asyncio.get_running_loop().run_in_executor(None, run.stop)
        return run.summary()

    def _result(run_id: str) -> Any:
        run = runs.get(run_id)
        result = run.current_result()
        if result is None or not len(result.frame):
            raise ApiError(409, f"run {run_id} has no settled steps yet (status {run.status}); try again shortly")
        return result

    @api.get("/runs/{run_id}/kpis", summary="KPIs with labels and units (ratios in %)")
    def get_kpis(run_id: str) -> dict[str, Any]:
        return views.kpis(_result(run_id))

    @api.get("/runs/{run_id}/flows", summary="mean power per interval [W] of PV, load, battery, grid, each element; SoC")
    def get_flows(run_id: str, every: str | None = Query(None, max_length=32, description="e.g. 15min, 1h "
                                                          "(default: the step, coarser for long runs)")) -> dict[str, Any]:
        result = _result(run_id)
        every_s = None
        if every is not None:
            try:
                every_s = parse_duration_s(every)
            except ValueError as exc:
                raise ApiError(422, f"every: {exc}") from None
            if every_s <= 0:
                raise ApiError(422, f"every: must be > 0 (got {bounded_repr(every)})")
        try:
            return views.flows(result, every_s)
        except ValueError as exc:
            raise ApiError(422, str(exc)) from None

    @api.get("/runs/{run_id}/daily", summary="energy per local day [kWh]: sources and uses")
    def get_daily(run_id: str) -> dict[str, Any]:
        return views.daily(_result(run_id))

    @api.get("/runs/{run_id}/monthly", summary="cost per local month")
    def get_monthly(run_id: str) -> dict[str, Any]:
        return views.monthly(_result(run_id))

    @api.get("/compare", summary="KPIs of runs side by side, differences in % of the first")
    def get_compare(ids: str = Query(..., max_length=400, description="run ids, comma-separated, e.g. r1,r2")) -> dict[str, Any]:
        wanted = [i.strip() for i in ids.split(",") if i.strip()]
        if not 1 <= len(wanted) <= 10:
            raise ApiError(422, f"ids: give 1 to 10 run ids, comma-separated (got {len(wanted)})")
        return views.compare([(i, views.kpis(_result(i))) for i in wanted])

    # -- live twins -------------------------------------------------------------------------------
    from hometwin.api import live_routes

    live_routes.add(api, runs, ClockBody, SwitchBody, SetBody)

    # -- Kubernetes -------------------------------------------------------------------------------
    @api.post("/apply", summary="--kubernetes: create or update the Home resource")
    async def post_apply(body: HomeBody) -> dict[str, Any]:
        if settings.kube is None:
            raise ApiError(409, "not connected to Kubernetes: start hometwin serve with --kubernetes")
        home = homes.home_from_body(body.model_dump(exclude_unset=True), base_dir=settings.base_dir, setup=False)
        return await settings.kube.apply(homes.dump_home(home))  # an ApiError if the cluster refuses it

    # -- documentation ------------------------------------------------------------------------------
    @api.get("/openapi.json", include_in_schema=False)
    def get_openapi() -> dict[str, Any]:
        return app.openapi()

    @api.get("/docs", include_in_schema=False)
    def get_docs() -> HTMLResponse:
        query = f"?token={settings.token}" if settings.token else ""
        return get_swagger_ui_html(openapi_url=f"/api/openapi.json{query}", title="hometwin API")

    @api.api_route("/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"], include_in_schema=False)
    def unknown(rest: str) -> None:
        raise ApiError(404, f"no such API endpoint /api/{clip(rest, 80)} (see /api/docs)")

    app.include_router(api)
    _serve_ui(app, settings)
    app.add_middleware(BodyLimit, limit=settings.max_body)
    return app


def ui_missing_text(ui_dir: Path) -> str:
    return (f"the UI is not built: {ui_dir} has no index.html (cd ui && npm ci && npx ng build); "
            "the API answers at /api (see /api/docs)")


def _serve_ui(app: FastAPI, settings: Settings) -> None:
    root = Path(settings.ui_dir).resolve()

    @app.get("/{path:path}", include_in_schema=False)
    def ui(path: str) -> Any:
        index = root / "index.html"
        if not index.is_file():
            return HTMLResponse(f"<!doctype html><title>hometwin</title><p>{ui_missing_text(root)}</p>", status_code=503)
        target = (root / path).resolve()
        if path and target.is_relative_to(root) and target.is_file():
            return FileResponse(target)
        return FileResponse(index)  # the Angular router's paths
