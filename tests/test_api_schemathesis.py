"""Every operation of the API's own OpenAPI document, fed by schemathesis with data generated
from it (valid and invalid), answers without a server error (issue 20, "Bad input to the API")."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from api_support import TOKEN
from conftest import EXAMPLES
from hometwin.api.app import Settings, create_app

APP = create_app(Settings(token=TOKEN, base_dir=EXAMPLES))
schema = schemathesis.openapi.from_asgi(f"/api/openapi.json?token={TOKEN}", APP)


@schema.parametrize()
@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_no_operation_answers_with_a_server_error(case: schemathesis.Case) -> None:
    case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"}, checks=[not_a_server_error])
    for run in APP.state.runs.all():  # a generated body that started a run: stop it again
        if run.active:
            run.stop()
