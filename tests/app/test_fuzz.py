"""Property-based tests of every route against the app's own OpenAPI document (schemathesis).

The app runs in process (schemathesis's ASGI client, no network) with the small random-weight
model and low work limits, so that a case that gets past validation runs the model in
milliseconds. Each operation gets ``MAX_EXAMPLES`` schema-valid and schema-invalid cases; every
answer must be a non-5xx of a documented status and content type whose body matches the
documented schema, and schema-invalid input must be refused with a 4xx. About a minute here.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from service_helpers import encode, make_image, make_settings

schemathesis = pytest.importorskip("schemathesis")

from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.python import asgi  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from repvit_sam_server import create_app  # noqa: E402

# Cases per operation and generation mode (positive, negative): 11 operations, ~19 runs x 30.
MAX_EXAMPLES = 30
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
# The image every schema-valid case refers to: a random 32-hex id is otherwise always a 404.
WIDTH, HEIGHT = 160, 120


@pytest.fixture
def api_schema(checkpoint) -> Iterator[schemathesis.BaseSchema]:
    """The app's OpenAPI document, loaded from the app, with its model loaded and one image
    embedded (``schema.embedding_id``)."""
    app = create_app(
        make_settings(
            checkpoint,
            max_points_per_side=4,
            max_edge_points_per_side=4,
            max_points_per_batch=16,
            max_task_seconds=20,
        )
    )
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    schema.config.generation.update(
        modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
        deterministic=True,
        with_security_parameters=False,
    )
    try:
        deadline = time.monotonic() + 90
        while schema["/readyz"]["GET"].Case().call().status_code != 200:
            assert time.monotonic() < deadline, "the model did not load in 90 s"
            time.sleep(0.1)
        embedded = (
            schema["/embed"]["POST"]
            .Case(
                body={"image": encode(make_image(WIDTH, HEIGHT))}, media_type="multipart/form-data"
            )
            .call()
        )
        assert embedded.status_code == 200, embedded.text
        schema.embedding_id = embedded.json()["embedding_id"]
        yield schema
    finally:
        # The app's lifespan runs on schemathesis's event-loop thread: stop its model thread.
        asgi.shutdown_lifespans()


def _aim_at_the_image(case: schemathesis.Case, embedding_id: str) -> None:
    """Makes a schema-valid case reach the model: a JSON body's ``embedding_id`` and the path's
    (not DELETE's, which would drop it) become the embedded image's, and what the document
    cannot state (the service's limits, coordinates inside the image, one label per point, a
    prompt at all) is folded into range. The values stay the generated ones otherwise."""
    body = case.body
    if case.method == "GET" and "embedding_id" in (case.path_parameters or {}):
        case.path_parameters["embedding_id"] = embedding_id
    if case.media_type != "application/json" or not isinstance(body, dict):
        return
    body["embedding_id"] = embedding_id
    if case.path in ("/masks", "/edges"):
        for name, limit in (("points_per_side", 4), ("points_per_batch", 16)):
            body[name] = 1 + (int(body.get(name, 1)) - 1) % limit
        body.pop("crop_n_layers", None)  # crops need the image uploaded, not an id
    if case.path == "/segment":
        body["points"] = [[x % WIDTH, y % HEIGHT] for x, y in body.get("points", [])[:4]]
        if body.get("labels") is not None:
            body["labels"] = (body["labels"] + [1] * 4)[: len(body["points"])]
        boxes = []
        for x0, y0, x1, y1 in body.get("boxes", [])[:4]:
            xs = sorted([x0 % (WIDTH - 1), x1 % (WIDTH - 1)])
            ys = sorted([y0 % (HEIGHT - 1), y1 % (HEIGHT - 1)])
            boxes.append([xs[0], ys[0], xs[1] + 1, ys[1] + 1])
        body["boxes"] = boxes
        if not boxes and not body["points"]:
            body["points"] = [[WIDTH / 2, HEIGHT / 2]]
            body["labels"] = None


# Every documented operation (the test checks that the list is complete). Those without inputs
# have no schema-invalid cases, nor has POST /logits, whose body (a .npy) the document leaves open.
OPERATIONS = [
    "POST /embed",
    "POST /segment",
    "GET /embeddings/{embedding_id}",
    "DELETE /embeddings/{embedding_id}",
    "GET /logits/{logits_id}",
    "POST /logits",
    "POST /masks",
    "POST /edges",
    "GET /healthz",
    "GET /readyz",
    "GET /metrics",
]
NO_INPUT = {"GET /healthz", "GET /readyz", "GET /metrics", "POST /logits"}


def fuzz(schema: schemathesis.BaseSchema, label: str, mode: GenerationMode) -> None:
    """Runs ``MAX_EXAMPLES`` cases of one operation; raises schemathesis's report of the first
    failure found (shrunk to a minimal case, with a curl line to reproduce it)."""
    method, path = label.split(" ", 1)

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(schema[path][method].as_strategy(generation_mode=mode))
    def check(case: schemathesis.Case) -> None:
        if mode == GenerationMode.POSITIVE:
            _aim_at_the_image(case, schema.embedding_id)
        case.call_and_validate(checks=CHECKS, timeout=60)

    check()


def test_every_route_answers_as_documented_and_never_5xx(api_schema):
    """One test over every operation: schemathesis's pytest plugin ends an in-process app's
    lifespan after each test, and the app (its model loaded) is worth sharing."""
    documented = [result.ok().label for result in api_schema.get_all_operations()]
    # The native routes; the tool adapters' wire formats are tested in tests/app/adapters.
    adapters = ("/label-studio", "/x-anylabeling", "/roboflow", "/docs", "/redoc")
    native = [label for label in documented if not label.split(" ", 1)[1].startswith(adapters)]
    assert sorted(native) == sorted(OPERATIONS)
    failures = {}
    for label in OPERATIONS:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            if mode == GenerationMode.NEGATIVE and label in NO_INPUT:
                continue
            try:
                fuzz(api_schema, label, mode)
            except Exception as err:  # schemathesis's FailureGroup, or a transport error
                failures[f"{label} ({mode.value})"] = str(err)
    assert not failures, "\n\n".join(f"{name}:\n{report}" for name, report in failures.items())
