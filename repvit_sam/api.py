"""``RepViTSAM``: load once, then ``predict(image, points=..., boxes=...)``."""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from typing import Any

import numpy as np
import torch
from segment_anything.modeling import Sam

from .backends import CalibrationSource, make_encoder
from .build import build_repvit_sam
from .build import fuse as fuse_model
from .checkpoint import CheckpointSource
from .embedding import ImageEmbedding
from .embedding_ids import image_key
from .errors import InvalidInputError
from .image_io import ImageSource, load_image
from .modeling import DEFAULT_VARIANT
from .prediction import Prediction
from .predictor import Predictor
from .weights import DEFAULT_WEIGHTS, download_weights, get_weights_spec

logger = logging.getLogger(__name__)


def load_predictor(
    checkpoint: CheckpointSource,
    *,
    variant: str = DEFAULT_VARIANT,
    device: str | torch.device = "cpu",
    fuse: bool = True,
    image_size: int | None = None,
    backend: str = "torch",
    precision: str = "fp32",
    calibration_images: CalibrationSource = None,
    encoder_parts: int = 1,
) -> Predictor:
    """The model of a checkpoint with its encoder backend, behind a Predictor: the one
    assembly of ``RepViTSAM`` and the HTTP service (arguments as ``RepViTSAM``'s;
    ``encoder_parts`` is ``make_encoder``'s ``parts``)."""
    model = build_repvit_sam(
        checkpoint, variant=variant, fuse=fuse, device=device, image_size=image_size
    )
    encoder = make_encoder(
        model,
        backend,
        precision=precision,
        fuse=fuse,
        calibration_images=calibration_images,
        parts=encoder_parts,
    )
    return Predictor(model, encoder=encoder)


class RepViTSAM:
    """RepViT-SAM with embeddings cached per image.

    Example::

        sam = RepViTSAM.from_pretrained()
        result = sam.predict("dog.jpg", points=[[500, 375]], labels=[1])
        mask = result.best_mask  # HxW bool

    Args:
        checkpoint: Path of the RepViT-SAM checkpoint (or a state dict). Use
            ``RepViTSAM.from_pretrained()`` for the official weights.
        variant: Encoder variant of the checkpoint.
        device: "cpu", "cuda", ...
        fuse: Re-parameterise the encoder (same outputs, faster).
        cache_size: How many image embeddings to keep (least recently used are dropped).
        image_size: Input side of a model trained at other than 1024 (see ``build_repvit_sam``).
        backend: Image encoder runtime: "torch", "onnxruntime", "openvino" or "auto" (the
            fastest exact one installed, see ``repvit_sam.backends``).
        precision: "fp32" (exact, the default); "int8" on the CPU (NNCF's quantisation run by
            OpenVINO, ``[int8]`` extra), "bf16" on CUDA or a CPU with native bf16, "fp16" on
            CUDA: faster, not exact (see ``repvit_sam.quantize``).
        calibration_images: With ``precision="int8"``, a folder of images (or images) that
            calibrate the quantisation; scikit-image's sample photos by default.
    """

    def __init__(
        self,
        checkpoint: CheckpointSource | None = None,
        *,
        variant: str = DEFAULT_VARIANT,
        device: str | torch.device = "cpu",
        fuse: bool = True,
        cache_size: int = 4,
        image_size: int | None = None,
        backend: str = "torch",
        precision: str = "fp32",
        calibration_images: CalibrationSource = None,
    ) -> None:
        if checkpoint is None:
            raise InvalidInputError(
                "checkpoint is required: pass the path of repvit_sam.pt, use "
                "RepViTSAM.from_pretrained() to download the official weights, or "
                "RepViTSAM.from_model(model) for a model you built"
            )
        predictor = load_predictor(
            checkpoint,
            variant=variant,
            device=device,
            fuse=fuse,
            image_size=image_size,
            backend=backend,
            precision=precision,
            calibration_images=calibration_images,
        )
        self._init(predictor, cache_size)

    def _init(self, predictor: Predictor, cache_size: int) -> None:
        if cache_size < 0:
            raise InvalidInputError(f"cache_size must be >= 0, got {cache_size}")
        self.model = predictor.model
        self.predictor = predictor
        self.cache_size = cache_size
        self._cache: OrderedDict[str, ImageEmbedding] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def from_model(cls, model: Sam, *, fuse: bool = False, cache_size: int = 4) -> RepViTSAM:
        """Wraps a model built with ``build_repvit_sam`` (or any segment-anything ``Sam``)."""
        self = cls.__new__(cls)
        self._init(Predictor(fuse_model(model) if fuse else model.eval()), cache_size)
        return self

    @classmethod
    def from_pretrained(
        cls,
        name: str = DEFAULT_WEIGHTS,
        *,
        cache_dir: str | os.PathLike[str] | None = None,
        device: str | torch.device = "cpu",
        fuse: bool = True,
        cache_size: int = 4,
        progress: bool = True,
        backend: str = "torch",
        precision: str = "fp32",
        calibration_images: CalibrationSource = None,
    ) -> RepViTSAM:
        """Downloads (once, verified) and loads published weights, by default the official ones."""
        spec = get_weights_spec(name)
        path = download_weights(name, cache_dir, progress=progress)
        return cls(
            path,
            variant=spec.variant,
            device=device,
            fuse=fuse,
            cache_size=cache_size,
            backend=backend,
            precision=precision,
            calibration_images=calibration_images,
        )

    @classmethod
    def remote(cls, base_url: str, *, api_key: str | None = None, **client_options: Any):
        """A client of a running ``repvit-sam serve`` with this class's ``predict``."""
        from .client import RemoteRepViTSAM

        return RemoteRepViTSAM(base_url, api_key=api_key, **client_options)

    @property
    def device(self) -> torch.device:
        return self.model.device

    def embed(self, image: ImageSource | ImageEmbedding) -> ImageEmbedding:
        """The image's embedding, computed once per distinct image and then reused."""
        if isinstance(image, ImageEmbedding):
            return image
        pixels = load_image(image)
        key = image_key(pixels)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        embedding = self.predictor.embed(pixels)
        with self._lock:
            if self.cache_size:
                self._cache[key] = embedding
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return embedding

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()

    def predict(
        self,
        image: ImageSource | ImageEmbedding,
        points: Any = None,
        labels: Any = None,
        boxes: Any = None,
        mask_input: Any = None,
        multimask: bool = False,
    ) -> Prediction:
        """Segments the object the prompts point at.

        Args:
            image: A path, encoded bytes, PIL image, HxWx3 uint8 array (grayscale and RGBA are
                converted), or an ``ImageEmbedding`` from ``embed``.
            points: Nx2 (X, Y) pixels of the original image; with several boxes, points apply
                to every box.
            labels: N labels, 1 foreground / 0 background. Defaults to all 1 when omitted.
            boxes: One XYXY box (4 numbers) or Bx4 boxes, in pixels.
            mask_input: Low-res logits from a previous result (``low_res_logits[best]``).
            multimask: Return 3 candidates per prompt instead of 1.
        """
        embedding = self.embed(image)
        if points is not None and labels is None:
            labels = np.ones(_as_numbers(points, "points", "Nx2 (X, Y)").size // 2, np.int64)
        batched = boxes is not None and _as_numbers(boxes, "boxes", "4 or Bx4").ndim == 2
        masks, scores, logits = self.predictor.predict(
            points, labels, boxes, mask_input, multimask_output=multimask, embedding=embedding
        )
        if batched and masks.ndim == 3:
            masks, scores, logits = masks[None], scores[None], logits[None]
        return Prediction(masks=masks, scores=scores, low_res_logits=logits)


def _as_numbers(value: Any, name: str, shape: str) -> np.ndarray:
    """``value`` as a float array, or an ``InvalidInputError`` naming the argument."""
    try:
        return np.asarray(value, dtype=np.float64)
    except (ValueError, TypeError) as err:
        raise InvalidInputError(f"{name} must be {shape} numbers, got {value!r:.100}") from err
