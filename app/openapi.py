"""The OpenAPI document: request bodies as named components, like the answers.

The routes that take JSON or a multipart form read their bodies themselves (``bodies.read_body``)
and describe them in ``openapi_extra``, where FastAPI puts schemas inline. This moves each titled
inline request-body schema (a pydantic model's, see ``bodies.request_body``) into
``components/schemas`` under its title and refers to it there, so clients and generators see
``SegmentRequest`` and ``ImageForm`` rather than anonymous objects.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from .schemas import ErrorResponse

COMPONENTS = "#/components/schemas/"


def name_request_bodies(document: dict[str, Any]) -> dict[str, Any]:
    """Moves titled inline request-body schemas (and their ``$defs``) into the components.

    Raises:
        ValueError: Two different schemas carry the same title.
    """
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            content = operation.get("requestBody", {}).get("content", {})
            for media in content.values():
                schema = media.get("schema")
                if schema is None or "$ref" in schema or "title" not in schema:
                    continue
                schema = dict(schema)
                for name, definition in schema.pop("$defs", {}).items():
                    _add(schemas, name, definition)
                _add(schemas, schema["title"], schema)
                media["schema"] = {"$ref": COMPONENTS + schema["title"]}
    return document


def _add(schemas: dict[str, Any], name: str, schema: dict[str, Any]) -> None:
    if schemas.setdefault(name, schema) != schema:
        raise ValueError(f"two different OpenAPI schemas are both named {name!r}")


def install_openapi(app: FastAPI) -> None:
    """Makes ``app.openapi()`` (and so ``/openapi.json``) name the request bodies."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = name_request_bodies(build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented extension point


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entries for these error statuses, with examples."""
    examples = {
        400: "Invalid HTTP request: the body is not valid multipart form data",
        401: "missing or wrong X-API-Key header",
        404: "embedding_id '3f2a…' is unknown or was evicted; POST the image to /embed again",
        413: "image is 20000x20000 = 400000000 pixels, more than the limit 50000000",
        415: "Content-Type must be application/json or multipart/form-data, got 'text/plain'",
        422: [{"loc": ["body", "labels"], "msg": "labels must have one label per point"}],
        503: "the model queue is full (64 calls); retry later",
        504: "the task did not finish within max_task_seconds=120 (deadline passed after 3 of "
        "17 steps); ask for less work (a smaller points_per_side, fewer crop_n_layers) or raise "
        "REPVIT_SAM_MAX_TASK_SECONDS",
    }
    return {
        status: {
            "model": ErrorResponse,
            "content": {"application/json": {"example": {"detail": examples[status]}}},
        }
        for status in statuses
    }
