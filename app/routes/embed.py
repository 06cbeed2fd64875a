"""``POST /embed``: upload an image once, get an id to prompt against."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, File

from ..deps import ServiceDep, SettingsDep, read_image
from ..forms import EmbedForm
from ..openapi import error_responses
from ..schemas import EmbedResponse

logger = logging.getLogger(__name__)

router = APIRouter(tags=["embeddings"])


@router.post(
    "/embed",
    response_model=EmbedResponse,
    responses=error_responses(400, 413, 422, 503, 504),
    summary="Compute (once) and cache an image's embedding",
)
async def embed(
    form: Annotated[EmbedForm, File()],
    service: ServiceDep,
    settings: SettingsDep,
) -> EmbedResponse:
    """Encodes the image unless an embedding of the same pixels is cached (or being computed).

    The id depends only on the decoded pixels and the model, so uploading the same image again
    answers from the cache with ``cached: true``.
    """
    pixels = await read_image(form.image, settings, service)
    embedding_id, embedding, cached = await service.embed(pixels)
    height, width = embedding.original_size
    logger.debug("embed %s (%dx%d) cached=%s", embedding_id, width, height, cached)
    return EmbedResponse(embedding_id=embedding_id, width=width, height=height, cached=cached)
