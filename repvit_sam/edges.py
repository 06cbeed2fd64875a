"""Zero-shot edge detection with SAM (Kirillov et al. 2023, section 7.2 and appendix D.2).

A 16x16 grid of foreground points gives 768 masks (3 per point); box NMS (0.7) removes
duplicates; each kept mask's unthresholded probability map (sigmoid of its logits at the image's
size) is Sobel-filtered, its response is kept only on the mask's boundary, the pixel-wise
maximum over masks is normalised linearly to [0, 1], and edges are thinned by non-maximum
suppression across the edge direction.

``edge_map_from_logits`` is that last stage on its own (logits in, thinned edge map out), so it
can be tested with synthetic shapes; ``EdgeDetector`` runs the whole protocol on an image.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from segment_anything.modeling import Sam
from segment_anything.utils.amg import batch_iterator, batched_mask_to_box, build_point_grid
from torchvision.ops.boxes import batched_nms

from .backends import Encoder
from .edge_params import EdgeParams
from .embedding import ImageEmbedding
from .errors import InvalidInputError
from .parameters import is_int
from .postprocess import SeparableResize
from .predictor import Predictor, image_size
from .progress import CancelCallback, ProgressCallback, Tracker

_SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


class EdgeAccumulator:
    """Pixel-wise maximum of boundary-restricted Sobel responses over chunks of masks.

    Args:
        size: (H, W) of the logits that will be added.
        mask_threshold: Logit above which a pixel is inside the mask (SAM's 0.0).
        boundary_width: Half-width in pixels of the band around the mask's boundary where
            responses are kept (1: the pixels on either side of the boundary).
    """

    def __init__(
        self, size: tuple[int, int], mask_threshold: float = 0.0, boundary_width: int = 1
    ) -> None:
        if not is_int(boundary_width) or boundary_width < 1:
            raise InvalidInputError(
                f"boundary_width must be a positive integer, got {boundary_width!r}"
            )
        self.size = size
        self.mask_threshold = mask_threshold
        self.boundary_width = boundary_width
        self.magnitude = torch.zeros(size)
        self.direction = torch.zeros((2, *size))  # gradient (gx, gy) of the winning mask
        self.count = 0

    @torch.inference_mode()
    def add(self, logits: torch.Tensor) -> None:
        """Adds NxHxW mask logits (any device; N may be 0)."""
        if logits.dim() != 3 or tuple(logits.shape[1:]) != tuple(self.size):
            raise InvalidInputError(
                f"logits must be Nx{self.size[0]}x{self.size[1]}, got {tuple(logits.shape)}"
            )
        if not len(logits):
            return
        logits = logits.float()
        prob = torch.sigmoid(logits)[:, None]
        padded = F.pad(prob, (1, 1, 1, 1), mode="replicate")
        kernel = _SOBEL_X.to(logits.device)
        gx = F.conv2d(padded, kernel[None, None])[:, 0]
        gy = F.conv2d(padded, kernel.T[None, None])[:, 0]
        magnitude = torch.hypot(gx, gy) * self._boundary(logits > self.mask_threshold)
        best, index = magnitude.max(dim=0)
        rows = torch.arange(self.size[0])[:, None]
        cols = torch.arange(self.size[1])[None, :]
        direction = torch.stack([gx[index, rows, cols], gy[index, rows, cols]]).cpu()
        best = best.cpu()
        better = best > self.magnitude
        self.magnitude = torch.where(better, best, self.magnitude)
        self.direction = torch.where(better[None], direction, self.direction)
        self.count += len(logits)

    def _boundary(self, masks: torch.Tensor) -> torch.Tensor:
        """NxHxW float: 1 within ``boundary_width`` of a pixel where the mask changes."""
        k = 2 * self.boundary_width + 1
        m = masks[:, None].float()
        dilated = F.max_pool2d(m, k, stride=1, padding=self.boundary_width)
        eroded = -F.max_pool2d(-m, k, stride=1, padding=self.boundary_width)
        # A mask filling the image has no boundary at the image's border.
        return (dilated - eroded)[:, 0]

    def result(self, thin: bool = True) -> np.ndarray:
        """HxW float32 edge map, normalised to [0, 1] (all zeros if nothing responded)."""
        edges = self.magnitude
        peak = float(edges.max())
        if peak <= 0:
            return np.zeros(self.size, dtype=np.float32)
        edges = (edges - edges.min()) / (peak - float(edges.min()))
        if thin:
            edges = thin_edges(edges, self.direction)
        return edges.numpy().astype(np.float32)


def thin_edges(edges: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """Non-maximum suppression of an HxW edge map across the edges.

    A pixel survives if it is at least as strong as the map one pixel ahead along its gradient
    direction (2xHxW, (gx, gy)) and stronger than one pixel behind, both read by bilinear
    interpolation; a ridge two pixels wide thus keeps exactly one.
    """
    h, w = edges.shape
    norm = torch.hypot(direction[0], direction[1]).clamp_min(1e-12)
    dx, dy = direction[0] / norm, direction[1] / norm
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij"
    )

    def sample(sign: float) -> torch.Tensor:
        gx = (xs + sign * dx) / max(w - 1, 1) * 2 - 1
        gy = (ys + sign * dy) / max(h - 1, 1) * 2 - 1
        grid = torch.stack([gx, gy], dim=-1)[None]
        return F.grid_sample(edges[None, None], grid, align_corners=True, padding_mode="zeros")[
            0, 0
        ]

    keep = (edges >= sample(1.0)) & (edges > sample(-1.0))
    return edges * keep


def edge_map_from_logits(
    logits: torch.Tensor | np.ndarray | Iterable[torch.Tensor],
    *,
    mask_threshold: float = 0.0,
    boundary_width: int = 1,
    thin: bool = True,
) -> np.ndarray:
    """The edge stage of the protocol: mask logits to a thinned edge map.

    Args:
        logits: NxHxW mask logits at the image's size, or an iterable of such chunks.
        mask_threshold: Logit above which a pixel belongs to the mask.
        boundary_width: Half-width of the band around each mask's boundary where its Sobel
            response counts.
        thin: Apply non-maximum suppression (off: the raw normalised maximum).

    Returns:
        HxW float32 edge strength in [0, 1].
    """
    if isinstance(logits, np.ndarray):
        logits = torch.from_numpy(logits)
    chunks = [logits] if isinstance(logits, torch.Tensor) else logits
    accumulator = None
    for chunk in chunks:
        if accumulator is None:
            if chunk.dim() != 3:
                raise InvalidInputError(f"logits must be NxHxW, got {tuple(chunk.shape)}")
            accumulator = EdgeAccumulator(tuple(chunk.shape[1:]), mask_threshold, boundary_width)
        accumulator.add(chunk)
    if accumulator is None:
        raise InvalidInputError("logits is empty: give at least one NxHxW chunk")
    return accumulator.result(thin=thin)


@dataclass(frozen=True)
class EdgeMap:
    """An edge map and what produced it.

    Attributes:
        edges: HxW float32 in [0, 1] at the original image size.
        num_masks: Masks predicted (3 per grid point: 768 for a 16x16 grid).
        num_kept: Masks left after NMS, whose responses form the map.
    """

    edges: np.ndarray
    num_masks: int
    num_kept: int

    def to_uint8(self) -> np.ndarray:
        """HxW uint8 (0-255), e.g. for a PNG."""
        return np.round(np.clip(self.edges, 0, 1) * 255).astype(np.uint8)


class EdgeDetector:
    """SAM's zero-shot edge detection protocol on one image at a time.

    Args:
        model: A segment_anything ``Sam``.
        points_per_side: Grid of foreground point prompts (16 in the paper).
        points_per_batch: Prompts decoded together.
        nms_thresh: Box IoU above which duplicate masks are removed (0.7 in the paper).
        boundary_width: See ``EdgeAccumulator``.
        chunk_size: Masks resized to the image's size at once (memory bound).
        encoder: The image encoder backend (``repvit_sam.backends.make_encoder``) for images
            given without an embedding; the model's own by default.
    """

    def __init__(
        self,
        model: Sam,
        *,
        encoder: Encoder | None = None,
        points_per_side: int = EdgeParams.points_per_side,
        points_per_batch: int = EdgeParams.points_per_batch,
        nms_thresh: float = EdgeParams.nms_thresh,
        boundary_width: int = EdgeParams.boundary_width,
        chunk_size: int = 32,
    ) -> None:
        self.params = EdgeParams(points_per_side, points_per_batch, nms_thresh, boundary_width)
        if not is_int(chunk_size) or chunk_size < 1:
            raise InvalidInputError(f"chunk_size must be a positive integer, got {chunk_size!r}")
        self.model = model
        self.predictor = Predictor(model, encoder=encoder)
        self.points_per_side = points_per_side
        self.points_per_batch = points_per_batch
        self.nms_thresh = float(nms_thresh)
        self.boundary_width = boundary_width
        self.chunk_size = chunk_size

    @torch.inference_mode()
    def detect(
        self,
        image: np.ndarray | None = None,
        *,
        embedding: ImageEmbedding | None = None,
        progress: ProgressCallback | None = None,
        deadline: float | None = None,
        cancel: CancelCallback | None = None,
    ) -> EdgeMap:
        """Computes the edge map of an HxWx3 uint8 RGB image (or of the image ``embedding`` was
        computed from, when only it is given).

        ``embedding``, ``progress``, ``deadline`` and ``cancel`` work as in
        ``MaskGenerator.generate``.
        """
        size = image_size(image, embedding)
        points = build_point_grid(self.points_per_side) * np.array(size)[None, ::-1]
        batches = -(-len(points) // self.points_per_batch)
        tracker = Tracker(2 + batches, progress, deadline, cancel)
        if embedding is None or tuple(embedding.original_size) != tuple(size):
            embedding = self.predictor.embed(image)
        embedding = embedding.to(self.model.device)
        tracker.step()

        low_res = self.predictor.low_res_size(embedding)
        resize = SeparableResize(self.model, low_res, embedding.input_size, size, self.model.device)
        logits, scores, boxes = [], [], []
        for (batch,) in batch_iterator(self.points_per_batch, points):
            decoded = self.predictor.decode_points(embedding, batch, size)
            chosen = torch.zeros_like(decoded.iou, dtype=torch.bool)
            chosen[:, 1:] = True
            low = decoded.logits(chosen)
            for chunk in low.split(self.chunk_size):
                boxes.append(batched_mask_to_box(resize(chunk) > self.model.mask_threshold).cpu())
            logits.append(low)
            scores.append(decoded.iou[:, 1:].flatten().cpu())
            tracker.step()

        all_logits, all_boxes = torch.cat(logits), torch.cat(boxes)
        keep = batched_nms(
            all_boxes.float(), torch.cat(scores), torch.zeros(len(all_boxes)), self.nms_thresh
        )
        accumulator = EdgeAccumulator(size, self.model.mask_threshold, self.boundary_width)
        for chunk in keep.split(self.chunk_size):
            accumulator.add(resize(all_logits[chunk.to(all_logits.device)]))
        tracker.step()
        return EdgeMap(accumulator.result(), num_masks=len(all_logits), num_kept=len(keep))
