"""A drop-in for ``segment_anything.SamPredictor`` whose image embedding is a value."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from segment_anything.modeling import Sam
from segment_anything.utils.transforms import ResizeLongestSide

from .embedding import ImageEmbedding
from .errors import ImageNotSetError, InvalidImageError, InvalidInputError
from .float32 import full_float32
from .modeling.batched_decoder import BatchedMaskDecoder, ImageContext
from .point_decode import PointDecode
from .prompts import validate_boxes, validate_mask_input, validate_points


def check_rgb_image(image: Any, name: str = "image") -> np.ndarray:
    """Requires an HxWx3 uint8 array, naming what is wrong otherwise."""
    if not isinstance(image, np.ndarray):
        raise InvalidImageError(
            f"{name} must be an HxWx3 uint8 numpy array, got {type(image).__name__}; "
            "repvit_sam.load_image converts files, bytes and PIL images"
        )
    if image.ndim != 3 or image.shape[2] != 3:
        raise InvalidImageError(
            f"{name} must be HxWx3 (RGB), got shape {image.shape}; repvit_sam.load_image converts "
            "grayscale and RGBA images"
        )
    if image.dtype != np.uint8:
        raise InvalidImageError(f"{name} must have dtype uint8, got {image.dtype}")
    if min(image.shape[:2]) < 1:
        raise InvalidImageError(f"{name} is empty: shape {image.shape}")
    return image


def image_size(image: np.ndarray | None, embedding: ImageEmbedding | None) -> tuple[int, int]:
    """(H, W) of ``image``, or of the image ``embedding`` was computed from when only it is
    given (a service that cached the embedding need not keep the pixels).

    Raises:
        InvalidImageError: ``image`` is not an HxWx3 uint8 array.
        InvalidInputError: Neither is given.
    """
    if image is not None:
        check_rgb_image(image)
        return int(image.shape[0]), int(image.shape[1])
    if embedding is None:
        raise InvalidInputError("give the image, or its embedding (embedding=...)")
    return tuple(embedding.original_size)  # type: ignore[return-value]


class Predictor:
    """Predicts masks from prompts, with the interface of ``segment_anything.SamPredictor``.

    Beyond SamPredictor: ``embed`` returns the image embedding as an ``ImageEmbedding`` and
    ``predict``/``predict_torch`` take ``embedding=`` so one predictor serves many images (the
    stateful ``set_image`` path still works); ``predict`` takes several boxes (Bx4) at once,
    with points applying to every box. Inputs are validated with errors naming the argument.

    Args:
        sam_model: A ``segment_anything.modeling.Sam`` (e.g. from ``build_repvit_sam``).
        encoder: Runs the image encoder on a preprocessed Bx3xSxS batch (an inference backend,
            see ``repvit_sam.backends``); the model's own encoder by default.
        batched_decoder: Decode with ``BatchedMaskDecoder``, which shares prompt-independent
            work across prompts (same outputs up to float rounding); False runs
            segment-anything's ``MaskDecoder`` as is.
    """

    def __init__(
        self,
        sam_model: Sam,
        *,
        encoder: Callable[[torch.Tensor], torch.Tensor] | None = None,
        batched_decoder: bool = True,
    ) -> None:
        self.model = sam_model
        self.transform = ResizeLongestSide(sam_model.image_encoder.img_size)
        self.encoder = encoder if encoder is not None else sam_model.image_encoder
        self.decoder = (
            BatchedMaskDecoder(sam_model.prompt_encoder, sam_model.mask_decoder)
            if batched_decoder
            else None
        )
        self._embedding: ImageEmbedding | None = None
        self._context: tuple[torch.Tensor, ImageContext] | None = None

    # Embedding -------------------------------------------------------------------------------

    @torch.inference_mode()
    def embed(self, image: np.ndarray, image_format: str = "RGB") -> ImageEmbedding:
        """Computes the embedding of an HxWx3 uint8 image without changing the predictor's state.

        Args:
            image: HxWx3 uint8 array in ``image_format`` channel order.
            image_format: "RGB" or "BGR".
        """
        if image_format not in ("RGB", "BGR"):
            raise InvalidInputError(f"image_format must be 'RGB' or 'BGR', got {image_format!r}")
        check_rgb_image(image)
        self._check_aspect_ratio(*image.shape[:2])
        if image_format != self.model.image_format:
            image = image[..., ::-1]
        resized = self.transform.apply_image(image)
        tensor = torch.as_tensor(resized, device=self.device).permute(2, 0, 1).contiguous()
        return self.embed_torch(tensor[None], image.shape[:2])

    def _check_aspect_ratio(self, height: int, width: int) -> None:
        side = self.transform.target_length
        if min(ResizeLongestSide.get_preprocess_shape(height, width, side)) < 1:
            raise InvalidImageError(
                f"image is {width}x{height}: resized to a longest side of {side} its short side "
                f"would be 0 pixels (the long side may be at most {2 * side} times the short)"
            )

    @torch.inference_mode()
    def embed_torch(
        self, transformed_image: torch.Tensor, original_image_size: tuple[int, ...]
    ) -> ImageEmbedding:
        """Embeds an image already resized by ``self.transform``.

        Args:
            transformed_image: 1x3xHxW tensor, longest side ``img_size``.
            original_image_size: (H, W) of the image before resizing.
        """
        if (
            transformed_image.dim() != 4
            or transformed_image.shape[:2] != (1, 3)
            or max(transformed_image.shape[2:]) != self.model.image_encoder.img_size
        ):
            raise InvalidInputError(
                "transformed_image must be 1x3xHxW with its longest side "
                f"{self.model.image_encoder.img_size}, got {tuple(transformed_image.shape)}"
            )
        input_size = tuple(transformed_image.shape[-2:])
        with full_float32(self.device):
            features = self.encoder(self.model.preprocess(transformed_image))
        return ImageEmbedding(features, tuple(original_image_size[:2]), input_size)

    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        """Embeds ``image`` and keeps the embedding for later ``predict`` calls."""
        self._embedding = None
        self._embedding = self.embed(image, image_format)

    def set_torch_image(
        self, transformed_image: torch.Tensor, original_image_size: tuple[int, ...]
    ) -> None:
        """Like ``set_image`` for an image already transformed (see ``embed_torch``)."""
        self._embedding = None
        self._embedding = self.embed_torch(transformed_image, original_image_size)

    def set_embedding(self, embedding: ImageEmbedding) -> None:
        """Uses a precomputed (e.g. cached) embedding for later ``predict`` calls."""
        self._embedding = self._resolve(embedding)

    def reset_image(self) -> None:
        self._embedding = None

    @property
    def is_image_set(self) -> bool:
        return self._embedding is not None

    @property
    def embedding(self) -> ImageEmbedding:
        """The embedding set by ``set_image``/``set_embedding``."""
        if self._embedding is None:
            raise ImageNotSetError(
                "An image must be set with .set_image(...) before mask prediction."
            )
        return self._embedding

    @property
    def features(self) -> torch.Tensor:
        return self.embedding.features

    @property
    def original_size(self) -> tuple[int, int]:
        return self.embedding.original_size

    @property
    def input_size(self) -> tuple[int, int]:
        return self.embedding.input_size

    def get_image_embedding(self) -> torch.Tensor:
        """The current image's 1x256x64x64 embedding."""
        return self.embedding.features

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def mask_input_size(self) -> int:
        """Side of the low-res logits the decoder returns and takes back (256 at 1024 input)."""
        return self.model.prompt_encoder.mask_input_size[0]

    # Prediction ------------------------------------------------------------------------------

    def predict(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
        *,
        embedding: ImageEmbedding | None = None,
        upscale: bool = True,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Predicts masks for prompts in pixels of the original image.

        Args:
            point_coords: Nx2 (X, Y) points. With several boxes they apply to every box.
            point_labels: N labels: 1 foreground, 0 background.
            box: One XYXY box (4 numbers or 1x4), or Bx4 boxes answered as B prompts at once.
            mask_input: Low-res logits from a previous prediction: 256x256, 1x256x256, or
                Bx1x256x256 for B boxes.
            multimask_output: Return 3 candidate masks instead of 1.
            return_logits: Return logits instead of boolean masks.
            embedding: The image to predict on; defaults to the one set with ``set_image``.
            upscale: False returns None for the masks: ``upscale_masks`` draws them from the
                low-res logits later, a few prompts at a time for many prompts on a large image.

        Returns:
            masks (CxHxW, at the original size), scores (C) and low-res logits (Cx256x256), C
            being 3 or 1; for B > 1 boxes each gains a leading B dimension.
        """
        embedding = self._resolve(embedding)
        coords, labels = validate_points(point_coords, point_labels, embedding.original_size)
        boxes = validate_boxes(box, embedding.original_size)
        num_prompts = 1 if boxes is None else boxes.shape[0]
        masks_in = validate_mask_input(mask_input, num_prompts, self.mask_input_size)

        coords_t = labels_t = boxes_t = masks_t = None
        if coords is not None:
            coords = self.transform.apply_coords(coords, embedding.original_size)
            coords_t = torch.as_tensor(coords, device=self.device)[None].expand(num_prompts, -1, -1)
            labels_t = torch.as_tensor(labels, device=self.device)[None].expand(num_prompts, -1)
        if boxes is not None:
            boxes_t = torch.as_tensor(
                self.transform.apply_boxes(boxes, embedding.original_size), device=self.device
            )
        if masks_in is not None:
            masks_t = torch.as_tensor(masks_in, device=self.device)

        masks, scores, low_res = self.predict_torch(
            coords_t,
            labels_t,
            boxes_t,
            masks_t,
            multimask_output,
            return_logits=return_logits,
            embedding=embedding,
            upscale=upscale,
        )
        arrays = tuple(_to_numpy(t) for t in (masks, scores, low_res))
        if num_prompts == 1:
            arrays = tuple(None if a is None else a[0] for a in arrays)
        return arrays  # type: ignore[return-value]

    @torch.inference_mode()
    def predict_torch(
        self,
        point_coords: torch.Tensor | None,
        point_labels: torch.Tensor | None,
        boxes: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
        *,
        embedding: ImageEmbedding | None = None,
        upscale: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Predicts masks for prompts already transformed to the encoder's input frame.

        Args:
            point_coords: BxNx2 points, transformed with ``self.transform.apply_coords_torch``.
            point_labels: BxN labels (1 foreground, 0 background, -1 padding).
            boxes: Bx4 XYXY boxes, transformed with ``self.transform.apply_boxes_torch``.
            mask_input: Bx1x256x256 low-res logits.
            multimask_output: Return 3 candidate masks instead of 1.
            return_logits: Return logits instead of boolean masks.
            embedding: The image to predict on; defaults to the one set with ``set_image``.
            upscale: False returns None for the masks (see ``predict``).

        Returns:
            masks BxCxHxW (original size), scores BxC, low-res logits BxCx256x256.
        """
        embedding = self._resolve(embedding)
        if (point_coords is None) != (point_labels is None):
            raise InvalidInputError("point_coords must be supplied with point_labels")
        points = (point_coords, point_labels) if point_coords is not None else None
        with full_float32(self.device):
            low_res_masks, iou_predictions = self._decode(
                embedding, points, boxes, mask_input, multimask_output
            )
        masks = self.upscale_masks(low_res_masks, embedding, return_logits) if upscale else None
        return masks, iou_predictions, low_res_masks  # type: ignore[return-value]

    @torch.inference_mode()
    def upscale_masks(
        self, low_res_logits: torch.Tensor, embedding: ImageEmbedding, return_logits: bool = False
    ) -> torch.Tensor:
        """BxCxSxS low-res logits -> BxCxHxW masks at the original size of ``embedding``'s
        image: bool, or logits with ``return_logits``."""
        masks = self.model.postprocess_masks(
            low_res_logits, embedding.input_size, embedding.original_size
        )
        return masks if return_logits else masks > self.model.mask_threshold

    def _decode(
        self,
        embedding: ImageEmbedding,
        points: tuple[torch.Tensor, torch.Tensor] | None,
        boxes: torch.Tensor | None,
        mask_input: torch.Tensor | None,
        multimask_output: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        sparse, dense = self.model.prompt_encoder(points=points, boxes=boxes, masks=mask_input)
        if self.decoder is not None:
            return self.decoder(
                self.image_context(embedding),
                sparse,
                dense if mask_input is not None else None,
                multimask_output,
            )
        return self.model.mask_decoder(
            image_embeddings=embedding.features,
            image_pe=self.model.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask_output,
        )

    @torch.inference_mode()
    def image_context(self, embedding: ImageEmbedding) -> ImageContext:
        """The decoder's prompt-independent tensors for ``embedding``, kept for the last image."""
        if self.decoder is None:
            raise RuntimeError("image_context needs batched_decoder=True")
        cached = self._context
        if cached is not None and cached[0] is embedding.features:
            return cached[1]
        context = self.decoder.image_context(embedding.features)
        self._context = (embedding.features, context)
        return context

    def low_res_size(self, embedding: ImageEmbedding) -> tuple[int, int]:
        """(h, w) of the decoder's low-res logits for ``embedding`` (4x its feature grid)."""
        return 4 * embedding.features.shape[-2], 4 * embedding.features.shape[-1]

    @torch.inference_mode()
    def decode_points(
        self,
        embedding: ImageEmbedding,
        points: np.ndarray,
        frame_size: tuple[int, int] | None = None,
    ) -> PointDecode:
        """One foreground point per prompt, decoded up to the mask tokens (automatic masks,
        edge maps); ``PointDecode.logits`` then draws only the candidates kept.

        Args:
            points: Nx2 XY pixels of an image of ``frame_size`` (H, W), by default the
                embedding's original size.
        """
        context = self.image_context(embedding)
        size = frame_size if frame_size is not None else embedding.original_size
        coords = torch.as_tensor(self.transform.apply_coords(points, size), device=self.device)
        labels = torch.ones((len(coords), 1), dtype=torch.int, device=self.device)
        sparse, _ = self.model.prompt_encoder(
            points=(coords[:, None, :], labels), boxes=None, masks=None
        )
        iou, mask_tokens, keys = self.decoder.run_transformer(context, sparse)
        return PointDecode(iou, self.decoder, context, mask_tokens, keys)

    def _resolve(self, embedding: ImageEmbedding | None) -> ImageEmbedding:
        if embedding is None:
            return self.embedding
        if not isinstance(embedding, ImageEmbedding):
            raise TypeError(f"embedding must be an ImageEmbedding, got {type(embedding).__name__}")
        expected = (
            1,
            self.model.prompt_encoder.embed_dim,
            *self.model.prompt_encoder.image_embedding_size,
        )
        if (
            tuple(embedding.features.shape) != expected
            or not embedding.features.is_floating_point()
        ):
            raise InvalidInputError(
                f"embedding is {tuple(embedding.features.shape)} {embedding.features.dtype}, this "
                f"model's are {expected} floats: it comes from another model or image size"
            )
        return embedding.to(self.device) if embedding.device != self.device else embedding


def _to_numpy(t: torch.Tensor | None) -> np.ndarray | None:
    if t is None:
        return None
    return (t.float() if t.is_floating_point() else t).cpu().numpy()
