"""``POST /segment``: masks from point and box prompts, against an id or an uploaded image."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
from fastapi import APIRouter, Request

from repvit_sam import InvalidInputError

from ..bodies import multipart_schema, read_body, resolve_embedding
from ..deps import ServiceDep, SettingsDep
from ..encoding import encode_mask, mask_bbox
from ..errors import PayloadTooLargeError
from ..inference import Decoded
from ..schemas import MaskResult, SegmentRequest, SegmentResponse, error_responses
from ..settings import Settings

logger = logging.getLogger(__name__)

router = APIRouter(tags=["segmentation"])

_OPENAPI_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": SegmentRequest.model_json_schema()},
            "multipart/form-data": {
                "schema": multipart_schema(
                    '{"points": [[320, 240]], "labels": [1]}',
                    "SegmentRequest as JSON, without embedding_id.",
                )
            },
        },
    }
}


def _check_inside(body: SegmentRequest, width: int, height: int) -> None:
    """Coordinates must lie in [0, W] x [0, H] of the original image."""
    named = [(f"points[{i}]", p) for i, p in enumerate(body.points)]
    named += [(f"boxes[{i}]", b) for i, b in enumerate(body.boxes)]
    for name, values in named:
        xs, ys = values[0::2], values[1::2]
        if min(xs) < 0 or max(xs) > width or min(ys) < 0 or max(ys) > height:
            raise InvalidInputError(
                f"{name} {list(values)} is outside the {width}x{height} image "
                f"(x in [0, {width}], y in [0, {height}])"
            )


@router.post(
    "/segment",
    response_model=SegmentResponse,
    responses=error_responses(401, 404, 413, 422, 503),
    openapi_extra=_OPENAPI_BODY,
    summary="Masks for point and box prompts",
)
async def segment(request: Request, service: ServiceDep, settings: SettingsDep) -> SegmentResponse:
    """Decodes masks for the prompts, in one batched decoder call for several boxes.

    Send JSON with an ``embedding_id`` from /embed (the interactive path: no encoder call), or a
    multipart form with the ``image`` and the prompts as JSON in ``request`` (one-shot use).
    """
    context = {"max_points": settings.max_points, "max_boxes": settings.max_boxes}
    body, pixels = await read_body(request, SegmentRequest, settings, context)
    embedding_id, embedding = await resolve_embedding(service, body.embedding_id, pixels)

    height, width = embedding.original_size
    _check_inside(body, width, height)
    num_prompts = max(len(body.boxes), 1)
    _check_output_size(num_prompts * (3 if body.multimask else 1), width, height, settings)
    mask_input = None
    if body.mask_input_id is not None:
        _, mask_input = await service.get_logits(body.mask_input_id, embedding_id)
        if mask_input.shape[0] not in (1, num_prompts):
            raise InvalidInputError(
                f"mask_input_id holds logits for {mask_input.shape[0]} prompts, this request "
                f"has {num_prompts}"
            )
    decoded = await service.decode(
        embedding,
        np.asarray(body.points, np.float32) if body.points else None,
        np.asarray(body.point_labels(), np.int64) if body.points else None,
        np.asarray(body.boxes, np.float32) if body.boxes else None,
        mask_input,
        body.multimask,
    )
    logits_id = uuid.uuid4().hex
    await service.put_logits(
        logits_id,
        decoded.logits,
        np.argmax(decoded.scores, axis=1).tolist(),
        embedding=embedding_id,
    )
    drawn = service.draw_masks(decoded)  # a generator: drawn in the worker thread
    masks = await asyncio.to_thread(_mask_results, drawn, decoded, body.format, settings)
    logger.debug("segment %s: %d prompts, %d masks", embedding_id, num_prompts, len(masks))
    return SegmentResponse(
        embedding_id=embedding_id, width=width, height=height, masks=masks, logits_id=logits_id
    )


def _check_output_size(num_masks: int, width: int, height: int, settings: Settings) -> None:
    """Refuses, before the decoder runs, an answer of more mask pixels than allowed."""
    pixels = num_masks * width * height
    if pixels > settings.max_output_pixels:
        raise PayloadTooLargeError(
            f"{num_masks} masks of {width}x{height} pixels are {pixels} mask pixels, over "
            f"MAX_OUTPUT_PIXELS ({settings.max_output_pixels}): send fewer boxes, multimask "
            "false, or a smaller image"
        )


def _mask_results(
    drawn: Iterator[np.ndarray], decoded: Decoded, fmt: Any, settings: Settings
) -> list[MaskResult]:
    results, vertices = [], 0
    for prompt, (masks, scores) in enumerate(zip(drawn, decoded.scores, strict=True)):
        for mask, score in zip(masks, scores, strict=True):
            segmentation = encode_mask(mask, fmt, settings.polygon_tolerance)
            if fmt == "polygons":
                vertices += sum(len(polygon) // 2 for polygon in segmentation)
                if vertices > settings.max_polygon_points:
                    raise PayloadTooLargeError(
                        f"format 'polygons': the outlines have over {settings.max_polygon_points} "
                        "vertices (MAX_POLYGON_POINTS); ask for format 'rle'"
                    )
            results.append(
                MaskResult(
                    prompt=prompt,
                    score=float(score),
                    area=int(mask.sum()),
                    bbox=mask_bbox(mask),
                    segmentation=segmentation,
                )
            )
    return results
