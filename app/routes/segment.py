"""``POST /segment``: masks from point and box prompts, against an id or an uploaded image."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request, Response

from ..answers import json_answer
from ..bodies import read_body, request_body, resolve_embedding
from ..deps import ServiceDep, SettingsDep
from ..forms import SegmentForm
from ..openapi import error_responses
from ..schemas import SegmentRequest, SegmentResponse
from ..segmentation import segment as segment_prompts

logger = logging.getLogger(__name__)

router = APIRouter(tags=["segmentation"])


@router.post(
    "/segment",
    response_model=SegmentResponse,
    responses=error_responses(400, 404, 413, 415, 422, 503, 504),
    openapi_extra=request_body(SegmentRequest, SegmentForm),
    summary="Masks for point and box prompts",
)
async def segment(request: Request, service: ServiceDep, settings: SettingsDep) -> Response:
    """Decodes masks for the prompts, in one batched decoder call for several boxes.

    Send JSON with an ``embedding_id`` from /embed (the interactive path: no encoder call), or a
    multipart form with the ``image`` and the prompts as JSON in ``request`` (one-shot use).
    """
    context = {"max_points": settings.max_points, "max_boxes": settings.max_boxes}
    body, pixels = await read_body(request, SegmentRequest, settings, context)
    embedding_id, embedding = await resolve_embedding(service, body.embedding_id, pixels)
    answer = await segment_prompts(service, settings, body, embedding_id, embedding)
    return await json_answer(answer)
