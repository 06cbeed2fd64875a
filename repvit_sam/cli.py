"""The ``repvit-sam`` command line."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .cli_tasks import add_task_parsers, run_amg, run_edges, run_eval_edges
from .errors import InvalidInputError, RepViTSAMError

logger = logging.getLogger(__name__)

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(name: str) -> Callable[[Callable[[argparse.Namespace], int]], Callable]:
    def register(function: Callable[[argparse.Namespace], int]) -> Callable:
        COMMANDS[name] = function
        return function

    return register


def parse_point(text: str) -> tuple[float, float, int]:
    """``X,Y`` or ``X,Y,LABEL`` (label 1 foreground, 0 background)."""
    parts = text.split(",")
    try:
        if len(parts) == 2:
            return float(parts[0]), float(parts[1]), 1
        if len(parts) == 3 and parts[2].strip() in ("0", "1"):
            return float(parts[0]), float(parts[1]), int(parts[2])
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"expected X,Y or X,Y,LABEL (label 0 or 1), got {text!r}")


def parse_box(text: str) -> tuple[float, float, float, float]:
    """``X0,Y0,X1,Y1`` in pixels."""
    parts = text.split(",")
    try:
        if len(parts) == 4:
            x0, y0, x1, y1 = (float(p) for p in parts)
            return x0, y0, x1, y1
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"expected X0,Y0,X1,Y1, got {text!r}")


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint",
        type=Path,
        help="RepViT-SAM checkpoint (default: the official weights, downloaded once)",
    )
    parser.add_argument("--variant", default="m2_3", help="encoder variant of the checkpoint")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--no-fuse", action="store_true", help="run the unfused encoder")
    parser.add_argument(
        "--backend",
        default="torch",
        choices=("auto", "torch", "onnxruntime", "openvino"),
        help="image encoder runtime (auto: the fastest exact one installed)",
    )


def load_sam(args: argparse.Namespace):
    from .api import RepViTSAM

    options = {"device": args.device, "fuse": not args.no_fuse, "backend": args.backend}
    if args.checkpoint is None:
        return RepViTSAM.from_pretrained(**options)
    return RepViTSAM(args.checkpoint, variant=args.variant, **options)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="repvit-sam", description="RepViT-SAM: fast Segment Anything."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    sub = parser.add_subparsers(dest="command", required=True)

    download = sub.add_parser("download", help="download and verify published weights")
    download.add_argument("--name", default="repvit_sam", help="weights name (default repvit_sam)")
    download.add_argument("--dir", type=Path, help="folder (default: the cache folder)")
    download.add_argument("--url", help="download from this mirror instead")
    download.add_argument("--sha256", help="expected digest of the file")
    download.add_argument("--force", action="store_true", help="download even if present")

    segment = sub.add_parser("segment", help="segment an image from point and box prompts")
    segment.add_argument("image", type=Path, help="input image")
    segment.add_argument(
        "--point",
        action="append",
        type=parse_point,
        default=[],
        metavar="X,Y[,LABEL]",
        help="point prompt in pixels; label 1 (default) foreground, 0 background; repeatable",
    )
    segment.add_argument(
        "--box",
        action="append",
        type=parse_box,
        default=[],
        metavar="X0,Y0,X1,Y1",
        help="box prompt in pixels; repeat for several objects (one mask file each)",
    )
    segment.add_argument("-o", "--output", type=Path, required=True, help="mask PNG to write")
    segment.add_argument("--overlay", type=Path, help="also write the image with the mask drawn")
    segment.add_argument("--multimask", action="store_true", help="pick the best of 3 candidates")
    _add_model_options(segment)
    add_task_parsers(sub, _add_model_options)

    export = sub.add_parser(
        "export-onnx",
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
    export.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    export.add_argument("--checkpoint", type=Path, help="checkpoint (default: official weights)")
    export.add_argument("--variant", default="m2_3", help="encoder variant of the checkpoint")

    serve = sub.add_parser(
        "serve",
        help="run the HTTP service (pip install 'repvit-sam[server]')",
        description="Runs the HTTP service with uvicorn. Options override REPVIT_SAM_* settings.",
    )
    serve.add_argument("--host", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to bind (default 8000)")
    serve.add_argument("--checkpoint", type=Path, help="checkpoint (default: official weights)")
    serve.add_argument("--variant", help="encoder variant of the checkpoint")
    serve.add_argument("--device", help="cpu, cuda, cuda:1, ...")
    _add_distill_parser(sub)
    return parser


@command("download")
def run_download(args: argparse.Namespace) -> int:
    from .weights import download_weights

    path = download_weights(args.name, args.dir, url=args.url, sha256=args.sha256, force=args.force)
    print(path)
    return 0


@command("segment")
def run_segment(args: argparse.Namespace) -> int:
    from PIL import Image

    from .image_io import load_image
    from .visualize import overlay_masks

    if not args.point and not args.box:
        raise SystemExit("segment: give at least one --point or --box")
    for flag, path in (("--output", args.output), ("--overlay", args.overlay)):
        _check_image_path(flag, path)
    image = load_image(args.image)
    sam = load_sam(args)
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


@command("serve")
def run_serve(args: argparse.Namespace) -> int:
    import uvicorn

    # The service reads its settings from the environment, the flags included.
    for name in ("host", "port", "checkpoint", "variant", "device"):
        if getattr(args, name) is not None:
            os.environ[f"REPVIT_SAM_{name.upper()}"] = str(getattr(args, name))
    settings = _check_serve_settings()
    # A server logs its lifecycle (model loaded, cache state) unless told to be quieter.
    logging.getLogger().setLevel(os.environ.get("REPVIT_SAM_LOG_LEVEL", "INFO").upper())
    # On SIGTERM uvicorn stops accepting, lets requests in flight finish (up to this long),
    # then runs the app's shutdown.
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        log_level="info",
        timeout_graceful_shutdown=settings.shutdown_timeout_seconds,
    )
    return 0


def _check_serve_settings() -> Any:
    """The service's settings from the ``REPVIT_SAM_*`` environment, checked before the server
    starts: a bad value, a device this machine lacks, or a missing or wrong
    ``REPVIT_SAM_CHECKPOINT`` would otherwise start a server that never becomes ready.
    Without a checkpoint the service downloads (and verifies) the official weights itself.

    Raises:
        InvalidInputError: A setting is invalid (the message names its variable).
        CheckpointError: The file is missing, unreadable or not of ``REPVIT_SAM_VARIANT``.
    """
    from pydantic import ValidationError

    from app.settings import Settings  # the service's own validation, imported only here

    from .build import build_repvit_sam

    try:
        settings = Settings()
    except ValidationError as err:
        problems = "; ".join(
            f"REPVIT_SAM_{'_'.join(str(part) for part in e['loc']).upper()}: {e['msg']}"
            for e in err.errors()
        )
        raise InvalidInputError(problems) from None
    level = os.environ.get("REPVIT_SAM_LOG_LEVEL", "INFO").upper()
    if not isinstance(logging.getLevelName(level), int):
        raise InvalidInputError(f"REPVIT_SAM_LOG_LEVEL: unknown level {level!r}")
    if settings.checkpoint is not None:
        build_repvit_sam(
            settings.checkpoint, variant=settings.variant, image_size=settings.image_size
        )
    return settings


def _add_distill_parser(sub: argparse._SubParsersAction) -> None:
    from .distill.cli import add_parser

    add_parser(sub)


@command("distill")
def run_distill(args: argparse.Namespace) -> int:
    from .distill.cli import run

    return run(args)


@command("export-onnx")
def run_export_onnx(args: argparse.Namespace) -> int:
    from .build import build_repvit_sam
    from .onnx_export import export_decoder, export_encoder
    from .weights import download_weights

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


@command("amg")
def run_amg_command(args: argparse.Namespace) -> int:
    return run_amg(args, load_sam)


@command("edges")
def run_edges_command(args: argparse.Namespace) -> int:
    return run_edges(args, load_sam)


@command("eval-edges")
def run_eval_edges_command(args: argparse.Namespace) -> int:
    return run_eval_edges(args, load_sam)


def _check_image_path(flag: str, path: Path | None) -> None:
    """Refuses, before the model runs, an output the image writer would refuse after it."""
    from PIL import Image

    if path is None:
        return
    if path.is_dir():
        raise InvalidInputError(f"{flag} {path} is a folder; give a file name such as mask.png")
    if Image.registered_extensions().get(path.suffix.lower()) not in Image.SAVE:
        raise InvalidInputError(f"{flag} {path}: not an image format PIL writes; use .png")
    if not path.parent.is_dir():
        raise InvalidInputError(f"{flag} {path}: folder {path.parent} does not exist")


def _mask_paths(output: Path, count: int) -> list[Path]:
    if count == 1:
        return [output]
    return [output.with_name(f"{output.stem}_{i}{output.suffix}") for i in range(count)]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return COMMANDS[args.command](args)
    except (RepViTSAMError, OSError) as err:  # OSError: files missing, existing, unwritable
        print(f"repvit-sam {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
