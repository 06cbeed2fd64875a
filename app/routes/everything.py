"""``POST /masks`` and ``POST /edges``: segment everything, and SAM's zero-shot edge maps.

Both take a JSON body with an ``embedding_id`` from /embed, or a multipart form with the
``image`` and the same JSON in ``request``. They run on the model thread through the service's
queue (503 when full) under ``max_task_seconds`` (504 beyond).
"""

from __future__ import annotations

import asyncio
import base64
import functools
import io
import logging
from typing import Any

import numpy as np
from fastapi import APIRouter, Request, Response
from PIL import Image

from repvit_sam import EdgeMap

from ..answers import json_answer
from ..bodies import read_body, request_body, resolve_embedding
from ..deps import ServiceDep, SettingsDep
from ..forms import EdgesForm, MasksForm
from ..openapi import error_responses
from ..schemas import EdgesRequest, EdgesResponse, MasksRequest, MasksResponse

logger = logging.getLogger(__name__)

router = APIRouter(tags=["everything"])

NPY = "application/octet-stream"
_ERRORS = error_responses(400, 404, 413, 415, 422, 503, 504)


@router.post(
    "/masks",
    response_model=MasksResponse,
    responses=_ERRORS,
    openapi_extra=request_body(MasksRequest, MasksForm),
    summary="Segment everything: automatic masks as COCO RLE records",
)
async def masks(request: Request, service: ServiceDep, settings: SettingsDep) -> Response:
    """Runs ``MaskGenerator`` (segment-anything's automatic mask generator) on the image.

    The parameters are ``SamAutomaticMaskGenerator``'s, with its defaults; the records are its
    records with ``segmentation`` as COCO RLE ``{size: [h, w], counts}``. ``crop_n_layers`` > 0
    encodes image crops, so it needs the image uploaded (multipart), not an ``embedding_id``.
    A task running past ``max_task_seconds`` is answered 504.
    """
    context = {
        "max_points_per_side": settings.max_points_per_side,
        "max_points_per_batch": settings.max_points_per_batch,
    }
    body, pixels = await read_body(request, MasksRequest, settings, context)
    embedding_id, embedding = await resolve_embedding(service, body.embedding_id, pixels)
    records = await service.generate_masks(embedding, pixels, body.generator_params())
    height, width = embedding.original_size
    logger.debug("masks %s: %d masks", embedding_id, len(records))
    answer = functools.partial(
        MasksResponse, embedding_id=embedding_id, width=width, height=height, masks=records
    )
    return await json_answer(answer)


@router.post(
    "/edges",
    response_model=EdgesResponse,
    responses={
        200: {
            "description": 'An 8-bit PNG ("png", the default), a float32 .npy ("npy"), or '
            'EdgesResponse ("json"). Headers X-Embedding-Id, X-Num-Masks and X-Num-Kept come '
            "with the binary formats.",
            "content": {"image/png": {}, NPY: {}},
        },
        **_ERRORS,
    },
    openapi_extra=request_body(EdgesRequest, EdgesForm),
    summary="Edge map of the image (SAM's zero-shot edge detection)",
)
async def edges(request: Request, service: ServiceDep, settings: SettingsDep) -> Any:
    """Runs ``EdgeDetector``: an HxW edge strength map in [0, 1] at the image's size.

    ``format`` picks the answer: "png" (8-bit grayscale, 255 the strongest edge), "npy" (the
    float32 map) or "json" (``EdgesResponse``, the .npy base64-encoded). A task running past
    ``max_task_seconds`` is answered 504.
    """
    context = {
        "max_edge_points_per_side": settings.max_edge_points_per_side,
        "max_points_per_batch": settings.max_points_per_batch,
    }
    body, pixels = await read_body(request, EdgesRequest, settings, context)
    embedding_id, embedding = await resolve_embedding(service, body.embedding_id, pixels)
    edge_map = await service.detect_edges(embedding, pixels, body.detector_params())
    logger.debug("edges %s: %d of %d masks", embedding_id, edge_map.num_kept, edge_map.num_masks)
    if body.format == "json":
        height, width = edge_map.edges.shape
        data = await asyncio.to_thread(_npy, edge_map.edges)
        answer = EdgesResponse(
            embedding_id=embedding_id,
            width=width,
            height=height,
            num_masks=edge_map.num_masks,
            num_kept=edge_map.num_kept,
            edges=base64.b64encode(data).decode("ascii"),
        )
        return await json_answer(answer)
    headers = {
        "X-Embedding-Id": embedding_id,
        "X-Num-Masks": str(edge_map.num_masks),
        "X-Num-Kept": str(edge_map.num_kept),
    }
    if body.format == "npy":
        data = await asyncio.to_thread(_npy, edge_map.edges)
        return Response(data, media_type=NPY, headers=headers)
    data = await asyncio.to_thread(_png, edge_map)
    return Response(data, media_type="image/png", headers=headers)


def _npy(array: np.ndarray) -> bytes:
    stream = io.BytesIO()
    np.save(stream, np.ascontiguousarray(array, dtype=np.float32), allow_pickle=False)
    return stream.getvalue()


def _png(edge_map: EdgeMap) -> bytes:
    stream = io.BytesIO()
    Image.fromarray(edge_map.to_uint8()).save(stream, format="PNG")
    return stream.getvalue()
