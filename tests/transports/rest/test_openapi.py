"""The served OpenAPI schema says what the server does: every documented example, sent as shown to a live
server (the smoke-trained models under their shipped names), gets the documented success status, and each
route lists only the statuses it can answer, with the {"error"} body the server sends."""

from __future__ import annotations

import httpx
import pytest

from tests.support import live_server

# Sent last, in this order: unloading the example model first would fail every other example.
LAST = ("/v2/repository/models/{model}/unload", "/v2/repository/models/{model}/load")


@pytest.fixture(scope="module")
def server(smoke_repository):
    with live_server(smoke_repository, repository_api_enabled=True) as s:
        yield s


@pytest.fixture(scope="module")
def schema(server):
    return httpx.get(f"{server.url}/openapi.json").json()


def operations(schema):
    ops = [(path, method, op) for path, methods in schema["paths"].items() for method, op in methods.items()]
    return sorted(ops, key=lambda o: LAST.index(o[0]) + 1 if o[0] in LAST else 0)


def test_every_documented_example_works_as_sent(server, schema):
    sent = []
    for path, method, op in operations(schema):
        url = path
        for parameter in op.get("parameters", []):
            if parameter["in"] == "path":
                assert "example" in parameter, f"{method} {path}: path parameter {parameter['name']} has no example"
                url = url.replace("{" + parameter["name"] + "}", str(parameter["example"]))
        body = None
        if "requestBody" in op:
            json_body = op["requestBody"]["content"].get("application/json", {})
            assert "example" in json_body, f"{method} {path}: the JSON request body has no example"
            body = json_body["example"]
        r = httpx.request(method, f"{server.url}{url}", json=body, timeout=120)
        assert r.status_code == 200, (method, url, body, r.text)
        assert "200" in op["responses"]
        sent.append(f"{method} {path}")
    assert len(sent) == sum(len(m) for m in schema["paths"].values())


def test_each_route_lists_only_what_it_answers(schema):
    assert "422" not in str([op["responses"] for m in schema["paths"].values() for op in m.values()])
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    assert list(schema["paths"]["/v2/health/live"]["get"]["responses"]) == ["200"]
    assert list(schema["paths"]["/v2/health/ready"]["get"]["responses"]) == ["200", "503"]
    error_body = {"$ref": "#/components/schemas/ErrorBody"}
    for path, methods in schema["paths"].items():
        for method, op in methods.items():
            for status, response in op["responses"].items():
                if status != "200":
                    assert response["content"]["application/json"]["schema"] == error_body, (method, path, status)


def test_multipart_fields_are_not_prefilled_with_placeholders(schema):
    form = schema["paths"]["/predict/image"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert form["properties"]["model"]["example"] == "" and form["properties"]["version"]["example"] == ""


def test_an_empty_multipart_model_field_means_the_default_model(server):
    from tests.transports.rest.test_predict import photo

    files = [("images", ("a.jpg", photo(), "image/jpeg"))]
    r = httpx.post(f"{server.url}/predict/image", files=files, data={"model": "", "version": ""}, timeout=60)
    assert r.status_code == 200, r.text
