"""Automatic mask generation: repvit_sam.MaskGenerator vs segment-anything's generator.

Both run on the same model (RepViT-SAM m2_3 at 1024, deterministic weights from
../shared/reference/fill_weights.py when present, else random) and the same image, in one
process. The image embedding is computed once and given to both, so the times are of mask
generation alone. Each row also checks that the outputs agree (count, mask IoU, scores).

    python benchmarks/amg.py [--points 16 32] [--image coffee] [--repeats 1]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import skimage.data
import torch
from segment_anything import SamAutomaticMaskGenerator

from repvit_sam import MaskGenerator, Predictor, build_repvit_sam

SETTINGS = {
    # Random weights predict low IoU, so at the defaults no mask survives the IoU test and ours
    # draws nothing; with the filters off every mask is drawn (ours' worst case).
    "defaults": {},
    "no filters": {"pred_iou_thresh": 0.0, "stability_score_thresh": 0.0},
}


def build_model(variant: str) -> torch.nn.Module:
    model = build_repvit_sam(variant=variant, fuse=False)
    reference = Path(__file__).resolve().parents[2] / "shared" / "reference"
    if (reference / "fill_weights.py").exists():
        sys.path.insert(0, str(reference))
        from fill_weights import fill_

        state = model.state_dict()
        fill_(state, seed=0)
        model.load_state_dict(state)
    return model


def sam_generator(model: torch.nn.Module, embedding, params: dict) -> SamAutomaticMaskGenerator:
    """segment-anything's generator, given ``embedding`` instead of encoding the image."""
    generator = SamAutomaticMaskGenerator(model, **params)

    def set_image(_image: np.ndarray) -> None:
        predictor = generator.predictor
        predictor.reset_image()
        predictor.features = embedding.features
        predictor.original_size = embedding.original_size
        predictor.input_size = embedding.input_size
        predictor.is_image_set = True

    generator.predictor.set_image = set_image
    return generator


def agreement(ours: list[dict], theirs: list[dict]) -> str:
    if len(ours) != len(theirs):
        return f"count {len(ours)} vs {len(theirs)}"
    worst_iou, worst_score = 1.0, 0.0
    for a, b in zip(ours, theirs, strict=True):
        inter = np.logical_and(a["segmentation"], b["segmentation"]).sum()
        union = np.logical_or(a["segmentation"], b["segmentation"]).sum()
        worst_iou = min(worst_iou, inter / union if union else 1.0)
        worst_score = max(
            worst_score,
            abs(a["predicted_iou"] - b["predicted_iou"]),
            abs(a["stability_score"] - b["stability_score"]),
        )
    return f"same {len(ours)} masks, min IoU {worst_iou:.4f}, max score diff {worst_score:.1e}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, nargs="+", default=[16, 32])
    parser.add_argument("--image", default="coffee", help="a scikit-image photo")
    parser.add_argument("--variant", default="m2_3")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    args = parser.parse_args()

    torch.manual_seed(0)
    model = build_model(args.variant)
    image = getattr(skimage.data, args.image)()
    start = time.perf_counter()
    embedding = Predictor(model).embed(image)
    print(
        f"image {args.image} {image.shape[1]}x{image.shape[0]}, {args.variant} at 1024, "
        f"{torch.get_num_threads()} threads; embedding {time.perf_counter() - start:.2f} s "
        "(once, not in the times below)"
    )
    print(
        "| points_per_side | setting | segment-anything (s) | repvit_sam (s) | speed-up | output |"
    )
    print("|---|---|---|---|---|---|")
    for points in args.points:
        for name in args.settings:
            params = {"points_per_side": points, **SETTINGS[name]}
            theirs_gen = sam_generator(model, embedding, params)
            start = time.perf_counter()
            theirs = theirs_gen.generate(image)
            t_theirs = time.perf_counter() - start
            ours_gen = MaskGenerator(model, **params)
            start = time.perf_counter()
            ours = ours_gen.generate(image, embedding=embedding)
            t_ours = time.perf_counter() - start
            print(
                f"| {points} | {name} | {t_theirs:.2f} | {t_ours:.2f} | "
                f"{t_theirs / t_ours:.1f}x | {agreement(ours, theirs)} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
