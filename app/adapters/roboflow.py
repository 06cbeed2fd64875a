"""Roboflow inference's SAM routes at ``/roboflow``, over the one ``InferenceService``.

``POST /roboflow/sam/embed_image`` and ``POST /roboflow/sam/segment_image`` take the bodies of
Roboflow's ``SamEmbeddingRequest`` and ``SamSegmentationRequest`` and answer as its server does
(``inference/models/sam``): one mask per request (``multi_mask_output=False``), as the largest
outline of the mask and of its 256x256 low-res logits (JSON, ``masks2poly``) or as an ``.npz``
of both (``binary``). Embeddings live in the service's shared cache, found by the image's
pixels; an ``image_id`` names them for later calls, and holds the last low-res mask of that
image for ``has_mask_input`` (Roboflow's mask-input cache), in the same cache.

Differences, each to keep the service safe or its answers exact: a point labelled -1 (SAM's
padding point, Roboflow's default prompt) is dropped, as SAM's predictor pads by itself, and a
request with no point labelled 0 or 1 is refused; points outside the image are refused, as on
``/segment``; ``numpy`` images are ``.npy`` files, never pickles; ``url`` images only from the
hosts the operator lists. Errors are ``{"message": ...}`` with the native routes' statuses.
The API key is read where Roboflow's clients send it: the ``api_key`` query parameter or body
field, ``Authorization: Bearer``, or ``X-API-Key``.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import time
from typing import Any, Literal

import numpy as np
import torch
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from segment_anything.utils.transforms import ResizeLongestSide

from repvit_sam import ImageEmbedding, InvalidInputError

from ..deps import ServiceDep, SettingsDep, api_key_matches
from ..errors import NotFoundError, UnauthorizedError
from ..inference import InferenceService
from ..segmentation import check_output_size, draw_masks
from ..settings import Settings
from .protocol import ProtocolRoute, decode_base64, openapi_answers, openapi_body, read_json
from .roboflow_images import RequestImage, load_request_image, read_npy

NPY = "application/octet-stream"
Format = Literal["json", "binary"]


class SamRequest(BaseModel):
    """Fields every Roboflow SAM request may carry; unknown ones are ignored, as Roboflow does."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False, protected_namespaces=())

    api_key: str | None = Field(default=None, description="This service's key, if it has one.")
    sam_version_id: str | None = Field(default=None, description="Ignored: one model here.")
    model_id: str | None = Field(default=None, description="Ignored: one model here.")


class SamEmbeddingRequest(SamRequest):
    image: RequestImage | None = None
    image_id: str | None = Field(default=None, description="A name for later segment calls.")
    format: Format = "json"


class SamSegmentationRequest(SamRequest):
    embeddings: Any = Field(default=None, description="1x256x64x64, nested lists or base64 .npy.")
    embeddings_format: Format = "json"
    format: Format = "json"
    image: RequestImage | None = None
    image_id: str | None = None
    has_mask_input: bool = False
    mask_input: Any = Field(default=None, description="Polygons in 256x256, or base64 .npy.")
    mask_input_format: Format = "json"
    orig_im_size: tuple[int, int] | None = Field(default=None, description="[H, W].")
    point_coords: list[tuple[float, float]] = Field(default_factory=lambda: [(0.0, 0.0)])
    point_labels: list[float] = Field(default_factory=lambda: [-1.0])
    use_mask_input_cache: bool = True


class RoboflowRoute(ProtocolRoute):
    @staticmethod
    def error_response(
        status: int, message: str, err: Exception, headers: dict[str, str]
    ) -> Response:
        return JSONResponse({"message": message}, status_code=status, headers=headers)


_ERROR = {"message": "image_id 'cat-1' has no cached embedding (never embedded, or evicted)"}
_IMAGE = {"type": "base64", "value": "iVBORw0KGgo..."}

router = APIRouter(prefix="/roboflow", tags=["roboflow"], route_class=RoboflowRoute)


def check_key(request: Request, settings: Settings, body_key: str | None) -> None:
    """The service's key, where a Roboflow client sends it."""
    bearer = request.headers.get("authorization", "")
    headers = [
        request.headers.get("x-api-key"),
        bearer[7:] if bearer[:7].lower() == "bearer " else None,
    ]
    if any(api_key_matches(settings, key) for key in headers if key):
        return
    others = [key for key in (request.query_params.get("api_key"), body_key) if key]
    if settings.api_key is not None and not any(
        api_key_matches(settings, key, from_header=False) for key in others
    ):
        raise UnauthorizedError("missing or wrong api_key")


def state_key(image_id: str | None, embedding_id: str | None) -> str | None:
    """Where an image's ``image_id`` link and last low-res mask live in the logits cache."""
    name = f"image_id:{image_id}" if image_id is not None else f"embedding:{embedding_id}"
    if image_id is None and embedding_id is None:
        return None
    return hashlib.blake2b(f"roboflow:{name}".encode(), digest_size=16).hexdigest()


async def read_state(service: InferenceService, key: str | None) -> tuple[np.ndarray, Any]:
    """The last low-res logits (0 or 1 x1xSxS) and embedding id stored under ``key``."""
    found = None if key is None else await asyncio.to_thread(service.store.get_logits, key)
    if found is None:
        return np.zeros((0, 1, 1, 1), np.float32), None
    return found[0], found[1].get("embedding")


async def write_state(
    service: InferenceService, key: str | None, logits: np.ndarray, embedding_id: str | None
) -> None:
    if key is not None:
        if not len(logits) and service.store.logits_size is not None:
            # No mask yet: an empty batch of this model's logit size, which the store accepts.
            logits = np.zeros((0, 1, *service.store.logits_size), np.float32)
        await service.put_logits(key, logits, [0] * len(logits), embedding=embedding_id)


@router.post(
    "/sam/embed_image",
    summary="Roboflow: SAM image embedding",
    openapi_extra=openapi_body(
        {"image": _IMAGE, "image_id": "cat-1", "format": "json"}, "SamEmbeddingRequest."
    ),
    responses=openapi_answers({"embeddings": [[[[0.01, -0.2]]]], "time": 0.41}, _ERROR),
)
async def embed_image(request: Request, service: ServiceDep, settings: SettingsDep) -> Response:
    """``{"embeddings": 1x256x64x64 nested lists, "time"}``, or the ``np.save`` bytes."""
    started = time.perf_counter()
    body = await read_json(request, SamEmbeddingRequest, settings)
    check_key(request, settings, body.api_key)
    if body.image is None:
        raise InvalidInputError("image is required")
    pixels = await load_request_image(body.image, service, settings)
    embedding_id, embedding, _ = await service.embed(pixels)
    if body.image_id is not None:
        key = state_key(body.image_id, None)
        logits, linked = await read_state(service, key)
        if linked != embedding_id or logits.shape[0] == 0:
            side = service.mask_input_size
            await write_state(service, key, np.zeros((0, 1, side, side), np.float32), embedding_id)
    features = embedding.numpy()
    if body.format == "binary":
        return Response(await asyncio.to_thread(npy_bytes, features), media_type=NPY)
    elapsed = time.perf_counter() - started
    text = await asyncio.to_thread(
        lambda: json.dumps({"embeddings": features.tolist(), "time": elapsed})
    )
    return Response(text, media_type="application/json")


@router.post(
    "/sam/segment_image",
    summary="Roboflow: SAM segmentation of point prompts",
    openapi_extra=openapi_body(
        {"image_id": "cat-1", "point_coords": [[320, 240]], "point_labels": [1]},
        "SamSegmentationRequest.",
    ),
    responses=openapi_answers(
        {
            "masks": [[[300, 200], [340, 205], [330, 260]]],
            "low_res_masks": [[[75, 50]]],
            "time": 0.02,
        },
        _ERROR,
    ),
)
async def segment_image(request: Request, service: ServiceDep, settings: SettingsDep) -> Response:
    """``{"masks": [polygon], "low_res_masks": [polygon], "time"}``, or an ``.npz`` of the
    HxW mask (bool) and 256x256 low-res logits (float32), each with a leading 1."""
    started = time.perf_counter()
    body = await read_json(request, SamSegmentationRequest, settings)
    check_key(request, settings, body.api_key)
    embedding_id, embedding = await resolve_embedding(body, service, settings)
    height, width = embedding.original_size
    points, labels = prompt_points(body, width, height, settings)
    key = state_key(body.image_id, embedding_id)
    mask_input = await resolve_mask_input(body, service, key, embedding_id)
    check_output_size(1, width, height, settings)
    decoded = await service.decode(embedding, points, labels, None, mask_input, False)
    if body.use_mask_input_cache:
        await write_state(service, key, decoded.logits[0][None, :1], embedding_id)
    masks = await asyncio.to_thread(lambda: next(draw_masks(service, decoded)))
    low_res = decoded.logits[0]
    if body.format == "binary":
        data = await asyncio.to_thread(npz_bytes, masks, low_res)
        return Response(data, media_type=NPY)
    polygons = await asyncio.to_thread(
        lambda: (largest_outline(masks[0]), largest_outline(low_res[0] > 0))
    )
    return JSONResponse(
        {
            "masks": [polygons[0]],
            "low_res_masks": [polygons[1]],
            "time": time.perf_counter() - started,
        }
    )


async def resolve_embedding(
    body: SamSegmentationRequest, service: InferenceService, settings: Settings
) -> tuple[str | None, ImageEmbedding]:
    """The image's embedding: from ``image`` (cached by its pixels), the client's
    ``embeddings``, or the ``image_id`` of an earlier call, in Roboflow's order."""
    if body.image is not None:
        pixels = await load_request_image(body.image, service, settings)
        embedding_id, embedding, _ = await service.embed(pixels)
        return embedding_id, embedding
    if body.embeddings is not None:
        return None, await asyncio.to_thread(client_embedding, body, service.input_size)
    if body.image_id is None:
        raise InvalidInputError("give image, embeddings (with orig_im_size) or image_id")
    _, embedding_id = await read_state(service, state_key(body.image_id, None))
    if embedding_id is None:
        raise NotFoundError(
            f"image_id {body.image_id!r} has no cached embedding (never embedded, or evicted); "
            "send the image again"
        )
    return embedding_id, await service.fetch_embedding(embedding_id)


def client_embedding(body: SamSegmentationRequest, input_size: int) -> ImageEmbedding:
    """``embeddings`` as sent (1x256xExE, E = input side / 16) for an image of orig_im_size."""
    side = input_size // 16
    expected = (1, 256, side, side)
    if body.orig_im_size is None or min(body.orig_im_size) < 1:
        raise InvalidInputError("orig_im_size [H, W] is required with embeddings")
    if body.embeddings_format == "binary":
        if not isinstance(body.embeddings, str):
            raise InvalidInputError("embeddings: binary embeddings are base64 of a .npy file")
        data = decode_base64(body.embeddings, "embeddings", 8 * int(np.prod(expected)) + 1024)
        array = read_npy(data, "embeddings", int(np.prod(expected)))
    else:
        try:
            array = np.asarray(body.embeddings, dtype=np.float32)
        except (ValueError, TypeError) as err:
            raise InvalidInputError(f"embeddings: not an array of numbers ({err})") from None
    if array.shape != expected:
        raise InvalidInputError(f"embeddings must be {expected}, got shape {array.shape}")
    array = array.astype(np.float32)
    if not np.isfinite(array).all():
        raise InvalidInputError("embeddings contain NaN or infinite values")
    height, width = body.orig_im_size
    resized = ResizeLongestSide.get_preprocess_shape(height, width, input_size)
    return ImageEmbedding(torch.from_numpy(array), (height, width), resized)


def prompt_points(
    body: SamSegmentationRequest, width: int, height: int, settings: Settings
) -> tuple[np.ndarray, np.ndarray]:
    """The Nx2 points and N labels (1 foreground, 0 background), padding points (-1) dropped."""
    if len(body.point_coords) != len(body.point_labels):
        raise InvalidInputError(
            f"point_labels must have one label per point: {len(body.point_labels)} labels for "
            f"{len(body.point_coords)} point_coords"
        )
    if not set(body.point_labels) <= {-1.0, 0.0, 1.0}:
        raise InvalidInputError(
            "point_labels must be 1 (foreground), 0 (background) or -1 (padding, ignored)"
        )
    kept = [
        (p, int(q)) for p, q in zip(body.point_coords, body.point_labels, strict=True) if q >= 0
    ]
    if not kept:
        raise InvalidInputError("empty prompt: no point of point_coords is labelled 1 or 0")
    if len(kept) > settings.max_points:
        raise InvalidInputError(f"point_coords: at most {settings.max_points} points per request")
    for (x, y), _ in kept:
        if not (0 <= x <= width and 0 <= y <= height):
            raise InvalidInputError(f"point_coords {[x, y]} is outside the {width}x{height} image")
    points = np.asarray([p for p, _ in kept], np.float32)
    return points, np.asarray([q for _, q in kept], np.int64)


async def resolve_mask_input(
    body: SamSegmentationRequest,
    service: InferenceService,
    key: str | None,
    embedding_id: str | None,
) -> np.ndarray | None:
    """The 1x1xSxS mask input of ``has_mask_input``: sent, or the last low-res mask of this
    image (not of another image that once had the same ``image_id``)."""
    if not body.has_mask_input:
        return None
    side = service.mask_input_size
    if body.mask_input is not None:
        return await asyncio.to_thread(sent_mask_input, body, side)
    logits, linked = await read_state(service, key if body.use_mask_input_cache else None)
    if logits.shape[0] == 0 or linked != embedding_id:
        raise InvalidInputError(
            "has_mask_input: no mask_input sent and no earlier mask cached for this image "
            "(send mask_input, or segment the same image_id or image first)"
        )
    return logits[:1]


def sent_mask_input(body: SamSegmentationRequest, side: int) -> np.ndarray:
    """``mask_input`` as 1x1xSxS float32: polygons filled (JSON) or a ``.npy`` (binary)."""
    if body.mask_input_format == "binary":
        if not isinstance(body.mask_input, str):
            raise InvalidInputError("mask_input: binary mask input is base64 of a .npy file")
        data = decode_base64(body.mask_input, "mask_input", 8 * side * side + 1024)
        array = read_npy(data, "mask_input", side * side).astype(np.float32)
        if array.size != side * side or array.shape[-2:] != (side, side):
            raise InvalidInputError(
                f"mask_input must be {side}x{side} (or 1x{side}x{side}), got {array.shape}"
            )
        if not np.isfinite(array).all():
            raise InvalidInputError("mask_input contains NaN or infinite values")
        return array.reshape(1, 1, side, side)
    import cv2  # only polygons need OpenCV

    try:
        polygons = [np.asarray(p, np.float64).reshape(-1, 2) for p in body.mask_input]
    except (ValueError, TypeError) as err:
        raise InvalidInputError(f"mask_input: expected polygons [[x, y], ...] ({err})") from None
    if not polygons or any(len(p) < 3 or not np.isfinite(p).all() for p in polygons):
        raise InvalidInputError("mask_input: each polygon needs 3 or more finite [x, y] points")
    raster = np.zeros((side, side), np.uint8)
    cv2.fillPoly(raster, [np.round(p).astype(np.int32) for p in polygons], 1)
    return raster.astype(np.float32)[None, None]


def largest_outline(mask: np.ndarray) -> list[list[int]]:
    """Roboflow's ``mask2poly``: the external outline with the most vertices, simplified by
    ``CHAIN_APPROX_SIMPLE``, as [[x, y], ...]; [] for an empty mask."""
    import cv2

    contours, _ = cv2.findContours(
        np.ascontiguousarray(mask, dtype=np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
    )
    if not contours:
        return []
    return max(contours, key=len).reshape(-1, 2).tolist()


def npy_bytes(array: np.ndarray) -> bytes:
    stream = io.BytesIO()
    np.save(stream, array, allow_pickle=False)
    return stream.getvalue()


def npz_bytes(masks: np.ndarray, low_res: np.ndarray) -> bytes:
    stream = io.BytesIO()
    np.savez_compressed(stream, masks=masks.astype(bool), low_res_masks=low_res)
    return stream.getvalue()
