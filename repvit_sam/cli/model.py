"""``repvit-sam download``, ``segment`` and ``export-onnx``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

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
        description="Writes encoder.onnx (fixed 1024 input) and decoder.onnx (segment-anything's "
        "ONNX signature, dynamic number of points) into OUTPUT.",
    )
    export.add_argument("output", type=Path, help="folder to write the two .onnx files into")
    export.add_argument(
        "--preprocess",
        action="store_true",
        help="encoder takes an HxWx3 0..255 image (longest side 1024) and normalises/pads it",
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
    from ..onnx_export import export_decoder, export_encoder
    from ..weights import download_weights

    checkpoint = args.checkpoint or download_weights()
    model = build_repvit_sam(checkpoint, variant=args.variant)
    encoder = export_encoder(
        model, args.output / "encoder.onnx", preprocess=args.preprocess, opset=args.opset
    )
    decoder = export_decoder(
        model,
        args.output / "decoder.onnx",
        return_single_mask=args.return_single_mask,
        opset=args.opset,
    )
    print(json.dumps({"encoder": str(encoder), "decoder": str(decoder)}))
    return 0


def _mask_paths(output: Path, count: int) -> list[Path]:
    if count == 1:
        return [output]
    return [output.with_name(f"{output.stem}_{i}{output.suffix}") for i in range(count)]
