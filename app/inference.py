"""``InferenceService``: the one object that runs the model.

Model calls go through ``ModelScheduler`` (app/scheduler.py): one model thread, decoder calls
for clicks before encoder calls and long tasks, admission by expected time, a deadline per call,
and calls dropped when their caller goes away. Concurrent embeds of the same image share one
encoder call (single-flight). Long tasks (automatic masks, edge maps) run under
``max_task_seconds`` and let clicks in between their steps (of at most ``max_step_points``
prompts). Uploaded images are decoded by ``ImageDecoder`` (app/image_decoding.py).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import torch

from repvit_sam import (
    DeadlineExceededError,
    EdgeDetector,
    EdgeMap,
    ImageEmbedding,
    InvalidInputError,
    MaskGenerator,
    Predictor,
    download_weights,
)
from repvit_sam.api import load_predictor
from repvit_sam.backends import between_layers
from repvit_sam.embedding_ids import embedding_id, model_fingerprint
from repvit_sam.weights import sha256_of

from .cache import EmbeddingCache
from .errors import ModelLoadError, NotFoundError, NotReadyError
from .image_decoding import ImageDecoder
from .metrics import Metrics
from .scheduler import ModelScheduler, Priority
from .segmentation import MASK_DRAWING_REQUESTS, Decoded
from .settings import Settings
from .store import EmbeddingStore, PersistentStore

logger = logging.getLogger(__name__)

T = TypeVar("T")
# The model's own start: long, and before anything else is queued.
LOAD_SECONDS = 24 * 3600.0


class InferenceService:
    """Owns the model, its executor, the cache and the request queue.

    Args:
        settings: Model, device, cache and queue settings.
        cache: Where embeddings and logits live.
        metrics: Receives encoder/decoder timings and rejections.
    """

    def __init__(self, settings: Settings, cache: EmbeddingCache, metrics: Metrics) -> None:
        self.settings = settings
        self.cache = cache
        self.store = EmbeddingStore(cache, on_store_lookup=metrics.count_store_lookup)
        self.metrics = metrics
        self.scheduler = ModelScheduler(settings.queue_size, settings.max_queue_seconds)
        self.predictor: Predictor | None = None
        self.fingerprint = ""
        self.load_error: str | None = None
        self._drawing = threading.BoundedSemaphore(MASK_DRAWING_REQUESTS)
        self.images = ImageDecoder(settings.max_pixels, settings.max_concurrent_image_decodes)
        self._inflight: dict[str, asyncio.Task[ImageEmbedding]] = {}

    # Lifecycle ---------------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self.predictor is not None

    @property
    def mask_input_size(self) -> int:
        """Side S of the low-res logits (256 at 1024 input)."""
        return self._require_predictor().mask_input_size

    @property
    def queue_depth(self) -> int:
        return self.scheduler.depth

    async def start(self) -> None:
        """Loads (downloading if needed) and warms up the model on the model executor."""
        try:
            await self.run(self._load, kind="load", seconds=LOAD_SECONDS)
        except Exception as err:
            self.load_error = f"the model failed to load: {err}"
            logger.exception("the model failed to load")
            raise

    def _load(self) -> None:
        started = time.perf_counter()
        settings = self.settings
        checkpoint = settings.checkpoint or download_weights()
        names = ("variant", "device", "fuse", "image_size", "backend", "precision")
        options = {name: getattr(settings, name) for name in names}
        predictor = load_predictor(
            checkpoint,
            calibration_images=settings.calibration_images,
            encoder_parts=settings.encoder_parts,
            **options,
        )
        encoder = predictor.encoder
        self.fingerprint = self.store.fingerprint = model_fingerprint(
            sha256_of(checkpoint),
            settings.variant,
            predictor.model.image_encoder.img_size,
            settings.fuse,
            encoder.name,
        )
        if settings.store_url:
            self.store.persistent = PersistentStore(settings.store_url, self.fingerprint)
        prompts = predictor.model.prompt_encoder
        self.store.features_shape = (1, prompts.embed_dim, *prompts.image_embedding_size)
        self.store.logits_size = tuple(prompts.mask_input_size)
        if settings.warmup:
            with torch.inference_mode():
                embedding = predictor.embed(np.zeros((64, 64, 3), np.uint8))
                predictor.predict(np.array([[32.0, 32.0]]), np.array([1]), embedding=embedding)
        self.predictor = predictor
        logger.info(
            "model %s loaded from %s on %s (fused=%s, encoder backend %s), ready in %.1fs",
            settings.variant,
            checkpoint,
            settings.device,
            settings.fuse,
            encoder.name,
            time.perf_counter() - started,
        )

    def close(self) -> None:
        self.scheduler.close()

    def drain(self, seconds: float) -> None:
        """On SIGTERM: refuse new model calls (503) and the queued ones that cannot finish
        within ``seconds``, so that a load balancer retries them on another replica."""
        self.scheduler.drain(seconds)

    # The queue ---------------------------------------------------------------------------------

    async def run(
        self,
        function: Callable[..., T],
        *args: Any,
        kind: str = "call",
        priority: Priority = Priority.BATCH,
        seconds: float | None = None,
    ) -> T:
        """``function(*args)`` on the model thread (see ``ModelScheduler.run``); the deadline
        is ``seconds`` from now, by default ``max_embed_seconds``."""
        limit = self.settings.max_embed_seconds if seconds is None else seconds
        return await self.scheduler.run(
            function, *args, kind=kind, priority=priority, seconds=limit
        )

    async def run_task(self, kind: str, function: Callable[..., T], *args: Any) -> T:
        """Runs ``function(*args, deadline=..., cancel=...)`` on the model thread, time-limited.

        The limit, ``max_task_seconds``, counts from this call, queue wait included: the answer
        is then ``DeadlineExceededError`` (504), never a hang. The task checks ``cancel()``
        between its steps, where waiting clicks run first; it turns True when the caller goes
        away or the limit passes, and the task stops there.
        """
        limit = self.settings.max_task_seconds
        try:
            return await self.scheduler.run(
                function, *args, kind=kind, priority=Priority.BATCH, seconds=limit,
                takes_cancel=True,
            )  # fmt: skip
        except DeadlineExceededError as err:
            raise DeadlineExceededError(
                f"the task did not finish within max_task_seconds={limit:g} ({err}); ask for "
                "less work (a smaller points_per_side, fewer crop_n_layers) or raise "
                "REPVIT_SAM_MAX_TASK_SECONDS"
            ) from err

    def check_loaded(self) -> None:
        """Raises ``ModelLoadError`` once the model has failed to load (for good)."""
        if self.load_error is not None:
            raise ModelLoadError(self.load_error)

    def _require_predictor(self) -> Predictor:
        self.check_loaded()
        if self.predictor is None:
            raise NotReadyError("the model is still loading; retry shortly (see /readyz)")
        return self.predictor

    # Images and embeddings ---------------------------------------------------------------------

    async def decode_image(self, data: bytes) -> np.ndarray:
        """Encoded image bytes as HxWx3 uint8 RGB (``ImageDecoder.decode``)."""
        return await self.images.decode(data)

    def embedding_id(self, pixels: np.ndarray) -> str:
        """The id of an HxWx3 uint8 image under this model: its pixels and the model's digest."""
        return embedding_id(self.fingerprint, pixels)

    async def embed(self, pixels: np.ndarray) -> tuple[str, ImageEmbedding, bool]:
        """The image's id, embedding and whether it was already cached (or being computed)."""
        self._require_predictor()
        key = await asyncio.to_thread(self.embedding_id, pixels)
        embedding = await asyncio.to_thread(self.store.get_embedding, key)
        if embedding is not None:
            return key, embedding, True
        task = self._inflight.get(key)
        cached = task is not None
        if task is None:
            task = asyncio.ensure_future(self._encode_and_store(key, pixels))
            self._inflight[key] = task
            task.add_done_callback(lambda _: self._inflight.pop(key, None))
        # shield: a client that disconnects must not cancel the encode others wait for.
        return key, await asyncio.shield(task), cached

    async def _encode_and_store(self, key: str, pixels: np.ndarray) -> ImageEmbedding:
        embedding = await self.run(self._encode, pixels, kind="encoder")
        await asyncio.to_thread(self.store.put_embedding, key, embedding)
        return embedding

    def _encode(self, pixels: np.ndarray) -> ImageEmbedding:
        predictor = self._require_predictor()
        started = time.perf_counter()
        # Waiting clicks run between the encoder's parts (see between_layers and encoder_parts).
        with (
            torch.inference_mode(),
            between_layers(predictor.encoder, self.scheduler.let_interactive_in),
        ):
            embedding = predictor.embed(pixels)
        if embedding.device.type == "cuda":
            # CUDA runs kernels asynchronously: wait, so that the time is the encoder's and its
            # errors surface in this request rather than in a later one.
            torch.cuda.synchronize(embedding.device)
        self.metrics.observe_model("encoder", time.perf_counter() - started)
        logger.debug("encoded a %dx%d image", pixels.shape[1], pixels.shape[0])
        return embedding

    async def fetch_embedding(self, key: str) -> ImageEmbedding:
        """The embedding under ``key`` (NotFoundError if absent), read off the event loop."""
        return await asyncio.to_thread(self.get_embedding, key)

    def get_embedding(self, key: str) -> ImageEmbedding:
        """The embedding under ``key``; blocks on the cache (scripts; routes use ``fetch_``)."""
        embedding = self.store.get_embedding(key)
        if embedding is None:
            raise NotFoundError(
                f"embedding_id {key!r} is unknown or was evicted; POST the image to /embed again"
            )
        return embedding

    async def delete_embedding(self, key: str) -> None:
        if not await asyncio.to_thread(self.store.delete_embedding, key):
            raise NotFoundError(f"embedding_id {key!r} is unknown or was evicted")

    # Decoding ----------------------------------------------------------------------------------

    async def decode(
        self,
        embedding: ImageEmbedding,
        points: np.ndarray | None,
        labels: np.ndarray | None,
        boxes: np.ndarray | None,
        mask_input: np.ndarray | None,
        multimask: bool,
    ) -> Decoded:
        """Runs the prompt encoder and mask decoder for B boxes (or one point prompt).

        Args:
            embedding: The image.
            points: Nx2 XY pixels of the original image, applied to every box.
            labels: N labels, 1 foreground and 0 background.
            boxes: Bx4 XYXY pixels, one prompt each.
            mask_input: Bx1xSxS (or 1x1xSxS, shared) low-res logits.
            multimask: Three candidates per prompt instead of one.
        """
        return await self.run(
            self._decode, embedding, points, labels, boxes, mask_input, multimask,
            kind="decoder", priority=Priority.INTERACTIVE,
            seconds=self.settings.max_segment_seconds,
        )  # fmt: skip

    def _decode(
        self,
        embedding: ImageEmbedding,
        points: np.ndarray | None,
        labels: np.ndarray | None,
        boxes: np.ndarray | None,
        mask_input: np.ndarray | None,
        multimask: bool,
    ) -> Decoded:
        predictor = self._require_predictor()
        started = time.perf_counter()
        with torch.inference_mode():
            _, scores, logits = predictor.predict(
                points,
                labels,
                boxes,
                mask_input,
                multimask_output=multimask,
                embedding=embedding,
                upscale=False,
            )
        self.metrics.observe_model("decoder", time.perf_counter() - started)
        if boxes is None or len(boxes) == 1:
            scores, logits = scores[None], logits[None]
        return Decoded(scores, logits.astype(np.float32, copy=False), embedding)

    def upscale(self, logits: torch.Tensor, embedding: ImageEmbedding) -> np.ndarray:
        """BxCxSxS low-res logits -> BxCxHxW bool masks at the image's size, on the CPU and
        outside the model queue; at most ``MASK_DRAWING_REQUESTS`` requests at once."""
        predictor = self._require_predictor()
        with self._drawing:
            return predictor.upscale_masks(logits, embedding).numpy()

    @property
    def input_size(self) -> int:
        """Side of the encoder's square input (1024 for the official model)."""
        return self._require_predictor().model.image_encoder.img_size

    # Logits ------------------------------------------------------------------------------------

    async def put_logits(self, key: str, logits: np.ndarray, best: list[int], **meta: Any) -> None:
        """Keeps BxCxSxS ``logits``; ``best[b]`` is the candidate sent back for refinement."""
        meta = {**meta, "best": [int(b) for b in best]}
        await asyncio.to_thread(self.store.put_logits, key, logits, meta)

    async def get_logits(
        self, key: str, embedding_id: str | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The BxCxSxS logits under ``key`` and the Bx1xSxS mask input they give back.

        Args:
            embedding_id: The image they will refine: logits that /segment made for another
                image are refused (uploaded ones belong to none and fit any).
        """
        found = await asyncio.to_thread(self.store.get_logits, key)
        if found is None:
            raise NotFoundError(f"logits id {key!r} is unknown or was evicted")
        logits, meta = found
        source = meta.get("embedding")
        if embedding_id is not None and source is not None and source != embedding_id:
            raise InvalidInputError(
                f"mask_input_id {key!r} holds logits of image {source}, not of {embedding_id}"
            )
        best = np.asarray(meta["best"], dtype=np.int64)
        return logits, logits[np.arange(len(best)), best][:, None]

    # Everything mode ---------------------------------------------------------------------------

    async def generate_masks(
        self, embedding: ImageEmbedding, pixels: np.ndarray | None, params: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """``MaskGenerator(model, **params).generate(...)`` records, with COCO RLE masks.

        Args:
            embedding: The image's embedding.
            pixels: The HxWx3 uint8 image; None when only the embedding is known, which is
                enough for ``crop_n_layers`` 0 only (crops are encoded from their pixels).
            params: The generator's parameters (validated again by ``MaskGenerator``).
        """
        coco_params = {**self._in_steps(params), "output_mode": "coco_rle"}
        records = await self.run_task(
            "masks",
            self._whole_image_task,
            "masks",
            lambda p: MaskGenerator(p.model, encoder=p.encoder, **coco_params).generate,
            embedding,
            pixels,
        )
        logger.debug("generated %d masks", len(records))
        return records

    async def detect_edges(
        self, embedding: ImageEmbedding, pixels: np.ndarray | None, params: dict[str, Any]
    ) -> EdgeMap:
        """``EdgeDetector(model, **params).detect(...)`` of the image (pixels may be None)."""
        return await self.run_task(
            "edges",
            self._whole_image_task,
            "edges",
            lambda p: EdgeDetector(p.model, encoder=p.encoder, **self._in_steps(params)).detect,
            embedding,
            pixels,
        )

    def _in_steps(self, params: dict[str, Any]) -> dict[str, Any]:
        """``params`` with at most ``max_step_points`` prompts per decoder step: a click waits
        for one step. Smaller batches change no mask, only how the grid is split."""
        step = min(params.get("points_per_batch", 64), self.settings.max_step_points)
        return {**params, "points_per_batch": step}

    def _whole_image_task(
        self,
        metric: str,
        make_task: Callable[[Predictor], Callable[..., T]],
        embedding: ImageEmbedding,
        pixels: np.ndarray | None,
        *,
        deadline: float,
        cancel: Callable[[], bool],
    ) -> T:
        """Runs ``make_task(predictor)`` on the whole image and records its time as ``metric``.

        The task is called as ``task(image, embedding=..., deadline=..., cancel=...)``;
        ``make_task`` builds the tool here, on the model thread, where its work runs.
        """
        predictor = self._require_predictor()
        started = time.perf_counter()
        result = make_task(predictor)(pixels, embedding=embedding, deadline=deadline, cancel=cancel)
        self.metrics.observe_model(metric, time.perf_counter() - started)
        return result
