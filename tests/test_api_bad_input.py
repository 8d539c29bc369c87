"""Bad input to the HTTP API: every refusal a 4xx with a clear one-line ``detail``; the server
goes on (issue 20, "Bad input to the API").  And the login token: no ``/api`` route answers
without it, and ``--no-auth`` is refused off loopback."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from fastapi.routing import APIRoute
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api_support import TOKEN, client, example
from hometwin.api.app import MAX_BODY_BYTES

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def one_line(r: Any) -> str:
    detail = r.json()["detail"]
    assert isinstance(detail, str) and detail and "\n" not in detail, r.text
    return detail


def test_malformed_json_is_400_saying_where() -> None:
    c = client()
    r = c.post("/api/validate", content=b'{"home": {"metadata": ', headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert "malformed JSON" in one_line(r)
    assert c.get("/api/kinds").status_code == 200  # still serving


def test_wrong_body_shape_names_the_field() -> None:
    c = client()
    r = c.post("/api/runs", json={"home": example("minimal"), "days": -3})
    assert r.status_code == 422 and one_line(r).startswith("days:")
    assert r.json()["errors"][0]["path"] == ["days"]
    r = c.post("/api/runs", json={"home": example("minimal"), "colour": "red"})
    assert r.status_code == 422 and "colour" in one_line(r)
    r = c.post("/api/runs", json={"home": example("minimal"), "mode": "live", "speed": 0})
    assert r.status_code == 422 and one_line(r).startswith("speed")
    r = c.post("/api/validate", json={"home": example("minimal"), "yaml": "x: 1"})
    assert r.status_code == 422 and "exactly one" in one_line(r)
    r = c.post("/api/validate", json=[1, 2])
    assert r.status_code == 422


def test_unknown_kind_names_it_and_the_allowed_ones() -> None:
    doc = example("minimal")
    doc["spec"]["elements"][3]["kind"] = "flux_capacitor"
    r = client().post("/api/validate", json={"home": doc})
    assert r.status_code == 422
    err = r.json()["errors"][0]
    assert err["field"] == "elements[3].kind" and "flux_capacitor" in err["message"] and "battery" in err["message"]
    assert "flux_capacitor" in one_line(r)


def test_oversize_body_is_413() -> None:
    c = client()
    big = {"yaml": "#" * (MAX_BODY_BYTES + 1)}
    r = c.post("/api/validate", json=big)
    assert r.status_code == 413 and "1024 KiB" in one_line(r)

    def chunks() -> Any:  # no Content-Length: refused while it streams in
        for _ in range(MAX_BODY_BYTES // 65536 + 2):
            yield b" " * 65536

    r = c.post("/api/validate", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert c.post("/api/validate", json={"home": example("minimal")}).status_code == 200


def test_unknown_run_and_route_are_404() -> None:
    c = client()
    for path in ("/api/runs/r999", "/api/runs/r999/kpis", "/api/runs/r999/flows", "/api/runs/r999/stream"):
        r = c.get(path)
        assert r.status_code == 404 and "r999" in one_line(r), path
    assert c.delete("/api/runs/r999").status_code == 404
    assert c.post("/api/runs/r999/clock", json={"op": "pause"}).status_code == 404
    assert c.get("/api/compare", params={"ids": "r1,r2"}).status_code == 404
    r = c.get("/api/nothing-here")
    assert r.status_code == 404 and "/api/nothing-here" in one_line(r)


def test_one_run_too_many_is_429_and_starts_nothing() -> None:
    from fastapi.testclient import TestClient

    from api_support import TOKEN
    from hometwin.api.app import Settings, create_app
    from hometwin.api.runs import Runs

    c = TestClient(create_app(Settings(token=TOKEN), Runs(max_active=1)), headers={"Authorization": f"Bearer {TOKEN}"})
    first = c.post("/api/runs", json={"home": example("cape-town"), "window": 60}).json()["id"]  # a year
    r = c.post("/api/runs", json={"home": example("minimal")})
    assert r.status_code == 429 and "at most 1" in one_line(r)
    assert [run["id"] for run in c.get("/api/runs").json()] == [first]
    assert c.delete(f"/api/runs/{first}").json()["status"] == "stopped"
    assert c.post("/api/runs", json={"home": example("minimal"), "days": 1}).status_code == 202


def test_bad_flows_interval_is_refused() -> None:
    c = client()
    run_id = c.post("/api/runs", json={"home": example("minimal"), "days": 1}).json()["id"]
    from api_support import wait_run

    wait_run(c, run_id)
    r = c.get(f"/api/runs/{run_id}/flows", params={"every": "soon"})
    assert r.status_code == 422 and one_line(r).startswith("every:")
    r = c.get(f"/api/runs/{run_id}/flows", params={"every": "10s"})
    assert r.status_code == 422 and "60 s" in one_line(r)
    r = c.post(f"/api/runs/{run_id}/clock", json={"op": "pause"})
    assert r.status_code == 409 and "not a live twin" in one_line(r)


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
                           max_leaves=20)
bodies = st.one_of(json_values,
                   st.fixed_dictionaries({"home": json_values}),
                   st.fixed_dictionaries({"yaml": st.text(max_size=200)}),
                   st.fixed_dictionaries({"home": st.just(example("minimal")),
                                          "days": json_values, "mode": st.sampled_from(["run", "bogus", 3])}),
                   st.binary(max_size=200))


@SETTINGS
@given(body=bodies)
def test_arbitrary_bodies_never_give_a_server_error(body: Any) -> None:
    c = CLIENT
    for path in ("/api/validate", "/api/import", "/api/export", "/api/runs"):
        if isinstance(body, bytes):
            r = c.post(path, content=body, headers={"Content-Type": "application/json"})
        else:
            r = c.post(path, content=json.dumps(body), headers={"Content-Type": "application/json"})
        assert r.status_code < 500, (path, body, r.text)
        if r.status_code >= 400:
            one_line(r)
    for run in c.get("/api/runs").json():  # a body that started a run: stop it again
        if run["status"] == "running":
            c.delete(f"/api/runs/{run['id']}")


CLIENT = client()


# -- the login token ---------------------------------------------------------------------------

def api_routes(routes: Any) -> Any:
    """Every APIRoute, also inside included routers (FastAPI ≥ 0.160 keeps them there)."""
    for r in routes:
        if isinstance(r, APIRoute):
            yield r
            continue
        inner = getattr(r, "original_router", None) or r
        if hasattr(inner, "routes"):
            yield from api_routes(inner.routes)


def test_no_api_route_answers_without_the_token() -> None:
    c = client()
    app = c.app
    routes = [r for r in api_routes(app.routes) if r.path.startswith("/api")]
    assert len(routes) >= 20
    for route in routes:
        path = route.path.replace("{run_id}", "r1").replace("{name}", "oven").replace("{rest:path}", "x")
        for method in route.methods:
            for headers in ({}, {"Authorization": "Bearer wrong-token"}, {"Authorization": f"Basic {TOKEN}"}):
                r = c.request(method, path, headers={"Authorization": "", **headers}, json={})
                assert r.status_code == 401, (method, path, headers, r.status_code, r.text)
                assert TOKEN not in r.text
    # with it, in the header or (for EventSource) the query
    assert c.get("/api/kinds").status_code == 200
    assert c.get(f"/api/kinds?token={TOKEN}", headers={"Authorization": ""}).status_code == 200
    # the UI's static files hold no data: no token needed
    assert c.get("/", headers={"Authorization": ""}).status_code in (200, 503)


def test_without_a_token_only_loopback_names_are_served() -> None:
    from fastapi.testclient import TestClient

    from hometwin.api.app import Settings, create_app

    c = TestClient(create_app(Settings(token=None)), base_url="http://127.0.0.1:8765")
    assert c.get("/api/kinds").status_code == 200
    assert c.get("/api/kinds", headers={"Host": "localhost:8765"}).status_code == 200
    r = c.get("/api/kinds", headers={"Host": "evil.example:8765"})  # DNS rebinding to 127.0.0.1
    assert r.status_code == 403 and "loopback" in one_line(r)


def test_no_auth_is_refused_off_loopback() -> None:
    out = subprocess.run([sys.executable, "-m", "hometwin.cli", "serve", "--host", "0.0.0.0", "--no-auth", "--port", "0"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "--no-auth is refused" in out.stderr and out.stderr.count("\n") == 1


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost"])
def test_loopback_hosts(host: str) -> None:
    from hometwin.api.cli import is_loopback

    assert is_loopback(host)
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.10") and not is_loopback("example.org")
