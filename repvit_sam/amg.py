"""Automatic mask generation: segment-anything's ``SamAutomaticMaskGenerator``, faster.

``MaskGenerator`` takes the same parameters with the same defaults and returns the same records
(see ``generate``). It computes the same masks with less work:

* the decoder's prompt-independent work is done once per image, and attention over the few
  prompt tokens never projects the 4096 image tokens per prompt
  (``repvit_sam.modeling.batched_decoder``);
* masks are judged on their predicted IoU before anything is upsampled; only survivors are
  upscaled by the decoder and resized to the image, in chunks of ``upsample_batch`` prompts,
  so memory stays bounded;
* survivors are kept as low-res logits and drawn at full size (and RLE-encoded) only after
  non-maximum suppression.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from segment_anything.modeling import Sam
from segment_anything.utils.amg import (
    batch_iterator,
    batched_mask_to_box,
    box_xyxy_to_xywh,
    build_all_layer_point_grids,
    calculate_stability_score,
    coco_encode_rle,
    generate_crop_boxes,
    is_box_near_crop_edge,
    mask_to_rle_pytorch,
    uncrop_boxes_xyxy,
    uncrop_masks,
    uncrop_points,
)
from torchvision.ops.boxes import batched_nms, box_area

from .amg_params import AmgParams
from .backends import Encoder
from .embedding import ImageEmbedding
from .errors import InvalidInputError
from .postprocess import SeparableResize
from .predictor import Predictor, image_size
from .progress import CancelCallback, ProgressCallback, Tracker

logger = logging.getLogger(__name__)


@dataclass
class _Crop:
    """One crop's surviving masks, kept as low-res logits until the final masks are known."""

    box: list[int]
    resize: SeparableResize
    logits: list[torch.Tensor] = field(default_factory=list)  # each Mx256x256
    iou: list[torch.Tensor] = field(default_factory=list)  # each M
    stability: list[torch.Tensor] = field(default_factory=list)  # each M
    boxes: list[torch.Tensor] = field(default_factory=list)  # each Mx4 XYXY in the crop
    points: list[torch.Tensor] = field(default_factory=list)  # each Mx2 XY in the crop


class MaskGenerator:
    """Segments everything in an image from a grid of point prompts.

    Args:
        model: A segment_anything ``Sam`` (e.g. from ``build_repvit_sam``).
        **params: ``SamAutomaticMaskGenerator``'s parameters, same names and defaults:
            points_per_side (32), points_per_batch (64), pred_iou_thresh (0.88),
            stability_score_thresh (0.95), stability_score_offset (1.0), box_nms_thresh (0.7),
            crop_n_layers (0), crop_nms_thresh (0.7), crop_overlap_ratio (512/1500),
            crop_n_points_downscale_factor (1), point_grids (None), min_mask_region_area (0,
            uses scipy instead of OpenCV), output_mode ("binary_mask", "uncompressed_rle" or
            "coco_rle"); and upsample_batch (16), how many prompts' masks are upscaled at once.
        encoder: The image encoder backend (``repvit_sam.backends.make_encoder``) for the
            image and its crops; the model's own by default. Pass the one that made an
            ``embedding`` given to ``generate``, so that crops are encoded alike.

    Raises:
        InvalidInputError: A parameter is out of range; the message names it.
    """

    def __init__(self, model: Sam, *, encoder: Encoder | None = None, **params: Any) -> None:
        self.params = AmgParams(**params)
        self.model = model
        self.predictor = Predictor(model, encoder=encoder)
        self.point_grids = self.params.point_grids or build_all_layer_point_grids(
            self.params.points_per_side,
            self.params.crop_n_layers,
            self.params.crop_n_points_downscale_factor,
        )

    def __getattr__(self, name: str) -> Any:
        # SamAutomaticMaskGenerator exposes its parameters as attributes.
        params = self.__dict__.get("params")
        if params is not None and name in AmgParams.__dataclass_fields__:
            return getattr(params, name)
        raise AttributeError(name)

    @torch.inference_mode()
    def generate(
        self,
        image: np.ndarray | None = None,
        *,
        embedding: ImageEmbedding | None = None,
        progress: ProgressCallback | None = None,
        deadline: float | None = None,
        cancel: CancelCallback | None = None,
    ) -> list[dict[str, Any]]:
        """Generates masks for the whole image.

        Args:
            image: HxWx3 uint8 RGB image; may be left out when ``embedding`` is given and
                ``crop_n_layers`` is 0 (crops are encoded from their pixels).
            embedding: The image's embedding if already computed (e.g. cached by a service);
                used for the full-image crop only.
            progress: ``progress(done, total)`` after each embedded crop and decoded batch.
            deadline: ``time.monotonic()`` value after which ``DeadlineExceededError`` is raised.
            cancel: Callable returning True to stop with ``CancelledError``.

        Returns:
            One record per mask, as SamAutomaticMaskGenerator's: ``segmentation`` (HxW bool
            array, or an RLE dict for the RLE output modes), ``area`` (pixels), ``bbox`` (XYWH
            pixels), ``predicted_iou``, ``point_coords`` ([[X, Y]] pixels), ``stability_score``
            and ``crop_box`` (XYWH pixels).
        """
        params = self.params
        orig_size = image_size(image, embedding)
        if image is None and params.crop_n_layers:
            raise InvalidInputError(
                "crop_n_layers > 0 needs the image's pixels, not only its embedding: crops are "
                "encoded from their pixels"
            )
        crop_boxes, layer_idxs = generate_crop_boxes(
            orig_size, params.crop_n_layers, params.crop_overlap_ratio
        )
        # On an image a few pixels wide some crop layers have crops 0 pixels wide; skip those.
        crop_boxes, layer_idxs = _nonempty_crops(crop_boxes, layer_idxs)
        batches = [
            -(-len(self.point_grids[layer]) // params.points_per_batch) for layer in layer_idxs
        ]
        tracker = Tracker(len(crop_boxes) + sum(batches), progress, deadline, cancel)

        crops = [
            self._process_crop(image, box, layer, orig_size, embedding, tracker)
            for box, layer in zip(crop_boxes, layer_idxs, strict=True)
        ]
        iou, stability, boxes, points, crop_index, mask_index = self._merge(crops)
        if params.min_mask_region_area == 0 and params.output_mode != "binary_mask":
            # RLE out: encode each chunk as it is drawn, never holding every full-size mask.
            encoded = self._draw_encoded(crops, crop_index, mask_index, orig_size, tracker)
            return self._records(encoded, iou, stability, boxes, points, crop_index, crops)
        masks = self._draw(crops, crop_index, mask_index, orig_size, tracker)
        if params.min_mask_region_area > 0:
            keep, masks, boxes = _remove_small_regions(
                masks,
                boxes,
                params.min_mask_region_area,
                max(params.box_nms_thresh, params.crop_nms_thresh),
            )
            iou, stability, points, crop_index = (
                iou[keep],
                stability[keep],
                points[keep],
                crop_index[keep],
            )
        encoded = self._encode(masks)
        return self._records(encoded, iou, stability, boxes, points, crop_index, crops)

    # Stages ----------------------------------------------------------------------------------

    def _process_crop(
        self,
        image: np.ndarray | None,
        crop_box: list[int],
        layer: int,
        orig_size: tuple[int, int],
        embedding: ImageEmbedding | None,
        tracker: Tracker,
    ) -> _Crop:
        params = self.params
        x0, y0, x1, y1 = crop_box
        crop_size = (y1 - y0, x1 - x0)
        if embedding is not None and tuple(crop_size) == tuple(embedding.original_size):
            crop_embedding = embedding.to(self.model.device)
        else:
            crop_embedding = self.predictor.embed(image[y0:y1, x0:x1, :])
        tracker.step()

        low_res = self.predictor.low_res_size(crop_embedding)
        resize = SeparableResize(
            self.model, low_res, crop_embedding.input_size, crop_size, self.model.device
        )
        crop = _Crop(crop_box, resize)
        points_for_image = self.point_grids[layer] * np.array(crop_size)[None, ::-1]
        for (points,) in batch_iterator(params.points_per_batch, points_for_image):
            self._process_batch(crop_embedding, crop, points, crop_size, orig_size, tracker)
            tracker.step()

        iou, boxes = torch.cat(crop.iou), torch.cat(crop.boxes)
        keep = batched_nms(
            boxes.float(), iou, torch.zeros(len(boxes)), iou_threshold=params.box_nms_thresh
        )
        for name in ("logits", "iou", "stability", "boxes", "points"):
            setattr(crop, name, torch.cat(getattr(crop, name))[keep])
        crop.boxes = uncrop_boxes_xyxy(crop.boxes, crop_box)
        crop.points = uncrop_points(crop.points, crop_box)
        return crop

    def _process_batch(
        self,
        embedding: ImageEmbedding,
        crop: _Crop,
        points: np.ndarray,
        crop_size: tuple[int, int],
        orig_size: tuple[int, int],
        tracker: Tracker,
    ) -> None:
        params = self.params
        decoded = self.predictor.decode_points(embedding, points, crop_size)
        iou_all = decoded.iou

        # Decide on predicted IoU before drawing any mask (token 0 is the single-mask output).
        chosen = torch.zeros_like(iou_all, dtype=torch.bool)
        chosen[:, 1:] = (
            iou_all[:, 1:] > params.pred_iou_thresh if params.pred_iou_thresh > 0 else True
        )
        prompts = chosen.any(dim=1).nonzero()[:, 0]
        threshold = self.model.mask_threshold
        for (chunk,) in batch_iterator(params.upsample_batch, prompts):
            tracker.check()  # also where a caller lets other work in between the chunks
            index = chosen[chunk]
            logits = decoded.logits(index, prompts=chunk)
            iou = iou_all[chunk][index]
            point_index = chunk[:, None].expand_as(index)[index].cpu()
            full = crop.resize(logits)
            stability = calculate_stability_score(full, threshold, params.stability_score_offset)
            keep = (
                stability >= params.stability_score_thresh
                if params.stability_score_thresh > 0
                else torch.ones_like(stability, dtype=torch.bool)
            )
            boxes = batched_mask_to_box(full[keep] > threshold)
            keep_box = ~is_box_near_crop_edge(boxes, crop.box, [0, 0, orig_size[1], orig_size[0]])
            keep = keep.nonzero()[:, 0][keep_box]
            crop.logits.append(logits[keep])
            crop.iou.append(iou[keep].cpu())
            crop.stability.append(stability[keep].cpu())
            crop.boxes.append(boxes[keep_box].cpu())
            crop.points.append(torch.as_tensor(points)[point_index[keep.cpu()]])
        if not prompts.numel():
            crop.logits.append(torch.empty((0, *decoded.low_res_size), device=iou_all.device))
            crop.iou.append(torch.empty(0))
            crop.stability.append(torch.empty(0))
            crop.boxes.append(torch.empty((0, 4), dtype=torch.int64))
            crop.points.append(torch.empty((0, 2), dtype=torch.float64))

    def _merge(self, crops: list[_Crop]) -> tuple[torch.Tensor, ...]:
        """Concatenates crops and removes duplicates between them (smaller crops win)."""
        iou = torch.cat([c.iou for c in crops])
        stability = torch.cat([c.stability for c in crops])
        boxes = torch.cat([c.boxes for c in crops])
        points = torch.cat([c.points for c in crops])
        crop_index = torch.cat([torch.full((len(c.iou),), i) for i, c in enumerate(crops)])
        mask_index = torch.cat([torch.arange(len(c.iou)) for c in crops])
        if len(crops) > 1:
            crop_boxes = torch.tensor([crops[i].box for i in crop_index.tolist()]).reshape(-1, 4)
            keep = batched_nms(
                boxes.float(),
                1 / box_area(crop_boxes),
                torch.zeros(len(boxes)),
                iou_threshold=self.params.crop_nms_thresh,
            )
            iou, stability, boxes, points = iou[keep], stability[keep], boxes[keep], points[keep]
            crop_index, mask_index = crop_index[keep], mask_index[keep]
        return iou, stability, boxes, points, crop_index, mask_index

    def _drawn_chunks(
        self,
        crops: list[_Crop],
        crop_index: torch.Tensor,
        mask_index: torch.Tensor,
        orig_size: tuple[int, int],
        tracker: Tracker,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(rows, their MxHxW bool masks at the original size), ``upsample_batch`` at a time."""
        threshold = self.model.mask_threshold
        for c, crop in enumerate(crops):
            rows = (crop_index == c).nonzero()[:, 0]
            for (chunk,) in batch_iterator(self.params.upsample_batch, rows):
                tracker.check()
                drawn = crop.resize(crop.logits[mask_index[chunk]]) > threshold
                yield chunk, uncrop_masks(drawn, crop.box, *orig_size).cpu()

    def _draw(
        self,
        crops: list[_Crop],
        crop_index: torch.Tensor,
        mask_index: torch.Tensor,
        orig_size: tuple[int, int],
        tracker: Tracker,
    ) -> torch.Tensor:
        """KxHxW bool masks at the original size for the kept masks."""
        masks = torch.zeros((len(crop_index), *orig_size), dtype=torch.bool)
        chunks = self._drawn_chunks(crops, crop_index, mask_index, orig_size, tracker)
        for chunk, drawn in chunks:
            masks[chunk] = drawn
        return masks

    def _draw_encoded(
        self,
        crops: list[_Crop],
        crop_index: torch.Tensor,
        mask_index: torch.Tensor,
        orig_size: tuple[int, int],
        tracker: Tracker,
    ) -> list[tuple[Any, int]]:
        """(segmentation, area) of the kept masks, encoded chunk by chunk as they are drawn."""
        encoded: list[tuple[Any, int]] = [(None, 0)] * len(crop_index)
        chunks = self._drawn_chunks(crops, crop_index, mask_index, orig_size, tracker)
        for chunk, drawn in chunks:
            for row, item in zip(chunk.tolist(), self._encode(drawn), strict=True):
                encoded[row] = item
        return encoded

    def _encode(self, masks: torch.Tensor) -> list[tuple[Any, int]]:
        """(segmentation in ``output_mode``, area) of each of KxHxW bool masks."""
        mode = self.params.output_mode
        areas = masks.flatten(1).sum(dim=1).tolist()
        if mode == "binary_mask":
            return [(mask.numpy(), area) for mask, area in zip(masks, areas, strict=True)]
        rles = mask_to_rle_pytorch(masks)
        if mode == "coco_rle":
            rles = [coco_encode_rle(rle) for rle in rles]
        return list(zip(rles, areas, strict=True))

    def _records(
        self,
        encoded: list[tuple[Any, int]],
        iou: torch.Tensor,
        stability: torch.Tensor,
        boxes: torch.Tensor,
        points: torch.Tensor,
        crop_index: torch.Tensor,
        crops: list[_Crop],
    ) -> list[dict[str, Any]]:
        records = []
        for i, (segmentation, area) in enumerate(encoded):
            crop_box = torch.as_tensor(crops[int(crop_index[i])].box)
            records.append(
                {
                    "segmentation": segmentation,
                    "area": int(area),
                    "bbox": box_xyxy_to_xywh(boxes[i].numpy()).tolist(),
                    "predicted_iou": iou[i].item(),
                    "point_coords": [points[i].numpy().tolist()],
                    "stability_score": stability[i].item(),
                    "crop_box": box_xyxy_to_xywh(crop_box.numpy()).tolist(),
                }
            )
        return records


def _remove_small_regions(
    masks: torch.Tensor, boxes: torch.Tensor, min_area: int, nms_thresh: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """SamAutomaticMaskGenerator.postprocess_small_regions on KxHxW masks, with scipy.

    Returns:
        The kept indices (in NMS order), their masks and XYXY boxes.
    """
    from .regions import remove_small_regions

    if not len(masks):
        return torch.zeros(0, dtype=torch.int64), masks, boxes
    new_masks, scores = [], []
    for mask in masks.numpy():
        mask, holes_changed = remove_small_regions(mask, min_area, mode="holes")
        mask, islands_changed = remove_small_regions(mask, min_area, mode="islands")
        new_masks.append(torch.as_tensor(mask))
        scores.append(float(not (holes_changed or islands_changed)))
    stacked = torch.stack(new_masks)
    new_boxes = batched_mask_to_box(stacked)
    keep = batched_nms(
        new_boxes.float(), torch.as_tensor(scores), torch.zeros(len(new_boxes)), nms_thresh
    )
    # Boxes of unchanged masks stay as they were; changed masks get their new box.
    changed = torch.as_tensor(scores)[keep] == 0.0
    out_boxes = boxes[keep].clone()
    out_boxes[changed] = new_boxes[keep][changed].to(out_boxes.dtype)
    return keep, stacked[keep], out_boxes


def _nonempty_crops(boxes: list[list[int]], layers: list[int]) -> tuple[list[list[int]], list[int]]:
    kept = [
        (box, layer)
        for box, layer in zip(boxes, layers, strict=True)
        if box[2] > box[0] and box[3] > box[1]
    ]
    return [box for box, _ in kept], [layer for _, layer in kept]
