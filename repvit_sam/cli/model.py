"""``repvit-sam download``, ``segment`` and ``export-onnx``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..onnx_formats import FORMATS, check_export_options
from . import common


def register(sub: argparse._SubParsersAction) -> None:
    download = common.add_command(
        sub, "download", run_download, help="download and verify published weights"
    )
    download.add_argument("--name", default="repvit_sam", help="weights name")
    download.add_argument("--dir", type=Path, help="folder (default: the cache folder)")
    download.add_argument("--url", help="download from this mirror instead")
    download.add_argument("--sha256", help="expected digest of the file")
    download.add_argument("--force", action="store_true", help="download even if present")

    segment = common.add_command(
        sub, "segment", run_segment, help="segment an image from point and box prompts"
    )
    segment.add_argument("image", type=Path, help="input image")
    segment.add_argument(
        "--point",
        action="append",
        type=common.parse_point,
        default=[],
        metavar="X,Y[,LABEL]",
        help="point prompt in pixels; label 1 (default) foreground, 0 background; repeatable",
    )
    segment.add_argument(
        "--box",
        action="append",
        type=common.parse_box,
        default=[],
        metavar="X0,Y0,X1,Y1",
        help="box prompt in pixels; repeat for several objects (one mask file each)",
    )
    segment.add_argument("-o", "--output", type=Path, required=True, help="mask PNG to write")
    segment.add_argument("--overlay", type=Path, help="also write the image with the mask drawn")
    segment.add_argument("--multimask", action="store_true", help="pick the best of 3 candidates")
    common.add_model_options(segment)

    export = common.add_command(
        sub,
        "export-onnx",
        run_export_onnx,
        help="write the image encoder and a SAM-compatible decoder as ONNX",
        description="Writes the encoder and the decoder (segment-anything's ONNX signature, "
        "dynamic number of points) into OUTPUT, laid out for --format: sam (encoder.onnx, "
        "fixed 1024 input, and decoder.onnx), samexporter (the pair and model YAML that "
        "X-AnyLabeling and AnyLabeling load) or official (the official RepViT-SAM exporter's "
        "repvit_sam_image_encoder.onnx, input 'image'). --cvat writes the decoder CVAT's SAM "
        "plugin runs.",
    )
    export.add_argument("output", type=Path, help="folder to write the .onnx files into")
    export.add_argument(
        "--format", default="sam", choices=FORMATS, help="the files' names and signatures"
    )
    export.add_argument(
        "--cvat",
        action="store_true",
        help="decoder.onnx with CVAT's outputs: the mask cropped to its box, and xtl, ytl, xbr, "
        "ybr (deploy/cvat/README.md)",
    )
    export.add_argument(
        "--preprocess",
        action="store_true",
        help="sam format: the encoder takes an HxWx3 0..255 image (longest side 1024) and "
        "normalises/pads it",
    )
    export.add_argument("--return-single-mask", action="store_true", help="decoder: best mask only")
    export.add_argument("--opset", type=int, default=17, help="ONNX opset")
    export.add_argument("--checkpoint", type=Path, help="checkpoint (default: official weights)")
    export.add_argument("--variant", default="m2_3", help="encoder variant of the checkpoint")


def run_download(args: argparse.Namespace) -> int:
    from ..weights import download_weights

    path = download_weights(args.name, args.dir, url=args.url, sha256=args.sha256, force=args.force)
    print(path)
    return 0


def run_segment(args: argparse.Namespace) -> int:
    import numpy as np
    from PIL import Image

    from ..image_io import load_image
    from ..visualize import overlay_masks

    if not args.point and not args.box:
        raise SystemExit("segment: give at least one --point or --box")
    for flag, path in (("--output", args.output), ("--overlay", args.overlay)):
        common.check_image_path(flag, path)
    image = load_image(args.image)
    sam = common.load_sam(args)
    points = [(x, y) for x, y, _ in args.point] or None
    labels = [label for _, _, label in args.point] or None
    boxes = args.box[0] if len(args.box) == 1 else (args.box or None)
    result = sam.predict(image, points, labels, boxes, multimask=args.multimask)
    best = result.best_mask
    masks = best[None] if best.ndim == 2 else best
    scores = np.atleast_1d(result.scores.max(axis=-1))
    outputs = _mask_paths(args.output, len(masks))
    records = []
    for path, mask, score in zip(outputs, masks, scores, strict=True):
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(mask.astype(np.uint8) * 255).save(path)
        records.append({"mask": str(path), "score": float(score), "area": int(mask.sum())})
    if args.overlay is not None:
        Image.fromarray(overlay_masks(image, masks)).save(args.overlay)
    print(json.dumps(records if len(records) > 1 else records[0]))
    return 0


def run_export_onnx(args: argparse.Namespace) -> int:
    from ..build import build_repvit_sam
    from ..onnx_formats import export_onnx
    from ..weights import download_weights

    options = {
        "cvat": args.cvat,
        "preprocess": args.preprocess,
        "return_single_mask": args.return_single_mask,
    }
    check_export_options(args.format, **options)
    checkpoint = args.checkpoint or download_weights()
    model = build_repvit_sam(checkpoint, variant=args.variant)
    written = export_onnx(model, args.output, format=args.format, opset=args.opset, **options)
    print(json.dumps(written.as_dict()))
    return 0


def _mask_paths(output: Path, count: int) -> list[Path]:
    if count == 1:
        return [output]
    return [output.with_name(f"{output.stem}_{i}{output.suffix}") for i in range(count)]
