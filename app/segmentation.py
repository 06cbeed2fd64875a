"""The ``/segment`` workflow: prompts checked against the image, one decoder call, logits kept
for refinement, and masks drawn and encoded a few prompts at a time off the event loop.

The route parses the request and calls ``segment`` once; the model work goes through
``InferenceService`` (and its scheduler), the mask drawing runs on a worker thread.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from repvit_sam import CancelledError, ImageEmbedding, InvalidInputError
from repvit_sam.prompts import PromptNames, validate_boxes, validate_points

from .encoding import encode_mask, mask_bbox
from .errors import PayloadTooLargeError
from .schemas import MaskResult, SegmentRequest, SegmentResponse

if TYPE_CHECKING:
    from .inference import InferenceService
    from .settings import Settings

logger = logging.getLogger(__name__)

# Bytes of mask logits and masks one request draws at once: B prompts x C candidates x H x W
# float32 would reach tens of GB for 64 boxes on a 50-megapixel image.
MASK_DRAWING_BYTES = 256 << 20
# What /segment calls the prompts in its errors.
REQUEST_NAMES = PromptNames(
    points="points", labels="labels", boxes="boxes", mask_input="mask_input_id"
)
# Requests drawing masks at once (on the CPU, outside the model queue): bounds their memory.
MASK_DRAWING_REQUESTS = 2


@dataclass(frozen=True)
class Decoded:
    """The decoder's answer for B prompts (B = 1 without boxes), before drawing masks.

    Attributes:
        scores: BxC predicted IoU.
        logits: BxCxSxS float32 low-res logits (S = 256 at 1024 input).
        embedding: The image they belong to (its sizes place the masks).
    """

    scores: np.ndarray
    logits: np.ndarray
    embedding: ImageEmbedding


async def segment(
    service: InferenceService,
    settings: Settings,
    body: SegmentRequest,
    embedding_id: str,
    embedding: ImageEmbedding,
) -> SegmentResponse:
    """The masks of ``body``'s prompts on the image ``embedding`` (stored as ``embedding_id``)."""
    height, width = embedding.original_size
    check_prompts(body, width, height)
    num_prompts = max(len(body.boxes), 1)
    check_output_size(num_prompts * (3 if body.multimask else 1), width, height, settings)
    mask_input = None
    if body.mask_input_id is not None:
        logits, mask_input = await service.get_logits(body.mask_input_id, embedding_id)
        if body.mask_input_index is not None:
            mask_input = pick_candidate(logits, body.mask_input_index)
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
    best = np.argmax(decoded.scores, axis=1).tolist()
    await service.put_logits(logits_id, decoded.logits, best, embedding=embedding_id)
    drawn = draw_masks(service, decoded)  # a generator: drawn in the worker thread
    stop = threading.Event()
    try:
        masks = await asyncio.to_thread(mask_results, drawn, decoded, body.format, settings, stop)
    except asyncio.CancelledError:
        stop.set()  # the client left: the worker thread stops at its next mask
        raise
    logger.debug("segment %s: %d prompts, %d masks", embedding_id, num_prompts, len(masks))
    return SegmentResponse(
        embedding_id=embedding_id, width=width, height=height, masks=masks, logits_id=logits_id
    )


def pick_candidate(logits: np.ndarray, index: int) -> np.ndarray:
    """Candidate ``index`` of every prompt of BxCxSxS ``logits``, as the Bx1xSxS mask input."""
    if index >= logits.shape[1]:
        raise InvalidInputError(
            f"mask_input_index {index} is out of range: mask_input_id holds "
            f"{logits.shape[1]} candidates per prompt"
        )
    return logits[:, index : index + 1]


def check_prompts(body: SegmentRequest, width: int, height: int) -> None:
    """The library's prompt checks, naming the request's fields (``points[i]``, ``boxes[i]``)."""
    size = (height, width)
    if body.points:
        validate_points(body.points, body.point_labels(), size, REQUEST_NAMES)
    if body.boxes:
        validate_boxes(body.boxes, size, REQUEST_NAMES)


def check_output_size(num_masks: int, width: int, height: int, settings: Settings) -> None:
    """Refuses, before the decoder runs, an answer of more mask pixels than allowed."""
    pixels = num_masks * width * height
    if pixels > settings.max_output_pixels:
        raise PayloadTooLargeError(
            f"{num_masks} masks of {width}x{height} pixels are {pixels} mask pixels, over "
            f"MAX_OUTPUT_PIXELS ({settings.max_output_pixels}): send fewer boxes, multimask "
            "false, or a smaller image"
        )


def draw_masks(service: InferenceService, decoded: Decoded) -> Iterator[np.ndarray]:
    """Each prompt's CxHxW bool masks at the original size, drawn a few prompts at a time
    (within ``MASK_DRAWING_BYTES``), so that a request's full-size masks never all exist at
    once. Meant for a worker thread: it does not hold the model thread."""
    prompts, candidates = decoded.scores.shape
    height, width = decoded.embedding.original_size
    # segment-anything upsamples to the padded input square first, then to the image.
    side = service.input_size
    # Per candidate: float32 logits at the input square and at the image's size, and the bool
    # masks of this chunk and of the last (still being encoded when this one is drawn).
    per_prompt = candidates * (4 * side * side + 6 * height * width)
    step = max(1, MASK_DRAWING_BYTES // per_prompt)
    embedding = decoded.embedding.to("cpu")
    for start in range(0, prompts, step):
        yield from service.upscale(
            torch.from_numpy(decoded.logits[start : start + step]), embedding
        )


def mask_results(
    drawn: Iterator[np.ndarray],
    decoded: Decoded,
    fmt: Any,
    settings: Settings,
    stop: threading.Event | None = None,
) -> list[MaskResult]:
    """The answer's records, encoded as ``fmt``; polygons within ``max_polygon_points``.

    Raises:
        CancelledError: ``stop`` was set (the request's client left) before the last mask.
    """
    results, vertices = [], 0
    for prompt, (masks, scores) in enumerate(zip(drawn, decoded.scores, strict=True)):
        for mask, score in zip(masks, scores, strict=True):
            if stop is not None and stop.is_set():
                raise CancelledError(f"the answer was abandoned after {len(results)} masks")
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
