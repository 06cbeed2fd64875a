"""What the ``repvit-sam`` commands share: argument types, model options, loading the model."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..errors import InvalidInputError
from ..parameters import parameter_defaults, parameter_help
from ..runtimes import BACKENDS, PRECISIONS

Command = Callable[[argparse.Namespace], int]


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows every option's default, and keeps descriptions as written."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        # "(default: None)" and "(default: False)" say nothing about what the command does.
        if action.default in (None, False, argparse.SUPPRESS) or action.default == []:
            return action.help
        return super()._get_help_string(action)


def add_command(
    sub: argparse._SubParsersAction, name: str, run: Command, **options: Any
) -> argparse.ArgumentParser:
    """A subcommand whose ``run`` is called with the parsed arguments."""
    parser = sub.add_parser(name, formatter_class=HelpFormatter, **options)
    parser.set_defaults(run=run)
    return parser


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


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_parameter_options(
    parser: argparse.ArgumentParser, params: type, names: Iterable[str]
) -> None:
    """One option per parameter, with the dataclass's default, type and help."""
    defaults, helps = parameter_defaults(params), parameter_help(params)
    for name in names:
        default = defaults[name]
        parser.add_argument(
            "--" + name.replace("_", "-"), type=type(default), default=default, help=helps[name]
        )


def add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint",
        type=Path,
        help="RepViT-SAM checkpoint (default: the official weights, downloaded once; "
        "REPVIT_SAM_WEIGHTS_URL names a mirror)",
    )
    parser.add_argument("--variant", default="m2_3", help="encoder variant of the checkpoint")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--no-fuse", action="store_true", help="run the unfused encoder")
    parser.add_argument(
        "--backend",
        default="auto",
        choices=BACKENDS,
        help="image encoder runtime (auto: the fastest exact one installed; the ONNX backends "
        "export the encoder once and keep it in the cache folder)",
    )
    parser.add_argument(
        "--precision",
        default="fp32",
        choices=PRECISIONS,
        help="encoder precision: fp32 is exact; int8 (CPU, NNCF + OpenVINO, quantised once "
        "and cached), bf16 (CUDA, or a CPU with native bf16) and fp16 (CUDA) are faster and "
        "not exact",
    )
    parser.add_argument(
        "--calibration-images",
        type=Path,
        metavar="DIR",
        help="with --precision int8: a folder of images to calibrate on (default: "
        "scikit-image's sample photos)",
    )


def check_model_options(args: argparse.Namespace) -> None:
    """Refuses, before any work, a backend that cannot run or weights that cannot be had."""
    from ..backends import check_precision, resolve_backend
    from ..build import resolve_device
    from ..weights import download_weights

    device = resolve_device(args.device)
    check_precision(args.precision, resolve_backend(args.backend, device, args.precision), device)
    if args.calibration_images is not None:
        if args.precision != "int8":
            raise InvalidInputError("--calibration-images only applies to --precision int8")
        if not args.calibration_images.is_dir():
            raise InvalidInputError(f"--calibration-images {args.calibration_images}: not a folder")
    if args.checkpoint is None:
        download_weights()
    elif not args.checkpoint.is_file():
        raise InvalidInputError(f"--checkpoint {args.checkpoint}: no such file")


def load_sam(args: argparse.Namespace) -> Any:
    """The ``RepViTSAM`` that ``add_model_options``' flags describe."""
    from ..api import RepViTSAM

    check_model_options(args)
    options = {
        "device": args.device,
        "fuse": not args.no_fuse,
        "backend": args.backend,
        "precision": args.precision,
        "calibration_images": args.calibration_images,
    }
    if args.checkpoint is None:
        return RepViTSAM.from_pretrained(**options)
    return RepViTSAM(args.checkpoint, variant=args.variant, **options)


def check_image_path(flag: str, path: Path | None) -> None:
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
