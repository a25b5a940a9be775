"""Schemathesis against the served OpenAPI schema: every documented route (one test each), a
fixed seed, a few hundred generated requests per route (DENDRITE_FUZZ_EXAMPLES, default 300),
valid ones and invalid ones (wrong types, missing fields, out-of-range values) mixed.
Zero server errors, and every response has a documented status code, content type and body.

The server serves the smoke-trained task models (so /predict/* runs real pre- and
post-processing on fuzzed input) plus tiny OIP models for /v2/models/{model}/infer."""

from __future__ import annotations

import os
import shutil

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode, checks

from app.config import Settings
from app.server import Service
from app.transports.rest.app import create_app
from testkit.models import affine_model, identity_model, write_model
from tests.support import live_server

EXAMPLES = int(os.environ.get("DENDRITE_FUZZ_EXAMPLES", "300"))
CHECKS = [checks.not_a_server_error, checks.status_code_conformance, checks.response_schema_conformance,
          checks.content_type_conformance]  # fmt: skip

# The schema the server serves (built without serving: the routes are known at collection time).
SCHEMA = schemathesis.openapi.from_dict(create_app(Service(Settings())).openapi())
OPERATIONS = {op.label: op for op in (r.ok() for r in SCHEMA.get_all_operations())}


@pytest.fixture(scope="module")
def fuzz_server(smoke_repository, tmp_path_factory):
    repo = tmp_path_factory.mktemp("fuzz") / "models"
    shutil.copytree(smoke_repository, repo)
    write_model(repo, "affine", affine_model(), {"max_batch_size": 8})
    write_model(repo, "identity", identity_model(), {"max_batch_size": 4})
    with live_server(repo, max_items_per_request=8, max_text_chars=2000, max_image_pixels=4_000_000) as s:
        yield s


def test_served_schema_is_the_one_fuzzed(fuzz_server):
    import httpx

    assert httpx.get(f"{fuzz_server.url}/openapi.json").json() == SCHEMA.raw_schema


@pytest.mark.parametrize("label", sorted(OPERATIONS))
def test_route_without_server_errors(fuzz_server, label):
    operation = OPERATIONS[label]

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(case=st.one_of(operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE)))
    def fuzz(case):
        case.call_and_validate(base_url=fuzz_server.url, checks=CHECKS, timeout=30)

    fuzz()
