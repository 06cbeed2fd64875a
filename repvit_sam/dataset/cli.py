"""``repvit-sam embed-dataset`` and ``repvit-sam amg-dataset`` (entry point ``repvit_sam.cli``).

In this process by default; with ``--ray ADDRESS`` (or ``auto``) as a Ray Data pipeline on
that cluster.
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path
from typing import Any

from ..amg_params import AmgParams
from ..cli import common
from ..cli.tasks import AMG_OPTIONS


def register(sub: argparse._SubParsersAction) -> None:
    """Adds the dataset commands to ``repvit-sam``."""
    embed = common.add_command(
        sub,
        "embed-dataset",
        run_embed_dataset,
        help="encode every image of a folder (or list file) once into an embedding store",
        description="Encodes each image of SOURCE that STORE lacks and stores it under the "
        "id POST /embed gives it, so `repvit-sam serve` with REPVIT_SAM_STORE_URL=STORE answers "
        "its first click without the encoder. A rerun skips what is stored.",
    )
    embed.add_argument("source", help="folder of images (recursive), or a file listing them")
    embed.add_argument("--store", required=True, help="embedding store: a folder or an fsspec URL")
    _add_job_options(embed)

    amg = common.add_command(
        sub,
        "amg-dataset",
        run_amg_dataset,
        help="automatic masks (COCO RLE JSON per image) for every image of a folder",
        description="Writes OUTPUT/NAME.json (the records of `repvit-sam amg --json`) for each "
        "image of SOURCE that has none yet, from its stored embedding where --store has it.",
    )
    amg.add_argument("source", help="folder of images (recursive), or a file listing them")
    amg.add_argument("output", type=Path, help="folder for the JSON files")
    amg.add_argument("--store", help="embedding store to read (and fill) embeddings from")
    common.add_parameter_options(amg, AmgParams, AMG_OPTIONS)
    _add_job_options(amg)


def _add_job_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="run on this Ray cluster (auto, or HOST:PORT of its head) instead of in process",
    )
    parser.add_argument(
        "--batch-size", type=common.positive_int, default=8, help="images per batch"
    )
    parser.add_argument(
        "--workers", type=common.positive_int, help="with --ray: actors (default: CPUs allow)"
    )
    parser.add_argument(
        "--cpus-per-worker", type=float, default=1.0, help="with --ray: CPUs per actor"
    )
    common.add_model_options(parser)
    parser.add_argument(
        "--image-size",
        type=common.positive_int,
        help="encoder input side, as the service's REPVIT_SAM_IMAGE_SIZE (default: 1024)",
    )


def _spec(args: argparse.Namespace) -> Any:
    from ..weights import download_weights
    from .jobs import ModelSpec

    common.check_model_options(args)
    checkpoint = args.checkpoint if args.checkpoint is not None else download_weights()
    return ModelSpec(
        str(Path(checkpoint).resolve()),
        variant=args.variant,
        device=args.device,
        fuse=not args.no_fuse,
        backend=args.backend,
        image_size=args.image_size,
        precision=args.precision,
        calibration_images=(
            str(args.calibration_images.resolve()) if args.calibration_images else None
        ),
    )


def _run(args: argparse.Namespace, make_worker: Any, store_url: str | None) -> int:
    from tqdm import tqdm

    from .jobs import run_in_process
    from .ray_jobs import run_on_ray
    from .sources import list_images
    from .store import EmbeddingStore

    items = list_images(args.source)
    # The manifest is written by this process alone, as results come back.
    recorder = EmbeddingStore(store_url, "") if store_url else None
    options: dict[str, Any] = {
        "record": recorder.record if recorder is not None else None,
        "batch_size": args.batch_size,
    }
    with tqdm(total=len(items), unit="image", desc=args.command) as bar:
        options["progress"] = bar.update
        if args.ray:
            summary = run_on_ray(
                args.ray,
                items,
                make_worker,
                workers=args.workers,
                cpus_per_worker=args.cpus_per_worker,
                **options,
            )
        else:
            summary = run_in_process(items, make_worker(), **options)
    for failed in summary.failed:
        print(f"{failed.name}: {failed.error}", file=sys.stderr)
    print(summary.line())
    return 1 if summary.failed else 0


def run_embed_dataset(args: argparse.Namespace) -> int:
    from .jobs import Embedder

    make_worker = functools.partial(Embedder, _spec(args), args.store)
    return _run(args, make_worker, args.store)


def run_amg_dataset(args: argparse.Namespace) -> int:
    from .jobs import MaskMaker

    params = {name: getattr(args, name) for name in AMG_OPTIONS}
    AmgParams(**params)  # refuses bad parameters before any work
    make_worker = functools.partial(MaskMaker, _spec(args), args.output, params, args.store)
    return _run(args, make_worker, args.store)
