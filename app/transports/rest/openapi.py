"""The served OpenAPI schema, made whole for every reader (Swagger UI, ReDoc, schemathesis, clients)."""

from __future__ import annotations

from fastapi import FastAPI


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


def install(app: FastAPI) -> None:
    """Build the schema once, with the inline request bodies' definitions hoisted."""
    build_schema = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            app.openapi_schema = hoist_inline_definitions(build_schema())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
