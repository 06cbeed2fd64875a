"""Cached embeddings and logits as ``.npy``: for clients that run the decoder themselves."""

from __future__ import annotations

import asyncio
import io
import logging
import uuid
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Path, Request, Response

from repvit_sam import InvalidInputError

from ..deps import ServiceDep
from ..openapi import error_responses
from ..schemas import ID_PATTERN, LogitsResponse

logger = logging.getLogger(__name__)

router = APIRouter(tags=["embeddings"])

IdPath = Annotated[str, Path(pattern=ID_PATTERN, description="32 hex digits")]
NPY = "application/octet-stream"
_NPY_RESPONSE = {200: {"content": {NPY: {}}, "description": "A .npy file (numpy.load reads it)."}}


def _read_npy(body: bytes, side: int, max_prompts: int) -> np.ndarray:
    """One .npy array of SxS, 1xSxS or Bx1xSxS numbers (1 <= B <= ``max_prompts``) as
    Bx1xSxS; its header is checked before any data is read, so a header that claims a huge
    shape costs nothing."""
    stream = io.BytesIO(body)
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(stream)
        else:
            shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(stream)
    except (ValueError, OSError, EOFError) as err:
        raise InvalidInputError(f"logits: body is not a .npy array ({err})") from err
    if dtype.kind not in "fiu":
        raise InvalidInputError(f"logits: expected a numeric array, got dtype {dtype}")
    forms = {2: (1, 1, *shape), 3: (1, *shape), 4: tuple(shape)}
    full = forms.get(len(shape), ())
    if len(full) != 4 or full[1:] != (1, side, side) or not 1 <= full[0] <= max_prompts:
        raise InvalidInputError(
            f"logits must be {side}x{side}, 1x{side}x{side} or Bx1x{side}x{side} with "
            f"1 <= B <= {max_prompts}, got {tuple(shape)}"
        )
    count = int(np.prod(shape))
    if len(body) - stream.tell() != count * dtype.itemsize:
        raise InvalidInputError(
            f"logits: the .npy data is {len(body) - stream.tell()} bytes, its header says "
            f"{count * dtype.itemsize}"
        )
    array = np.frombuffer(body, dtype, count, offset=stream.tell())
    return array.reshape(shape, order="F" if fortran_order else "C").reshape(full)


def _npy(array: np.ndarray) -> bytes:
    stream = io.BytesIO()
    np.save(stream, array, allow_pickle=False)
    return stream.getvalue()


@router.get(
    "/embeddings/{embedding_id}",
    response_class=Response,
    responses={**_NPY_RESPONSE, **error_responses(404, 422)},
    summary="The embedding as .npy (1x256x64x64 float32)",
)
async def get_embedding(embedding_id: IdPath, service: ServiceDep) -> Response:
    """The encoder output; headers ``X-Original-Size`` and ``X-Input-Size`` give (H, W)."""
    embedding = await service.fetch_embedding(embedding_id)
    data = await asyncio.to_thread(lambda: _npy(embedding.numpy()))
    return Response(
        data,
        media_type=NPY,
        headers={
            "X-Original-Size": ",".join(map(str, embedding.original_size)),
            "X-Input-Size": ",".join(map(str, embedding.input_size)),
            "Content-Disposition": f'attachment; filename="{embedding_id}.npy"',
        },
    )


@router.delete(
    "/embeddings/{embedding_id}",
    status_code=204,
    responses=error_responses(404, 422),
    summary="Drop a cached embedding",
)
async def delete_embedding(embedding_id: IdPath, service: ServiceDep) -> Response:
    await service.delete_embedding(embedding_id)
    return Response(status_code=204)


@router.get(
    "/logits/{logits_id}",
    response_class=Response,
    responses={**_NPY_RESPONSE, **error_responses(404, 422)},
    summary="Low-res logits of a /segment answer as .npy (BxCx256x256 float32)",
)
async def get_logits(logits_id: IdPath, service: ServiceDep) -> Response:
    """B prompts, C candidates, in the order of the answer's masks."""
    logits, _ = await service.get_logits(logits_id)
    return Response(await asyncio.to_thread(_npy, logits), media_type=NPY)


@router.post(
    "/logits",
    response_model=LogitsResponse,
    responses=error_responses(413, 422, 503),
    openapi_extra={"requestBody": {"required": True, "content": {NPY: {}}}},
    summary="Upload low-res logits (.npy) to use as mask_input_id",
)
async def put_logits(request: Request, service: ServiceDep) -> LogitsResponse:
    """Accepts SxS, 1xSxS or Bx1xSxS float logits (S = 256 at 1024 input), one per prompt."""
    side = service.mask_input_size
    array = _read_npy(await request.body(), side, service.settings.max_boxes)
    logits = array.astype(np.float32)
    if not np.isfinite(logits).all():
        raise InvalidInputError("logits contain NaN or infinite values")
    logits_id = uuid.uuid4().hex
    await service.put_logits(logits_id, logits, [0] * logits.shape[0])
    return LogitsResponse(logits_id=logits_id)
