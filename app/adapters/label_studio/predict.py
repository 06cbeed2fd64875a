"""An interactive prediction: Label Studio's smart-tool regions in, one mask out as the regions
of the labelling config's BrushLabels / PolygonLabels tags.

Each click of a task sends the task, the config and every region of the interaction so far.
The image is read again (a Label Studio URL or a ``data:`` URL), but its embedding comes from
the service's cache, keyed by the image's content: the first click of a task runs the encoder,
every later one only the decoder, in the same queue and batches as /segment.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import numpy as np

from repvit_sam import ImageEmbedding, InvalidInputError

from ...errors import NotReadyError
from ...segmentation import Decoded, check_output_size, draw_masks
from .config import image_targets
from .images import read_task_image
from .prompts import Prompt, context_prompt
from .regions import regions
from .schemas import Prediction, PredictRequest, PredictResponse

if TYPE_CHECKING:
    from ...inference import InferenceService
    from ...settings import Settings

MODEL_CLASS = "RepViTSAM"


def model_version(service: InferenceService) -> str:
    """``repvit-sam-<variant>-<model digest>``: changes with the checkpoint and the runtime."""
    service.check_loaded()
    if not service.ready:
        raise NotReadyError("the model is still loading; retry shortly")
    return f"repvit-sam-{service.settings.variant}-{service.fingerprint[:12]}"


async def predict(
    service: InferenceService, settings: Settings, body: PredictRequest
) -> PredictResponse:
    """The answer to ``POST /predict``: no prediction without a context (there is nothing to
    segment before a click), else one prediction for the one task."""
    version = model_version(service)
    context = body.params.context
    if context is None or not context.result:
        return PredictResponse(results=[])
    if len(body.tasks) != 1:
        raise InvalidInputError(
            f"an interactive prediction is for one task, tasks has {len(body.tasks)}"
        )
    prompt = context_prompt(context.result, settings.max_points)
    targets = image_targets(body.label_config, prompt.image)
    field = f"tasks[0].data.{targets.data_key}"
    if targets.data_key not in body.tasks[0].data:
        raise InvalidInputError(f"{field} is missing: the task has no image for the config")
    data = await read_task_image(body.tasks[0].data[targets.data_key], settings, field)
    pixels = await service.decode_image(data)
    height, width = pixels.shape[:2]
    if (prompt.width, prompt.height) != (width, height):
        raise InvalidInputError(
            f"params.context.result is on a {prompt.width}x{prompt.height} image "
            f"(original_width x original_height), {field} is {width}x{height}"
        )
    _, embedding, _ = await service.embed(pixels)
    mask, score = await click_mask(service, settings, embedding, prompt)
    found = await asyncio.to_thread(
        regions, mask, score, targets.outputs, prompt.label, settings.polygon_tolerance
    )
    return PredictResponse(results=[Prediction(result=found, score=score, model_version=version)])


async def click_mask(
    service: InferenceService, settings: Settings, embedding: ImageEmbedding, prompt: Prompt
) -> tuple[np.ndarray, float]:
    """The HxW bool mask of the prompt and its predicted IoU: one decoder call. A single click
    is ambiguous, so it gets SAM's three candidates and the best is kept (as /segment with
    ``multimask`` and the SDK's SAM examples); more clicks or a box get one mask."""
    height, width = embedding.original_size
    multimask = len(prompt.points) == 1 and prompt.box is None
    check_output_size(1, width, height, settings)
    decoded = await service.decode(
        embedding,
        np.asarray(prompt.points, np.float32) if prompt.points else None,
        np.asarray(prompt.labels, np.int64) if prompt.points else None,
        np.asarray([prompt.box], np.float32) if prompt.box is not None else None,
        None,
        multimask,
    )
    best = int(np.argmax(decoded.scores[0]))
    chosen = Decoded(
        decoded.scores[:, best : best + 1], decoded.logits[:, best : best + 1], embedding
    )
    masks = await asyncio.to_thread(lambda: next(draw_masks(service, chosen)))
    return masks[0], float(chosen.scores[0, 0])
