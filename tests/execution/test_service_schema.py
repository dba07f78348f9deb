"""Schemathesis against the service's own OpenAPI schema: no generated request gets a 5xx.

Bounded: a few dozen examples per operation, in process (ASGI), with a full-scope key, so
the run exercises validation and the decision path rather than the key check alone.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings

from marketloop.execution.config import ServiceConfig
from marketloop.execution.service import create_app

KEY = "schema-key-0123456789"
os.environ.setdefault("MARKETLOOP_API_KEY", KEY)
_TMP = Path(tempfile.mkdtemp(prefix="marketloop-schema-"))  # at import: the schema needs the app
atexit.register(shutil.rmtree, _TMP, True)
_CONFIG = ServiceConfig(outbox=_TMP / "outbox.sqlite", load_consents=False,
                        api_keys=[{"key": KEY, "name": "schema"}])
app = create_app(_CONFIG, warehouse_url=None)
schema = schemathesis.openapi.from_asgi("/openapi.json", app)


@schema.parametrize()
@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_no_generated_request_gets_a_server_error(case) -> None:
    response = case.call(headers={"Authorization": f"Bearer {KEY}"})
    assert response.status_code < 500, (case.method, case.path, case.body, response.text)


def test_the_schema_says_which_routes_need_a_key_and_how_to_send_it() -> None:
    spec = app.openapi()
    assert set(spec["components"]["securitySchemes"]) == {"bearer", "apiKey"}
    paths = spec["paths"]
    assert paths["/v1/decide"]["post"]["security"] == [{"bearer": []}, {"apiKey": []}]
    assert "security" in paths["/v1/customers/{customer_id}/consents"]["put"]
    assert "security" not in paths["/healthz"]["get"]  # probes need no key
    body = paths["/v1/customers/{customer_id}/consents"]["put"]["requestBody"]
    assert body["required"] and "granted" in body["content"]["application/json"]["schema"][
        "properties"]


def test_every_operation_has_its_own_operation_id() -> None:
    ids = [op["operationId"] for item in app.openapi()["paths"].values()
           for op in item.values() if isinstance(op, dict) and "operationId" in op]
    assert len(ids) == len(set(ids)) > 5, sorted(ids)
