"""The OpenAPI document says what the service does.

Bodies and JSON answers are named components; every status that a probe of a route draws is
among that route's documented responses; ``OPTIONS`` and 405 name every method of a path; the
API-key scheme (and its 401) is declared exactly when a key is set; JSON values of the wrong
type are refused, not coerced. Also ``/docs`` and ``/redoc``'s own files and headers (the pages
themselves are rendered in Chromium by tests/demo/test_docs_pages.py).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from service_helpers import encode, make_image, make_settings

from repvit_sam_server import create_app

pytestmark = pytest.mark.anyio

KEY = "openapi-key"
UNKNOWN = "0" * 32
MODEL_ROUTES = {
    ("post", "/embed"),
    ("post", "/segment"),
    ("post", "/masks"),
    ("post", "/edges"),
    ("get", "/embeddings/{embedding_id}"),
    ("delete", "/embeddings/{embedding_id}"),
    ("get", "/logits/{logits_id}"),
    ("post", "/logits"),
}


@pytest.fixture(scope="module")
def keyed_app(checkpoint) -> Iterator[FastAPI]:
    """An app with an API key whose model never loads (no lifespan): model calls are 503."""
    app = create_app(make_settings(checkpoint, api_key=KEY, warmup=False))
    yield app
    app.state.service.close()


@pytest.fixture
async def keyed(keyed_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=keyed_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


def _operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            yield method, path, operation


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


# ---- named components ---------------------------------------------------------------------


ADAPTER_PREFIXES = ("/label-studio", "/x-anylabeling", "/roboflow")


def _native(spec):
    """The native routes' operations; the tool adapters speak the tools' own wire formats and
    key schemes, which their tests (tests/app/adapters) check."""
    return [op for op in _operations(spec) if not op[1].startswith(ADAPTER_PREFIXES)]


async def test_bodies_and_json_answers_are_named_components(client):
    spec = (await client.get("/openapi.json")).json()
    schemas = spec["components"]["schemas"]
    bodies = {}
    # The native routes; the tool adapters speak the tools' own wire formats (tested per tool).
    for method, path, operation in _native(spec):
        for media, content in operation.get("requestBody", {}).get("content", {}).items():
            if media in ("application/json", "multipart/form-data"):
                assert set(content["schema"]) == {"$ref"}, (method, path, media)
                bodies[(path, media)] = content["schema"]["$ref"].rsplit("/", 1)[1]
        for status, answer in operation["responses"].items():
            if status.startswith("2") and "application/json" in answer.get("content", {}):
                schema = answer["content"]["application/json"]["schema"]
                assert set(schema) == {"$ref"}, (method, path, status)
    assert bodies == {
        ("/embed", "multipart/form-data"): "EmbedForm",
        ("/segment", "application/json"): "SegmentRequest",
        ("/segment", "multipart/form-data"): "SegmentForm",
        ("/masks", "application/json"): "MasksRequest",
        ("/masks", "multipart/form-data"): "MasksForm",
        ("/edges", "application/json"): "EdgesRequest",
        ("/edges", "multipart/form-data"): "EdgesForm",
    }
    for ref in _refs(spec):
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in schemas, ref
    assert schemas["SegmentRequest"]["properties"]["multimask"]["type"] == "boolean"
    assert schemas["SegmentForm"]["required"] == ["image"]
    # The form's request part is JSON, said where multipart/form-data says how parts are encoded.
    content = spec["paths"]["/segment"]["post"]["requestBody"]["content"]
    assert (
        content["multipart/form-data"]["encoding"]["request"]["contentType"] == "application/json"
    )


async def test_refinement_from_a_chosen_candidate_is_documented(client):
    # The web demo refines from the candidate on screen: mask_input_id plus mask_input_index.
    spec = (await client.get("/openapi.json")).json()
    fields = spec["components"]["schemas"]["SegmentRequest"]["properties"]
    index = fields["mask_input_index"]
    assert {"type": "integer", "minimum": 0} in index["anyOf"] and {"type": "null"} in index[
        "anyOf"
    ]
    assert "mask_input_id" in index["description"] and "best-scored" in index["description"]
    assert "logits_id" in fields["mask_input_id"]["description"]


# ---- the API key ----------------------------------------------------------------------------


async def test_the_key_scheme_and_its_401_exist_only_with_a_key(client, keyed):
    open_spec = (await client.get("/openapi.json")).json()
    assert "securitySchemes" not in open_spec["components"]
    for method, path, operation in _native(open_spec):
        assert "security" not in operation and "401" not in operation["responses"], (method, path)

    keyed_spec = (await keyed.get("/openapi.json")).json()
    assert keyed_spec["components"]["securitySchemes"] == {
        "APIKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    }
    secured = set()
    for method, path, operation in _native(keyed_spec):
        if "security" in operation:
            assert operation["security"] == [{"APIKeyHeader": []}]
            assert "401" in operation["responses"], (method, path)
            secured.add((method, path))
    assert secured == MODEL_ROUTES


# ---- every status a route answers is documented ---------------------------------------------


def _npy(array: np.ndarray) -> bytes:
    stream = io.BytesIO()
    np.save(stream, array)
    return stream.getvalue()


def _multipart(request: str = "{}") -> dict[str, Any]:
    return {"files": {"image": ("a.png", encode(make_image()))}, "data": {"request": request}}


BROKEN_FORM = {
    "content": b"garbage",
    "headers": {"content-type": "multipart/form-data; boundary=x"},
}
TEXT = {"content": b'{"points": [[1, 2]]}', "headers": {"content-type": "text/plain"}}
LARGE_JSON = {
    "content": b'{"points": [' + b"[1, 2], " * 200_000 + b"[1, 2]]}",
    "headers": {"content-type": "application/json"},
}
# 1.1 megapixels, over the tests' max_pixels
TOO_MANY_PIXELS = {"files": {"image": ("a.png", encode(make_image(1100, 1000)))}}
# (method, path template, concrete path, request, expected status) on the loaded app.
LOADED_PROBES = [
    ("post", "/embed", "/embed", {"files": {"image": ("a.png", b"not an image")}}, 422),
    ("post", "/embed", "/embed", BROKEN_FORM, 400),
    ("post", "/embed", "/embed", {"content": b"x" * 3_100_000}, 413),
    ("post", "/embed", "/embed", TOO_MANY_PIXELS, 413),
    ("post", "/logits", "/logits", {"content": b"not npy"}, 422),
    ("post", "/logits", "/logits", {"content": _npy(np.zeros((3, 3), np.float32))}, 422),
    ("post", "/logits", "/logits", {"content": b"x" * 3_100_000}, 413),
    *[
        probe
        for path, prompts in [("/segment", {"points": [[1, 2]]}), ("/masks", {}), ("/edges", {})]
        for probe in [
            ("post", path, path, TEXT, 415),
            ("post", path, path, BROKEN_FORM, 400),
            ("post", path, path, LARGE_JSON, 413),
            ("post", path, path, {"json": {"embedding_id": "xyz"}}, 422),
            ("post", path, path, {"json": {"embedding_id": UNKNOWN, **prompts}}, 404),
        ]
    ],
    *[
        probe
        for method in ("get", "delete")
        for probe in [
            (method, "/embeddings/{embedding_id}", "/embeddings/nothex", {}, 422),
            (method, "/embeddings/{embedding_id}", f"/embeddings/{UNKNOWN}", {}, 404),
        ]
    ],
    ("get", "/logits/{logits_id}", "/logits/nothex", {}, 422),
    ("get", "/logits/{logits_id}", f"/logits/{UNKNOWN}", {}, 404),
]
# On the keyed app whose model never loads: without the key, and with it.
UNAUTHORIZED_PROBES = [
    (method, path, path.format(embedding_id=UNKNOWN, logits_id=UNKNOWN), {}, 401)
    for method, path in sorted(MODEL_ROUTES)
]
PROMPTS = '{"points": [[10, 10]]}'
UNLOADED_PROBES = [
    ("post", "/embed", "/embed", {"files": {"image": ("a.png", encode(make_image()))}}, 503),
    ("post", "/segment", "/segment", _multipart(PROMPTS), 503),
    ("post", "/masks", "/masks", _multipart(), 503),
    ("post", "/edges", "/edges", _multipart(), 503),
    ("post", "/logits", "/logits", {"content": _npy(np.zeros((64, 64), np.float32))}, 503),
    ("get", "/readyz", "/readyz", {}, 503),
]


async def _answered(http: httpx.AsyncClient, probes: list, headers: dict[str, str]) -> list:
    spec = (await http.get("/openapi.json")).json()
    undocumented, unexpected = [], []
    for method, template, path, request, expected in probes:
        request = {**request, "headers": {**headers, **request.get("headers", {})}}
        status = (await http.request(method.upper(), path, **request)).status_code
        if status != expected:
            unexpected.append((method, path, expected, status))
        if str(status) not in spec["paths"][template][method]["responses"]:
            undocumented.append((method, template, status))
    return [unexpected, undocumented]


async def test_every_status_a_probe_draws_is_documented(client, keyed):
    assert await _answered(client, LOADED_PROBES, {}) == [[], []]
    assert await _answered(keyed, UNAUTHORIZED_PROBES, {}) == [[], []]
    assert await _answered(keyed, UNLOADED_PROBES, {"X-API-Key": KEY}) == [[], []]


# ---- methods --------------------------------------------------------------------------------


async def test_options_and_405_name_every_method_of_the_path(client):
    spec = (await client.get("/openapi.json")).json()
    for template, item in spec["paths"].items():
        if template.startswith(ADAPTER_PREFIXES):
            continue  # the tools' own routes: their tests check their methods
        path = template.format(embedding_id=UNKNOWN, logits_id=UNKNOWN)
        allow = ", ".join([*sorted(method.upper() for method in item), "OPTIONS"])
        options = await client.options(path)
        assert (options.status_code, options.headers.get("allow")) == (204, allow), path
        wrong = await client.put(path)
        assert (wrong.status_code, wrong.headers.get("allow")) == (405, allow), path
    assert (await client.options(f"/embeddings/{UNKNOWN}")).headers["allow"] == (
        "DELETE, GET, OPTIONS"
    )


# ---- strict JSON types ------------------------------------------------------------------------

WRONG_TYPES = [
    ("/segment", {"points": [["320", 240]]}, ["body", "points", 0, 0]),
    ("/segment", {"points": [[True, 240]]}, ["body", "points", 0, 0]),
    ("/segment", {"points": [[1, 2]], "labels": [True]}, ["body", "labels", 0]),
    ("/segment", {"points": [[1, 2]], "labels": [1.0]}, ["body", "labels", 0]),
    ("/segment", {"boxes": [[0, 0, "9", 9]]}, ["body", "boxes", 0, 2]),
    ("/segment", {"points": [[1, 2]], "multimask": "yes"}, ["body", "multimask"]),
    ("/masks", {"points_per_side": "16"}, ["body", "points_per_side"]),
    ("/masks", {"points_per_side": 16.0}, ["body", "points_per_side"]),
    ("/masks", {"pred_iou_thresh": "0.5"}, ["body", "pred_iou_thresh"]),
    ("/masks", {"min_mask_region_area": True}, ["body", "min_mask_region_area"]),
    ("/edges", {"boundary_width": True}, ["body", "boundary_width"]),
    ("/edges", {"points_per_batch": "8"}, ["body", "points_per_batch"]),
    ("/edges", {"nms_thresh": False}, ["body", "nms_thresh"]),
]


@pytest.mark.parametrize(("path", "body", "loc"), WRONG_TYPES)
async def test_a_value_of_the_wrong_json_type_is_refused(client, path, body, loc):
    response = await client.post(path, json={"embedding_id": UNKNOWN, **body})
    assert response.status_code == 422, response.text
    assert [error["loc"] for error in response.json()["detail"]] == [loc]


async def test_numbers_of_the_right_type_still_pass(client):
    # An integer is a number; 404 means the body was valid and the id was looked up.
    body = {
        "embedding_id": UNKNOWN,
        "points": [[320, 240.5]],
        "labels": [1],
        "boxes": [[0, 0, 9, 9]],
    }
    assert (await client.post("/segment", json=body)).status_code == 404
    body = {"embedding_id": UNKNOWN, "points_per_side": 4, "pred_iou_thresh": 1}
    assert (await client.post("/masks", json=body)).status_code == 404


# ---- the docs pages -------------------------------------------------------------------------


async def test_docs_pages_load_only_from_the_service(client):
    for page in ("/docs", "/redoc"):
        answer = await client.get(page)
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/html")
        policy = answer.headers["content-security-policy"]
        assert "default-src 'none'" in policy and "connect-src 'self'" in policy
        assert not re.search(r"https?:", policy), policy
        for url in re.findall(r'(?:src|href)="([^"]+)"', answer.text):
            assert url.startswith("/docs/static/"), url
            assert (await client.get(url)).status_code == 200, url
    # Swagger UI's inline start-up script runs because the policy names its hash.
    docs = await client.get("/docs")
    (script,) = re.findall(r"<script>(.*?)</script>", docs.text, re.DOTALL)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"'sha256-{digest}'" in docs.headers["content-security-policy"]
    assert "'unsafe-inline'" not in docs.headers["content-security-policy"].split("script-src")[1]


async def test_docs_assets_are_the_installed_files(client):
    types = {
        "swagger-ui-bundle.js": "text/javascript",
        "swagger-ui.css": "text/css",
        "redoc.standalone.js": "text/javascript",
    }
    for name, media in types.items():
        answer = await client.get(f"/docs/static/{name}")
        assert answer.status_code == 200 and answer.headers["content-type"].startswith(media)
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert len(answer.content) > 100_000, name
    redoc = (await client.get("/docs/static/redoc.standalone.js")).text
    assert "cdn.redoc.ly" not in redoc and "Redoc" in redoc
    for missing in ("nothing.js", "..%2Fcore.py", "%2e%2e/__init__.py"):
        assert (await client.get(f"/docs/static/{missing}")).status_code == 404, missing
    assert json.loads((await client.get("/openapi.json")).text)["openapi"].startswith("3.")
