"""deploy/cvat: the nuclio function run by nuclio's own Python SDK test platform.

``nuclio_sdk.test.Platform`` calls ``init_context`` and the handler as nuclio's Python wrapper
does; the answer must be CVAT's SAM protocol, ``{"blob": base64 float32 1x256x64x64}``, holding
exactly the embedding ``RepViTSAM`` computes with the same checkpoint and backend.
"""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import re
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import yaml
from PIL import Image

from repvit_sam import RepViTSAM

nuclio_test = pytest.importorskip(
    "nuclio_sdk.test", reason="needs nuclio-sdk (pip install -e '.[dev]')"
)
import nuclio_sdk  # noqa: E402

FUNCTION_DIR = Path(__file__).resolve().parents[2] / "deploy" / "cvat"
# The model id CVAT's SAM plugin decodes clicks for (cvat-ui/plugins/sam/src/ts/index.tsx).
CVAT_SAM_MODEL_ID = "pth-facebookresearch-sam-vit-h"


def load_function() -> ModuleType:
    """deploy/cvat/main.py as a module of its own (nuclio finds init_context through it)."""
    spec = importlib.util.spec_from_file_location("cvat_repvit_sam_main", FUNCTION_DIR / "main.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def frame() -> bytes:
    """A 200x150 PNG frame with a bright square on a gradient, as CVAT sends it."""
    y, x = np.mgrid[0:150, 0:200]
    pixels = np.stack([x, y * 1.5, (x + y) * 0.5], axis=-1).astype(np.uint8)
    pixels[40:100, 60:140] = (250, 240, 30)
    stream = io.BytesIO()
    Image.fromarray(pixels).save(stream, format="PNG")
    return stream.getvalue()


@pytest.fixture
def function(small_checkpoint: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("REPVIT_SAM_CHECKPOINT", str(small_checkpoint))
    monkeypatch.setenv("REPVIT_SAM_VARIANT", "m0_9")
    monkeypatch.setenv("REPVIT_SAM_DEVICE", "cpu")
    monkeypatch.setenv("REPVIT_SAM_BACKEND", "torch")
    module = load_function()
    yield nuclio_test.Platform(), module
    sys.modules.pop(module.__name__, None)


def call(function, body) -> tuple[int, dict]:
    platform, module = function
    event = nuclio_sdk.Event(body=body, content_type="application/json", method="POST")
    response = platform.call_handler(module.handler, event)
    assert response.content_type == "application/json"
    return response.status_code, json.loads(response.body)


def test_answers_with_our_embedding_bit_for_bit(function, frame, small_checkpoint):
    request = {
        "image": base64.b64encode(frame).decode(),
        "pos_points": [[100, 70]],
        "neg_points": [],
    }
    status, answer = call(function, request)
    assert status == 200 and set(answer) == {"blob"}
    blob = np.frombuffer(base64.b64decode(answer["blob"]), dtype="<f4")
    assert blob.size == 256 * 64 * 64  # what the plugin reshapes it to: [1, 256, 64, 64]

    sam = RepViTSAM(small_checkpoint, variant="m0_9", backend="torch")
    expected = sam.embed(frame).numpy()
    assert expected.shape == (1, 256, 64, 64) and expected.dtype == np.float32
    np.testing.assert_array_equal(blob.reshape(expected.shape), expected)

    # The body may also come as raw JSON bytes (another content type); same answer.
    status, again = call(function, json.dumps(request).encode())
    assert status == 200 and again == answer


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"frame": "abc"}, "expected a JSON object"),
        ({"image": 42}, "expected a JSON object"),
        (b"not json", "the body is not JSON"),
        ({"image": "@@not base64@@"}, "image is not base64"),
        ({"image": base64.b64encode(b"hello").decode()}, "image: .*not a recognised image"),
    ],
)
def test_bad_requests_get_400_naming_the_problem(function, body, message):
    status, answer = call(function, body)
    assert status == 400
    assert re.search(message, answer["error"])


@pytest.mark.parametrize("name", ["function.yaml", "function-gpu.yaml"])
def test_function_configs_are_the_interactor_cvat_expects(name):
    config = yaml.safe_load((FUNCTION_DIR / name).read_text())
    assert config["metadata"]["name"] == CVAT_SAM_MODEL_ID
    assert config["metadata"]["namespace"] == "cvat"
    assert config["metadata"]["annotations"]["type"] == "interactor"
    assert config["spec"]["handler"] == "main:handler"
    env = {item["name"]: item["value"] for item in config["spec"]["env"]}
    gpu = config["spec"].get("resources", {}).get("limits", {}).get("nvidia.com/gpu")
    assert (env["REPVIT_SAM_DEVICE"], gpu) == (("cuda", 1) if "gpu" in name else ("cpu", None))
    build = config["spec"]["build"]["directives"]["preCopy"]
    (torch_line,) = [d["value"] for d in build if "torch==" in d["value"]]
    # PyPI's x86_64 torch is the CUDA build; the CPU function takes PyTorch's CPU wheels
    cpu_index = "--index-url https://download.pytorch.org/whl/cpu"
    assert (cpu_index in torch_line) == ("gpu" not in name)
    visible = {"kind": "ENV", "value": "NVIDIA_VISIBLE_DEVICES=all"} in build
    assert visible == ("gpu" in name)
