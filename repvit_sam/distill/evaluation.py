"""Held-out evaluation of a distilled student against its teacher.

Per image: the embedding MSE between student and teacher, and the mask IoU of student vs
teacher for box prompts. The boxes are taken from the teacher's own masks: a regular grid of
single-point prompts is decoded by the teacher, the best of its three masks per point is kept if
its predicted IoU reaches ``min_score``, and that mask's bounding box becomes a prompt for both.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from segment_anything.modeling import Sam
from segment_anything.utils.transforms import ResizeLongestSide
from tqdm import tqdm

from ..assembly import identify_variant
from ..build import build_repvit_sam
from ..checkpoint import CheckpointSource, read_state_dict
from ..errors import CheckpointError
from ..image_io import load_image
from .data import check_images, list_images
from .distributed import resolve_device
from .teacher import get_teacher, load_teacher_sam, preprocess

logger = logging.getLogger(__name__)


@dataclass
class ImageScore:
    """One image's scores: embedding MSE, number of box prompts and their mean mask IoU."""

    name: str
    embedding_mse: float
    boxes: int
    mask_miou: float | None


@dataclass
class EvalReport:
    """Scores of every image and their means (mIoU over all box prompts)."""

    images: list[ImageScore] = field(default_factory=list)

    @property
    def embedding_mse(self) -> float:
        return sum(s.embedding_mse for s in self.images) / max(1, len(self.images))

    @property
    def boxes(self) -> int:
        return sum(s.boxes for s in self.images)

    @property
    def mask_miou(self) -> float | None:
        scored = [s for s in self.images if s.boxes]
        if not scored:
            return None
        return sum(s.mask_miou * s.boxes for s in scored) / self.boxes

    def to_dict(self) -> dict:
        return {
            "images": len(self.images),
            "boxes": self.boxes,
            "embedding_mse": self.embedding_mse,
            "mask_miou": self.mask_miou,
            "per_image": [vars(s) for s in self.images],
        }

    def table(self, per_image: bool = True) -> str:
        """A Markdown table: one row per image (if asked) and the overall row."""

        def row(name: str, mse: float, boxes: int, miou: float | None) -> str:
            shown = "n/a" if miou is None else f"{miou:.4f}"
            return f"| {name} | {mse:.6f} | {boxes} | {shown} |"

        lines = ["| image | embedding MSE | box prompts | mask mIoU |", "|---|---:|---:|---:|"]
        if per_image:
            lines += [row(s.name, s.embedding_mse, s.boxes, s.mask_miou) for s in self.images]
        lines.append(
            row(f"**all ({len(self.images)})**", self.embedding_mse, self.boxes, self.mask_miou)
        )
        return "\n".join(lines)


def decode(
    sam: Sam,
    embedding: torch.Tensor,
    original_size: tuple[int, int],
    *,
    points: torch.Tensor | None = None,
    boxes: torch.Tensor | None = None,
    multimask: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decodes N prompts on one image embedding.

    Args:
        sam: Model whose prompt encoder and mask decoder to use.
        embedding: 1x256xExE image embedding.
        original_size: (H, W) of the image.
        points: Nx2 foreground points, XY pixels of the original image (one per prompt).
        boxes: Nx4 XYXY boxes in pixels of the original image.
        multimask: Three masks per prompt instead of one.

    Returns:
        NxKxHxW bool masks at the original size and NxK predicted IoUs (K = 3 or 1).
    """
    transform = ResizeLongestSide(sam.image_encoder.img_size)
    point_input = None
    if points is not None:
        coords = transform.apply_coords_torch(points, original_size)[:, None, :]
        point_input = (coords, torch.ones(coords.shape[:2], dtype=torch.int, device=coords.device))
    box_input = transform.apply_boxes_torch(boxes, original_size) if boxes is not None else None
    sparse, dense = sam.prompt_encoder(points=point_input, boxes=box_input, masks=None)
    low_res, scores = sam.mask_decoder(
        image_embeddings=embedding,
        image_pe=sam.prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=multimask,
    )
    input_size = transform.get_preprocess_shape(*original_size, sam.image_encoder.img_size)
    masks = sam.postprocess_masks(low_res, input_size, original_size) > sam.mask_threshold
    return masks, scores


def boxes_from_masks(masks: torch.Tensor) -> torch.Tensor:
    """XYXY boxes (pixels, inclusive-exclusive) of NxHxW non-empty bool masks: Nx4 float."""
    rows, cols = masks.any(dim=2), masks.any(dim=1)
    h, w = masks.shape[-2:]
    y_idx = torch.arange(h, device=masks.device)
    x_idx = torch.arange(w, device=masks.device)
    y0 = torch.where(rows, y_idx, h).amin(dim=1)
    y1 = torch.where(rows, y_idx, -1).amax(dim=1) + 1
    x0 = torch.where(cols, x_idx, w).amin(dim=1)
    x1 = torch.where(cols, x_idx, -1).amax(dim=1) + 1
    return torch.stack([x0, y0, x1, y1], dim=1).float()


def mask_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of NxHxW bool masks pairwise by index: N floats (1 where both are empty)."""
    inter = (a & b).flatten(1).sum(1).float()
    union = (a | b).flatten(1).sum(1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


def _grid(points_per_side: int, original_size: tuple[int, int]) -> torch.Tensor:
    h, w = original_size
    steps = (torch.arange(points_per_side) + 0.5) / points_per_side
    ys, xs = torch.meshgrid(steps * h, steps * w, indexing="ij")
    return torch.stack([xs.flatten(), ys.flatten()], dim=1)


@torch.inference_mode()
def score_image(
    teacher: Sam,
    student: Sam,
    image_input: torch.Tensor,
    original_size: tuple[int, int],
    *,
    points_per_side: int,
    min_score: float,
    chunk: int = 16,
) -> tuple[float, int, float | None]:
    """Embedding MSE, number of boxes and mIoU for one preprocessed image (3xSxS)."""
    batch = image_input[None]
    teacher_emb, student_emb = teacher.image_encoder(batch), student.image_encoder(batch)
    mse = float(F.mse_loss(student_emb.float(), teacher_emb.float()))
    ious: list[torch.Tensor] = []
    for points in _grid(points_per_side, original_size).to(batch.device).split(chunk):
        masks, scores = decode(teacher, teacher_emb, original_size, points=points, multimask=True)
        best = scores.argmax(dim=1)
        picked = masks[torch.arange(len(points)), best]
        keep = (scores.gather(1, best[:, None])[:, 0] >= min_score) & picked.flatten(1).any(1)
        if not keep.any():
            continue
        boxes = boxes_from_masks(picked[keep])
        teacher_masks, _ = decode(teacher, teacher_emb, original_size, boxes=boxes)
        student_masks, _ = decode(student, student_emb, original_size, boxes=boxes)
        ious.append(mask_iou(teacher_masks[:, 0], student_masks[:, 0]))
    if not ious:
        return mse, 0, None
    all_ious = torch.cat(ious)
    return mse, len(all_ious), float(all_ious.mean())


def evaluate(
    images: str | os.PathLike[str],
    teacher: str,
    teacher_checkpoint: CheckpointSource,
    student_checkpoint: CheckpointSource,
    *,
    variant: str | None = None,
    points_per_side: int = 4,
    min_score: float = 0.8,
    device: str = "auto",
    max_images: int | None = None,
    progress: bool = True,
) -> EvalReport:
    """Scores an exported student against its teacher on a folder of held-out images.

    Args:
        images: Folder of held-out images (not used for training).
        teacher: Teacher name (``vit_h``...).
        teacher_checkpoint: The teacher's SAM checkpoint.
        student_checkpoint: The exported RepViT-SAM checkpoint (``distill export``).
        variant: The student's variant, recognised from the weights when None.
        points_per_side: Grid of teacher point prompts used to find objects.
        min_score: Teacher predicted IoU a mask needs for its box to be used.
        device: ``auto``, ``cpu``, ``cuda``...
        max_images: Evaluate only the first images (sorted by path).
        progress: Show a progress bar.

    Raises:
        InvalidInputError: Empty folder, unknown teacher; InvalidImageError: unreadable images;
        CheckpointError: checkpoints that do not fit ``teacher`` or a RepViT-SAM variant.
    """
    config = get_teacher(teacher)
    names = list_images(images)[:max_images]
    check_images(images, names)
    resolved = resolve_device(device)
    teacher_sam = load_teacher_sam(config, teacher_checkpoint, resolved)
    student_sd = read_state_dict(student_checkpoint)
    if variant is None:
        found = identify_variant(student_sd)
        if found is None:
            raise CheckpointError(
                f"{student_checkpoint} is not a RepViT-SAM checkpoint of a registered variant"
            )
        variant = found[0]
    image_size = None if config.img_size == 1024 else config.img_size
    student_sam = build_repvit_sam(
        student_sd, variant=variant, image_size=image_size, device=resolved
    )
    report = EvalReport()
    for name in tqdm(names, desc="evaluate", unit="img", disable=not progress):
        image = load_image(Path(images) / name)
        image_input, _ = preprocess(image, config.img_size)
        mse, boxes, miou = score_image(
            teacher_sam,
            student_sam,
            image_input.to(resolved),
            image.shape[:2],
            points_per_side=points_per_side,
            min_score=min_score,
        )
        report.images.append(ImageScore(name, mse, boxes, miou))
        logger.debug("%s: mse %.6f, %d boxes, miou %s", name, mse, boxes, miou)
    return report
