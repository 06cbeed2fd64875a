"""JSON answers encoded on a worker thread, not on the event loop.

FastAPI serialises a returned model on the event loop: a /masks answer of a few thousand COCO
RLE records, or a /segment answer of 64 masks as polygons, holds every other request (health
checks included) for as long as the encoding takes. The model routes encode with pydantic's
``model_dump_json`` in a thread instead and return the bytes; their ``response_model`` still
documents the answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from fastapi import Response
from pydantic import BaseModel


async def json_answer(answer: BaseModel | Callable[[], BaseModel]) -> Response:
    """``answer`` as an ``application/json`` response, encoded off the event loop.

    Args:
        answer: The model, or a function building it (validating thousands of records is
            work too, done on the same thread).
    """

    def encode() -> str:
        return (answer if isinstance(answer, BaseModel) else answer()).model_dump_json()

    return Response(await asyncio.to_thread(encode), media_type="application/json")
