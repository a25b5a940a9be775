"""The served OpenAPI schema, made whole for every reader (Swagger UI, ReDoc, schemathesis, clients)."""

from __future__ import annotations

from fastapi import FastAPI

from app.transports.rest.schemas import EXAMPLE_MODEL

# FastAPI documents a 422 with its own `detail` body on every route that takes parameters; this server
# answers invalid requests 400 {"error"} (app.transports.rest.errors), which each route documents itself.
UNSENT = ("422",)
UNSENT_SCHEMAS = ("HTTPValidationError", "ValidationError")
# Path parameters' examples, so that Swagger UI pre-fills values that work rather than "string".
PATH_EXAMPLES = {"model": EXAMPLE_MODEL, "version": "1"}


def hoist_inline_definitions(schema: dict) -> dict:
    """Move ``$defs`` embedded in inline request schemas (``openapi_extra`` bodies built with
    ``model_json_schema(ref_template="#/components/schemas/{model}")``) into ``components.schemas``,
    where their ``$ref``s point. Swagger UI tolerates the dangling references; ReDoc refuses to
    render the whole page ("Invalid reference token")."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})

    def walk(node):
        if isinstance(node, dict):
            for name, definition in node.pop("$defs", {}).items():
                components.setdefault(name, definition)
                walk(definition)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema.get("paths", {}))
    return schema


def as_answered(schema: dict) -> dict:
    """Only the statuses the server sends, and examples that work when sent as shown: a request body's
    example is its schema's first ``examples`` entry (Swagger UI otherwise builds one from the types,
    "string" for every model name), a path parameter's from PATH_EXAMPLES."""
    components = schema.get("components", {}).get("schemas", {})
    for name in UNSENT_SCHEMAS:
        components.pop(name, None)
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            for status in UNSENT:
                operation.get("responses", {}).pop(status, None)
            for parameter in operation.get("parameters", []):
                if parameter.get("in") == "path" and parameter["name"] in PATH_EXAMPLES:
                    parameter["example"] = PATH_EXAMPLES[parameter["name"]]
            for media in operation.get("requestBody", {}).get("content", {}).values():
                body = media.get("schema", {})
                if "$ref" in body:
                    body = components.get(body["$ref"].rsplit("/", 1)[-1], {})
                if body.get("examples"):
                    media["example"] = body["examples"][0]
    return schema


def install(app: FastAPI) -> None:
    """Build the schema once, with the inline request bodies' definitions hoisted and only what the
    server really answers."""
    build_schema = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            app.openapi_schema = as_answered(hoist_inline_definitions(build_schema()))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
