"""``repvit-sam amg``, ``edges`` and ``eval-edges``: everything mode over images and folders."""

from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..amg_params import AmgParams
from ..edge_params import EdgeParams
from ..errors import InvalidInputError
from ..image_io import IMAGE_SUFFIXES
from ..parameters import parameter_help
from . import common

METADATA_HEADER = (
    "id,area,bbox_x0,bbox_y0,bbox_w,bbox_h,point_input_x,point_input_y,predicted_iou,"
    "stability_score,crop_box_x0,crop_box_y0,crop_box_w,crop_box_h"
)
# Parameters the command line leaves at their defaults: a grid per crop layer is no option,
# masks are written as PNGs or COCO JSON, and the upscaling batch is a memory knob.
AMG_NOT_OPTIONS = ("point_grids", "output_mode", "upsample_batch")
AMG_OPTIONS = tuple(name for name in parameter_help(AmgParams) if name not in AMG_NOT_OPTIONS)


def register(sub: argparse._SubParsersAction) -> None:
    amg = common.add_command(
        sub, "amg", run_amg, help="segment everything: masks for an image or a folder"
    )
    amg.add_argument("input", type=Path, help="image or folder of images")
    amg.add_argument("output", type=Path, help="folder to write to")
    amg.add_argument(
        "--json",
        action="store_true",
        help="write one COCO-style JSON (RLE masks) per image instead of PNGs + metadata.csv",
    )
    amg.add_argument("--overlay", action="store_true", help="also write NAME_overlay.png")
    common.add_parameter_options(amg, AmgParams, AMG_OPTIONS)
    common.add_model_options(amg)

    edges = common.add_command(
        sub, "edges", run_edges, help="edge maps (SAM's zero-shot protocol) as 8-bit PNGs"
    )
    edges.add_argument("input", type=Path, help="image or folder of images")
    edges.add_argument("output", type=Path, help="folder to write NAME.png edge maps to")
    edges.add_argument("--overlay", action="store_true", help="also write NAME_overlay.png")
    common.add_parameter_options(edges, EdgeParams, parameter_help(EdgeParams))
    common.add_model_options(edges)

    evaluate = common.add_command(
        sub, "eval-edges", run_eval_edges, help="ODS/OIS/AP of edge maps on a BSDS500-layout folder"
    )
    evaluate.add_argument("data", type=Path, help="folder with images/ and groundTruth/")
    evaluate.add_argument("--split", help="subfolder of images/ and groundTruth/, e.g. test")
    evaluate.add_argument(
        "--predictions", type=Path, help="folder of NAME.png edge maps (default: run the model)"
    )
    evaluate.add_argument("--thresholds", type=int, default=99, help="thresholds")
    evaluate.add_argument(
        "--limit", type=common.positive_int, help="evaluate only the first N images"
    )
    common.add_model_options(evaluate)


def _images(path: Path) -> list[Path]:
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            raise InvalidInputError(f"input folder {path} holds no images")
        return found
    if not path.exists():
        raise FileNotFoundError(f"input {path} does not exist")
    return [path]


def _progress_bars(paths: list[Path], what: str) -> Iterator[tuple[Path, Callable]]:
    """Each path with a progress callback driving a tqdm bar."""
    from tqdm import tqdm

    for path in tqdm(paths, desc=what, unit="image", disable=len(paths) == 1):
        with tqdm(desc=path.name, leave=False) as bar:

            def report(done: int, total: int, bar: Any = bar) -> None:
                bar.total = total
                bar.update(done - bar.n)

            yield path, report


def run_amg(args: argparse.Namespace) -> int:
    from PIL import Image

    from ..amg import MaskGenerator
    from ..image_io import load_image
    from ..visualize import overlay_masks

    params = {name: getattr(args, name) for name in AMG_OPTIONS}
    params["output_mode"] = "coco_rle" if args.json else "binary_mask"
    paths = _images(args.input)
    sam = common.load_sam(args)
    generator = MaskGenerator(sam.model, encoder=sam.predictor.encoder, **params)
    args.output.mkdir(parents=True, exist_ok=True)
    for path, report in _progress_bars(paths, "amg"):
        image = load_image(path)
        records = generator.generate(image, embedding=sam.embed(image), progress=report)
        if args.json:
            (args.output / f"{path.stem}.json").write_text(json.dumps(records))
        else:
            _write_masks(args.output / path.stem, records)
        if args.overlay:
            masks = (
                np.stack([_decode(r["segmentation"]) for r in records])
                if records
                else np.zeros((0, *image.shape[:2]), dtype=bool)
            )
            Image.fromarray(overlay_masks(image, masks)).save(
                args.output / f"{path.stem}_overlay.png"
            )
        print(json.dumps({"image": str(path), "masks": len(records)}))
    return 0


def _decode(segmentation: Any) -> np.ndarray:
    if isinstance(segmentation, np.ndarray):
        return segmentation
    from pycocotools import mask as mask_utils

    return mask_utils.decode(segmentation).astype(bool)


def _write_masks(folder: Path, records: list[dict[str, Any]]) -> None:
    """PNG masks and metadata.csv, as segment-anything's scripts/amg.py writes them."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "metadata.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(METADATA_HEADER.split(","))
        for i, record in enumerate(records):
            Image.fromarray(record["segmentation"].astype(np.uint8) * 255).save(folder / f"{i}.png")
            writer.writerow(
                [
                    i,
                    record["area"],
                    *record["bbox"],
                    *record["point_coords"][0],
                    record["predicted_iou"],
                    record["stability_score"],
                    *record["crop_box"],
                ]
            )


def run_edges(args: argparse.Namespace) -> int:
    from PIL import Image

    from ..edges import EdgeDetector
    from ..image_io import load_image

    paths = _images(args.input)
    sam = common.load_sam(args)
    params = {name: getattr(args, name) for name in parameter_help(EdgeParams)}
    detector = EdgeDetector(sam.model, encoder=sam.predictor.encoder, **params)
    args.output.mkdir(parents=True, exist_ok=True)
    for path, report in _progress_bars(paths, "edges"):
        image = load_image(path)
        result = detector.detect(image, embedding=sam.embed(image), progress=report)
        Image.fromarray(result.to_uint8()).save(args.output / f"{path.stem}.png")
        if args.overlay:
            Image.fromarray(overlay_edges(image, result.edges)).save(
                args.output / f"{path.stem}_overlay.png"
            )
        print(json.dumps({"image": str(path), "masks": result.num_masks, "kept": result.num_kept}))
    return 0


def overlay_edges(image: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """HxWx3 uint8: the image dimmed, with edges (HxW in [0, 1]) drawn in red by strength."""
    picture = image.astype(np.float32) * 0.5
    strength = np.clip(edges, 0, 1)[..., None]
    picture = (1 - strength) * picture + strength * np.array([255.0, 0.0, 0.0])
    return np.clip(picture, 0, 255).astype(np.uint8)


def run_eval_edges(args: argparse.Namespace) -> int:
    from PIL import Image

    from ..edge_eval import default_thresholds, evaluate_image, find_dataset, load_ground_truth

    if args.thresholds < 1:
        raise InvalidInputError(f"--thresholds must be positive, got {args.thresholds}")
    items = find_dataset(args.data, args.split)[: args.limit]
    thresholds = default_thresholds(args.thresholds)
    detector = None
    if args.predictions is None:
        from ..edges import EdgeDetector

        sam = common.load_sam(args)
        detector = EdgeDetector(sam.model, encoder=sam.predictor.encoder)
    from tqdm import tqdm

    counts = []
    for name, image_path, truth_paths in tqdm(items, desc="eval-edges", unit="image"):
        truths = [t for path in truth_paths for t in load_ground_truth(path)]
        if detector is None:
            prediction = args.predictions / f"{name}.png"
            if not prediction.exists():
                raise FileNotFoundError(f"no edge map {prediction} for image {image_path}")
            edge_map = np.asarray(Image.open(prediction).convert("L"))
        else:
            from ..image_io import load_image

            edge_map = detector.detect(load_image(image_path)).edges
        counts.append(evaluate_image(edge_map, truths, thresholds))
    from ..edge_eval import summarize

    print(json.dumps(summarize(counts, thresholds).as_dict()))
    return 0
