"""CVAT interactor: RepViT-SAM's image embedding for CVAT's Segment Anything plugin.

A nuclio function answering as CVAT's own SAM function does (serverless/pytorch/
facebookresearch/sam): the request ``{"image": <base64 frame>, "pos_points": ...,
"neg_points": ...}`` -> ``{"blob": <base64 of the float32 1x256x64x64 embedding>}``. The points
are not used here: CVAT's browser plugin decodes every click itself with ``decoder.onnx``
(``repvit-sam export-onnx --cvat``), so the function runs once per frame.

Settings (environment): ``REPVIT_SAM_CHECKPOINT`` (default: the official weights, downloaded
into ``REPVIT_SAM_HOME`` at build time), ``REPVIT_SAM_VARIANT`` (``m2_3``), ``REPVIT_SAM_DEVICE``
(``cuda`` where a GPU is visible, else ``cpu``), ``REPVIT_SAM_BACKEND`` (``auto``: OpenVINO on
the CPU where installed, PyTorch on a GPU; see repvit_sam.backends).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from typing import Any

import numpy as np

from repvit_sam import InvalidImageError, RepViTSAM, load_image


class BadRequest(ValueError):
    """The request is not CVAT's ``{"image": <base64>, ...}``; the message says why."""


def load_model() -> RepViTSAM:
    """The ``RepViTSAM`` the environment describes (see the module docstring)."""
    import torch

    device = os.environ.get("REPVIT_SAM_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")
    options = {"device": device, "backend": os.environ.get("REPVIT_SAM_BACKEND", "auto")}
    checkpoint = os.environ.get("REPVIT_SAM_CHECKPOINT")
    if not checkpoint:
        return RepViTSAM.from_pretrained(progress=False, **options)
    return RepViTSAM(checkpoint, variant=os.environ.get("REPVIT_SAM_VARIANT", "m2_3"), **options)


def init_context(context: Any) -> None:
    context.logger.info("loading RepViT-SAM")
    context.user_data.model = load_model()
    context.logger.info_with("RepViT-SAM loaded", device=str(context.user_data.model.device))


def handler(context: Any, event: Any) -> Any:
    try:
        image = decode_image(event.body)
    except BadRequest as err:
        return _json(context, {"error": str(err)}, 400)
    embedding = context.user_data.model.embed(image)
    features = np.ascontiguousarray(embedding.numpy(), dtype="<f4")
    return _json(context, {"blob": base64.b64encode(features.tobytes()).decode("ascii")}, 200)


def decode_image(body: Any) -> np.ndarray:
    """The HxWx3 uint8 RGB frame of a request body (a parsed JSON object, or its bytes).

    Raises:
        BadRequest: Not a JSON object with a base64 ``image`` string of a decodable image.
    """
    if isinstance(body, (bytes, bytearray, str)):
        try:
            body = json.loads(body)
        except ValueError as err:
            raise BadRequest(f"the body is not JSON: {err}") from err
    if not isinstance(body, dict) or not isinstance(body.get("image"), str):
        raise BadRequest('expected a JSON object {"image": <base64 of the frame>, ...}')
    try:
        encoded = base64.b64decode(body["image"], validate=True)
    except binascii.Error as err:
        raise BadRequest(f"image is not base64: {err}") from err
    try:
        return load_image(encoded)
    except InvalidImageError as err:
        raise BadRequest(f"image: {err}") from err


def _json(context: Any, body: dict[str, str], status: int) -> Any:
    return context.Response(
        body=json.dumps(body), headers={}, content_type="application/json", status_code=status
    )


if __name__ == "__main__":
    # At build time: fetch nothing new, but export and compile the ONNX encoder into the cache
    # folder once, so that the function's first start does not.
    load_model()
