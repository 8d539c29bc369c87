"""Helpers of the HTTP API tests: an app with a known token and a client that sends it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import yaml
from fastapi.testclient import TestClient

from conftest import EXAMPLES
from hometwin.api.app import Settings, create_app

TOKEN = "t0ken-of-the-api-tests-" + "9" * 16


def client(tmp_path: Path | None = None, **kw: Any) -> TestClient:
    settings = Settings(token=TOKEN, base_dir=EXAMPLES, **kw)
    if tmp_path is not None:
        settings.work_dir = tmp_path
    return TestClient(create_app(settings), headers={"Authorization": f"Bearer {TOKEN}"},
                      raise_server_exceptions=False)


class _JsonLoader(yaml.SafeLoader):
    """YAML as a browser's JSON has it: timestamps stay strings."""


_JsonLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def example(name: str) -> dict[str, Any]:
    """An example home as the JSON a browser would post."""
    return yaml.load((EXAMPLES / f"{name}.yaml").read_text(), Loader=_JsonLoader)  # noqa: S506 - SafeLoader


def wait_run(c: TestClient, run_id: str, timeout_s: float = 240, until: tuple[str, ...] = ("finished",
                                                                                           "failed", "stopped")) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        r = c.get(f"/api/runs/{run_id}")
        assert r.status_code == 200, r.text
        body = r.json()
        if body["status"] in until:
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} still {body['status']} after {timeout_s} s: {body}")
        time.sleep(0.2)
